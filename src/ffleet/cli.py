"""The `ffleet` command line. Every flag has an FFLEET_* environment twin (shown in --help)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ffleet.agent.command import agent
from ffleet.cli_support import DEFAULT_MASTER, configure_logging, duration_option, parse_pairs

if TYPE_CHECKING:
    from ffleet.client import FleetClient

app = typer.Typer(
    help="ffleet: run FFmpeg workloads across a fleet of machines and bring every result home.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("agent")(agent)


@app.command()
def master(
    host: Annotated[str, typer.Option(envvar="FFLEET_HOST", help="Address to listen on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(envvar="FFLEET_PORT", help="TCP port.")] = 8080,
    store: Annotated[
        str,
        typer.Option(
            envvar="FFLEET_STORE",
            help="Where state lives: memory (lost on restart), sqlite:///PATH, "
            "or postgresql://USER@HOST/DB.",
        ),
    ] = "sqlite:///ffleet.db",
    node_timeout: Annotated[
        str,
        typer.Option(
            envvar="FFLEET_NODE_TIMEOUT",
            help="A node silent this long is offline and its running attempts end "
            "(default: 3 x the agents' 30s heartbeat).",
        ),
    ] = "90s",
    max_job_timeout: Annotated[
        str, typer.Option(envvar="FFLEET_MAX_JOB_TIMEOUT", help="Cap on any job's timeout.")
    ] = "6h",
    backoff_base: Annotated[
        str, typer.Option(envvar="FFLEET_BACKOFF_BASE", help="First retry delay (doubles).")
    ] = "2s",
    backoff_cap: Annotated[
        str, typer.Option(envvar="FFLEET_BACKOFF_CAP", help="Longest retry delay.")
    ] = "5m",
    aging_interval: Annotated[
        str,
        typer.Option(
            envvar="FFLEET_AGING_INTERVAL",
            help="A waiting job gains one priority step per interval while better work waits.",
        ),
    ] = "60s",
    reap_interval: Annotated[
        str, typer.Option(envvar="FFLEET_REAP_INTERVAL", help="How often expiry is checked.")
    ] = "1s",
    max_body_bytes: Annotated[
        int, typer.Option(envvar="FFLEET_MAX_BODY_BYTES", help="Largest request body accepted.")
    ] = 1024 * 1024,
    log_level: Annotated[str, typer.Option(envvar="FFLEET_LOG_LEVEL")] = "info",
) -> None:
    """Run the master: node registry, job queue and HTTP API."""
    import uvicorn

    from ffleet.master.app import create_app
    from ffleet.master.settings import MasterSettings
    from ffleet.store import SchedulingPolicy, redact_url

    configure_logging(log_level)
    policy = SchedulingPolicy(
        node_timeout_s=duration_option(node_timeout, "--node-timeout"),
        max_job_timeout_s=duration_option(max_job_timeout, "--max-job-timeout"),
        backoff_base_s=duration_option(backoff_base, "--backoff-base"),
        backoff_cap_s=duration_option(backoff_cap, "--backoff-cap"),
        aging_interval_s=duration_option(aging_interval, "--aging-interval"),
    )
    settings = MasterSettings(
        store_url=store,
        policy=policy,
        reap_interval_s=duration_option(reap_interval, "--reap-interval"),
        max_body_bytes=max_body_bytes,
    )
    try:
        application = create_app(settings)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--store") from None
    logging.getLogger("ffleet.master").info(
        "master listening on http://%s:%d (store %s)", host, port, redact_url(store)
    )
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level=log_level.lower(),
        access_log=False,
        proxy_headers=False,  # ffleet reads no forwarded headers; parsing them costs per request
    )


def parameter_values(items: list[str]) -> dict[str, object]:
    """`--param duration=5` gives the number 5, as a JSON body would; other values stay text."""
    values: dict[str, object] = {}
    for key, text in parse_pairs(items, "--param").items():
        number: object = text
        for kind in (int, float):
            try:
                number = kind(text)
                break
            except ValueError:
                continue
        values[key] = number
    return values


ParamOption = Annotated[
    list[str],
    typer.Option("--param", "-p", help="Job parameter KEY=VALUE (repeatable), e.g. duration=5."),
]


@app.command()
def run(
    scenario: Annotated[str, typer.Argument(help="e.g. 720p-h264, 4K60-h265, 1280x720-av1")],
    param: ParamOption = [],  # noqa: B006 - typer reads the default, never mutates it
    ffmpeg: Annotated[
        str | None, typer.Option(envvar="FFLEET_FFMPEG", help="FFmpeg binary (default: bundled).")
    ] = None,
    timeout: Annotated[
        str | None, typer.Option(help="Hard limit (default: derived from the scenario).")
    ] = None,
) -> None:
    """Run one job on this machine, without a master, and print the result JSON."""
    import msgspec

    from ffleet.local_run import run_local
    from ffleet.scenarios import ScenarioError

    try:
        result = run_local(
            scenario,
            parameter_values(param),
            ffmpeg_path=ffmpeg,
            timeout_s=None if timeout is None else duration_option(timeout, "--timeout"),
        )
    except ScenarioError as exc:
        raise typer.BadParameter(str(exc)) from None
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(msgspec.json.format(msgspec.json.encode(result)).decode())
    if result["status"] != "completed":
        raise typer.Exit(1)


MasterOption = Annotated[
    str, typer.Option("--master", envvar="FFLEET_MASTER", help="The master's URL.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@contextmanager
def fleet_client(master_url: str) -> Iterator[FleetClient]:
    """A client whose refusals and connection failures become one clear line and exit code."""
    from ffleet.client import FleetClient, MasterRejected, MasterUnavailable

    client = FleetClient(master_url)
    with client:
        try:
            yield client
        except MasterRejected as exc:
            typer.echo(
                f"error: the master refused: {exc.message} (HTTP {exc.status_code})", err=True
            )
            raise typer.Exit(1) from None
        except MasterUnavailable as exc:
            typer.echo(f"error: cannot reach the master at {master_url}: {exc}", err=True)
            raise typer.Exit(2) from None


def show_table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    from rich.table import Table

    from ffleet.report import console

    shown = Table(title=title)
    for column in columns:
        shown.add_column(column, overflow="fold")
    for row in rows:
        shown.add_row(*row)
    console().print(shown)


def print_json(value: object) -> None:
    import msgspec

    from ffleet.models import encode_hook

    typer.echo(msgspec.json.format(msgspec.json.encode(value, enc_hook=encode_hook)).decode())


@app.command()
def submit(
    scenario: Annotated[
        str | None, typer.Argument(help="e.g. 1080p-h264 (or use --matrix)")
    ] = None,
    param: ParamOption = [],  # noqa: B006 - typer reads the default, never mutates it
    matrix: Annotated[
        Path | None, typer.Option(help="YAML matrix file (see README: Benchmark matrices).")
    ] = None,
    priority: Annotated[str, typer.Option(help="high, medium, low or an integer.")] = "medium",
    count: Annotated[int, typer.Option(min=1, max=10_000, help="Identical copies.")] = 1,
    max_attempts: Annotated[int, typer.Option(min=1, max=100)] = 3,
    timeout: Annotated[str | None, typer.Option(help="Job timeout (default: derived).")] = None,
    require_gpu: Annotated[bool, typer.Option(help="Only GPU nodes may run it.")] = False,
    require_encoder: Annotated[list[str], typer.Option(help="Encoder the node must have.")] = [],  # noqa: B006
    require_label: Annotated[list[str], typer.Option(help="KEY=VALUE the node must carry.")] = [],  # noqa: B006
    master: MasterOption = DEFAULT_MASTER,
    as_json: JsonOption = False,
) -> None:
    """Submit a job (SCENARIO with --param), or every job of a --matrix file, atomically."""
    import msgspec

    from ffleet.matrix import MatrixError, load
    from ffleet.models import JobRequest, Requirements

    if (scenario is None) == (matrix is None):
        raise typer.BadParameter("give a SCENARIO or --matrix FILE (not both)")
    if matrix is not None:
        try:
            requests = load(matrix.read_text())
        except (OSError, MatrixError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--matrix") from None
    else:
        assert scenario is not None
        requirements = None
        if require_gpu or require_encoder or require_label:
            requirements = Requirements(
                gpu=True if require_gpu else None,
                encoders=require_encoder,
                labels=parse_pairs(require_label, "--require-label"),
            )
        try:
            request = JobRequest(
                scenario=scenario,
                parameters=parameter_values(param),
                priority=int(priority) if priority.lstrip("-").isdigit() else priority,
                max_attempts=max_attempts,
                timeout_s=None if timeout is None else duration_option(timeout, "--timeout"),
                requirements=requirements,
            )
        except msgspec.ValidationError as exc:
            raise typer.BadParameter(str(exc)) from None
        requests = [request] * count
    with fleet_client(master) as client:
        created = client.submit(requests)
    if as_json:
        print_json(created)
        return
    for job in created:
        note = f"  ({job.unschedulable_reason})" if job.unschedulable_reason else ""
        typer.echo(f"{job.id}  {job.scenario}  {job.status}{note}")
    typer.echo(f"{len(created)} job(s) submitted", err=True)


@app.command()
def jobs(
    status: Annotated[str | None, typer.Option(help="pending, running, completed, ...")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    master: MasterOption = DEFAULT_MASTER,
    as_json: JsonOption = False,
) -> None:
    """List jobs, oldest first."""
    with fleet_client(master) as client:
        found, total = client.jobs(status, limit, offset)
    if as_json:
        print_json(found)
        return
    show_table(
        f"{len(found)} of {total} job(s)",
        ("id", "scenario", "status", "priority", "attempt", "node", "progress", "note"),
        [
            (
                job.id,
                job.scenario,
                job.status,
                str(job.priority),
                str(job.attempt),
                (job.node_id or "-")[:8],
                "-"
                if job.progress is None or job.progress.percent is None
                else f"{job.progress.percent:.0f}%",
                job.unschedulable_reason or job.error or "",
            )
            for job in found
        ],
    )


@app.command()
def job(
    job_id: str,
    master: MasterOption = DEFAULT_MASTER,
) -> None:
    """Show one job: status, attempts, progress, metrics and analysis (JSON)."""
    with fleet_client(master) as client:
        print_json(client.job(job_id))


@app.command()
def nodes(master: MasterOption = DEFAULT_MASTER, as_json: JsonOption = False) -> None:
    """List registered nodes."""
    with fleet_client(master) as client:
        found = client.nodes()
    if as_json:
        print_json(found)
        return
    show_table(
        f"{len(found)} node(s)",
        ("id", "status", "type", "threads", "ram_gib", "gpu", "running", "labels"),
        [
            (
                node.id,
                node.status,
                node.type,
                str(node.cpu_threads),
                f"{node.ram_bytes / 2**30:.1f}",
                node.gpu_type or "-",
                str(len(node.running_job_ids)),
                ",".join(f"{k}={v}" for k, v in sorted(node.labels.items())),
            )
            for node in found
        ],
    )


@app.command()
def results(
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Also write a CSV file.")] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json-file", help="Also write every detail as JSON.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
    master: MasterOption = DEFAULT_MASTER,
) -> None:
    """Results of finished jobs as a table (and CSV / JSON files)."""

    from ffleet import report
    from ffleet.states import FINISHED

    with fleet_client(master) as client:
        found, _ = client.jobs(status, limit, 0)
        details = [client.job(j.id) for j in found if j.status in FINISHED]
    rows = [report.row_for(detail) for detail in details]
    report.console().print(report.table(rows))
    if csv_path is not None:
        report.write_csv(rows, csv_path)
    if json_path is not None:
        report.write_json(details, json_path)


@app.command()
def cancel(job_id: str, master: MasterOption = DEFAULT_MASTER) -> None:
    """Cancel a job: pending ones at once, running ones through their agent."""
    with fleet_client(master) as client:
        found = client.cancel(job_id)
    typer.echo(f"{found.id}: {'cancel requested' if found.cancel_requested else found.status}")


@app.command()
def retry(job_id: str, master: MasterOption = DEFAULT_MASTER) -> None:
    """Queue a failed or canceled job again."""
    with fleet_client(master) as client:
        typer.echo(f"{job_id}: {client.retry(job_id).status}")


@app.command()
def drain(
    node_id: str,
    undo: Annotated[bool, typer.Option("--undo", help="Accept work again.")] = False,
    master: MasterOption = DEFAULT_MASTER,
) -> None:
    """Let a node finish its work and take no more (or --undo)."""
    with fleet_client(master) as client:
        typer.echo(f"{node_id}: {client.drain(node_id, not undo).status}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the database, logs and results go.")] = Path(
        "ffleet-demo"
    ),
    agents: Annotated[int, typer.Option(min=1, max=8, help="Local agents to start.")] = 2,
    duration: Annotated[float, typer.Option(min=0.5, max=60, help="Seconds of video per job.")] = 2,
) -> None:
    """Benchmark a small matrix (360p/720p x h264/h265/vp9) on this machine, end to end.

    Starts a master (SQLite) and local agents in acknowledged master-as-worker development mode,
    shows live progress, prints the results and writes results.csv and results.json.
    """
    from ffleet.demo import run_demo

    raise typer.Exit(run_demo(out, agents=agents, duration=duration))
