"""The `ffleet` command line. Every flag has an FFLEET_* environment twin (shown in --help)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ffleet.agent.cli import agent
from ffleet.certs_cli import certs_app
from ffleet.cli_support import (
    CaOption,
    CertOption,
    KeyOption,
    MasterOption,
    Seconds,
    TokenOption,
    duration_option,
    parse_pairs,
    transport,
)
from ffleet.master.cli import master
from ffleet.settings import DEFAULT_MASTER_URL
from ffleet.token_cli import audit, token_app

if TYPE_CHECKING:
    from ffleet.client import FleetClient
    from ffleet.models import Node, Placement
    from ffleet.transport import Transport

app = typer.Typer(
    help="ffleet: run FFmpeg workloads across a fleet of machines and bring every result home.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("agent")(agent)
app.command("master")(master)
app.add_typer(token_app, name="token")
app.add_typer(certs_app, name="certs")
app.command("audit")(audit)


def _placement(value: str | None) -> Placement | None:
    if value is None or value in ("fastest", "energy"):
        return value  # type: ignore[return-value]  # checked just above
    raise typer.BadParameter("use fastest or energy", param_hint="--placement")


def _show_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        typer.echo(f"ffleet {version('ffleet')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """ffleet: run FFmpeg workloads across a fleet of machines and bring every result home."""


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
    typer.Option(
        "--param",
        "-p",
        envvar="FFLEET_PARAM",
        help="Job parameter KEY=VALUE (repeatable), e.g. duration=5.",
    ),
]


@app.command()
def run(
    scenario: Annotated[str, typer.Argument(help="e.g. 720p-h264, 4K60-h265, 1280x720-av1")],
    param: ParamOption = [],  # noqa: B006 - typer reads the default, never mutates it
    ffmpeg: Annotated[
        str | None, typer.Option(envvar="FFLEET_FFMPEG", help="FFmpeg binary (default: bundled).")
    ] = None,
    timeout: Annotated[
        float | None,
        duration_option("FFLEET_TIMEOUT", "Hard limit (default: derived from the scenario)."),
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
            timeout_s=timeout,
        )
    except ScenarioError as exc:
        raise typer.BadParameter(str(exc)) from None
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(msgspec.json.format(msgspec.json.encode(result)).decode())
    if result["status"] != "completed":
        raise typer.Exit(1)


JsonOption = Annotated[
    bool, typer.Option("--json", envvar="FFLEET_JSON", help="Print JSON instead of a table.")
]


@contextmanager
def fleet_client(master_url: str, via: Transport | None = None) -> Iterator[FleetClient]:
    """A client whose refusals and connection failures become one clear line and exit code."""
    import ssl

    from ffleet.blobs import BlobError
    from ffleet.client import FleetClient, MasterRejected, MasterUnavailable

    try:
        client = FleetClient(master_url, via)
    except ValueError as exc:  # no URL in --master
        raise typer.BadParameter(str(exc), param_hint="--master") from None
    except (OSError, ssl.SSLError) as exc:  # an unreadable --ca, --cert or --key
        typer.echo(f"error: cannot load the TLS files: {exc}", err=True)
        raise typer.Exit(2) from None
    with client:
        try:
            yield client
        except BlobError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
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
    from rich.text import Text

    from ffleet.escaping import printable
    from ffleet.report import console

    shown = Table(title=title)
    for column in columns:
        shown.add_column(column, overflow="fold")
    for row in rows:  # Text, not markup: a node name cannot style or link the terminal
        shown.add_row(*(Text(printable(cell)) for cell in row))
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
        Path | None,
        typer.Option(
            envvar="FFLEET_MATRIX", help="YAML matrix file (see README: Benchmark matrices)."
        ),
    ] = None,
    priority: Annotated[
        str, typer.Option(envvar="FFLEET_PRIORITY", help="high, medium, low or an integer.")
    ] = "medium",
    count: Annotated[
        int, typer.Option(envvar="FFLEET_COUNT", min=1, max=10_000, help="Identical copies.")
    ] = 1,
    max_attempts: Annotated[
        int,
        typer.Option(
            envvar="FFLEET_MAX_ATTEMPTS", min=1, max=100, help="Attempts before the job fails."
        ),
    ] = 3,
    timeout: Annotated[
        float | None, duration_option("FFLEET_TIMEOUT", "Job timeout (default: derived).")
    ] = None,
    stall_timeout: Annotated[
        float | None,
        duration_option(
            "FFLEET_STALL_TIMEOUT", "Kill a run whose progress stands still this long."
        ),
    ] = None,
    placement: Annotated[
        str | None,
        typer.Option(
            envvar="FFLEET_PLACEMENT",
            help="fastest or energy: prefer the idle node measured best for it.",
        ),
    ] = None,
    split: Annotated[
        float | None,
        duration_option(
            "FFLEET_SPLIT",
            "Cut the input (a blob) into segments of about this length at keyframes, encode "
            "them across the fleet and join them; the job shown is the parent.",
        ),
    ] = None,
    require_gpu: Annotated[
        bool, typer.Option(envvar="FFLEET_REQUIRE_GPU", help="Only GPU nodes may run it.")
    ] = False,
    require_encoder: Annotated[
        list[str],
        typer.Option(envvar="FFLEET_REQUIRE_ENCODER", help="Encoder the node must have."),
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    require_label: Annotated[
        list[str],
        typer.Option(envvar="FFLEET_REQUIRE_LABEL", help="KEY=VALUE the node must carry."),
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            envvar="FFLEET_IDEMPOTENCY_KEY",
            help="Names this submission: sent again with the same key (within a day, to any "
            "master of the database), it creates nothing new and prints the first reply. "
            "Default: a new key per run.",
        ),
    ] = None,
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a job (SCENARIO with --param), or every job of a --matrix file, atomically."""
    import uuid

    import msgspec

    from ffleet.builds import majority_build
    from ffleet.matrix import MatrixError, load
    from ffleet.models import JobRequest, Requirements

    if (scenario is None) == (matrix is None):
        raise typer.BadParameter("give a SCENARIO or --matrix FILE (not both)")
    if matrix is not None:

        def fleet_build() -> str | None:
            with fleet_client(master, transport(token, ca, cert, key)) as client:
                return majority_build(client.nodes())

        try:
            requests = load(matrix.read_text(), fleet_build)
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
                timeout_s=timeout,
                stall_timeout_s=stall_timeout,
                placement=_placement(placement),
                requirements=requirements,
                split_s=split,
            )
        except msgspec.ValidationError as exc:
            raise typer.BadParameter(str(exc)) from None
        if split is not None and count > 1:
            raise typer.BadParameter("--split submits one job; leave --count out")
        requests = [request] * count
    with fleet_client(master, transport(token, ca, cert, key)) as client:
        # A key for every run: the client's own retries after a lost reply create nothing twice.
        created = client.submit(requests, idempotency_key=idempotency_key or str(uuid.uuid4()))
    if as_json:
        print_json(created)
        return
    for job in created:
        note = f"  ({job.unschedulable_reason})" if job.unschedulable_reason else ""
        typer.echo(f"{job.id}  {job.scenario}  {job.status}{note}")
    typer.echo(f"{len(created)} job(s) submitted", err=True)


@app.command()
def jobs(
    status: Annotated[
        str | None,
        typer.Option(envvar="FFLEET_STATUS", help="Only jobs with this status: pending, ..."),
    ] = None,
    limit: Annotated[
        int, typer.Option(envvar="FFLEET_LIMIT", min=1, max=10_000, help="Jobs shown at most.")
    ] = 50,
    offset: Annotated[
        int, typer.Option(envvar="FFLEET_OFFSET", min=0, help="Jobs skipped first.")
    ] = 0,
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List jobs, oldest first."""
    with fleet_client(master, transport(token, ca, cert, key)) as client:
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
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
) -> None:
    """Show one job: status, attempts, progress, metrics and analysis (JSON)."""
    with fleet_client(master, transport(token, ca, cert, key)) as client:
        print_json(client.job(job_id))


@app.command()
def explain(
    job_id: str,
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Why is my job pending? Every node and the first requirement it fails."""
    with fleet_client(master, transport(token, ca, cert, key)) as client:
        found = client.explain(job_id)
    if as_json:
        print_json(found)
        return
    typer.echo(f"{found.job_id}: {found.status}: {found.summary}")
    if found.nodes:
        show_table(
            f"{len(found.nodes)} node(s)",
            ("node", "hostname", "verdict", "why"),
            [(v.node_id[:8], v.hostname or "-", v.verdict, v.reason) for v in found.nodes],
        )


@app.command()
def nodes(
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List registered nodes; a node whose FFmpeg build differs from most nodes' is marked *."""
    from ffleet.builds import differs, majority_build

    with fleet_client(master, transport(token, ca, cert, key)) as client:
        found = client.nodes()
    if as_json:
        print_json(found)
        return
    majority = majority_build(found)
    odd = [node for node in found if differs(node, majority)]
    show_table(
        f"{len(found)} node(s)",
        ("id", "status", "type", "threads", "ram_gib", "gpu", "running", "ffmpeg", "labels"),
        [
            (
                node.id,
                node.status,
                node.type,
                str(node.cpu_threads),
                f"{node.ram_bytes / 2**30:.1f}",
                node.gpu_type or "-",
                str(len(node.running_job_ids)),
                _build_cell(node, majority),
                ",".join(f"{k}={v}" for k, v in sorted(node.labels.items())),
            )
            for node in found
        ],
    )
    if odd:
        typer.echo(
            f"{len(odd)} node(s) marked * run another FFmpeg build than the majority "
            f"({majority[:12] if majority else '?'}): their figures are not comparable."
        )


def _build_cell(node: Node, majority: str | None) -> str:
    """`version sha256-prefix`, marked `*` when it differs from the fleet's majority."""
    from ffleet.builds import differs

    sha = (node.ffmpeg_sha256 or "unknown")[:12]
    mark = " *" if differs(node, majority) else ""
    return f"{node.ffmpeg_version or '?'} {sha}{mark}"


results_app = typer.Typer(no_args_is_help=False)
app.add_typer(results_app, name="results")


@results_app.callback(invoke_without_command=True)
def results(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(envvar="FFLEET_STATUS", help="Only jobs with this status: completed, ..."),
    ] = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", envvar="FFLEET_CSV", help="Also write a CSV file.")
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json-file", envvar="FFLEET_JSON_FILE", help="Also write every detail as JSON."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(envvar="FFLEET_LIMIT", min=1, max=10_000, help="Jobs read at most.")
    ] = 1000,
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Results of finished jobs as a table (and CSV / JSON files); --json prints the rows.

    `ffleet results export` archives them to a file.
    """
    if ctx.invoked_subcommand is not None:
        return

    from ffleet import report
    from ffleet.states import FINISHED

    with fleet_client(master, transport(token, ca, cert, key)) as client:
        found, _ = client.jobs(status, limit, 0)
        details = [client.job(j.id) for j in found if j.status in FINISHED]
    rows = [report.row_for(detail) for detail in details]
    if as_json:
        print_json(rows)
    else:
        report.console().print(report.table(rows))
    if csv_path is not None:
        report.write_csv(rows, csv_path)
    if json_path is not None:
        report.write_json(details, json_path)


@app.command()
def cancel(
    job_id: str,
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a job: pending ones at once, running ones through their agent."""
    with fleet_client(master, transport(token, ca, cert, key)) as client:
        found = client.cancel(job_id)
    if as_json:
        print_json(found)
        return
    typer.echo(f"{found.id}: {'cancel requested' if found.cancel_requested else found.status}")


@app.command()
def retry(
    job_id: str,
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue a failed or canceled job again."""
    with fleet_client(master, transport(token, ca, cert, key)) as client:
        found = client.retry(job_id)
    if as_json:
        print_json(found)
        return
    typer.echo(f"{found.id}: {found.status}")


@app.command()
def upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
) -> None:
    """Upload FILE to the master (resumed if interrupted); print only its blob:sha256:... ref,
    for a job's --param input=."""
    with fleet_client(master, transport(token, ca, cert, key)) as client:
        typer.echo(client.upload_blob(file))


@app.command()
def download(
    job_id: str,
    out: Annotated[
        Path | None,
        typer.Option(envvar="FFLEET_OUT", help="Where to write it (default: ./JOB_ID.EXT)."),
    ] = None,
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
) -> None:
    """Fetch a completed job's output file (hash-verified, resumed if interrupted)."""
    from ffleet.agent.argv import output_extension
    from ffleet.blobs import parse_ref
    from ffleet.scenarios import parse_scenario

    with fleet_client(master, transport(token, ca, cert, key)) as client:
        detail = client.job(job_id)
        metrics = (detail.get("result") or {}).get("metrics") or {}
        ref = metrics.get("output_blob")
        if not isinstance(ref, str):
            why = (metrics.get("unavailable") or {}).get("output_blob", "no output was kept")
            typer.echo(f"error: job {job_id} ({detail['status']}) has no output: {why}", err=True)
            raise typer.Exit(1)
        codec = parse_scenario(detail["scenario"]).codec
        target = out or Path(f"{job_id}.{output_extension(codec)}")
        client.download_blob(parse_ref(ref), target)
    typer.echo(str(target))


@app.command()
def drain(
    node_id: str,
    undo: Annotated[
        bool, typer.Option("--undo", envvar="FFLEET_UNDO", help="Accept work again.")
    ] = False,
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Let a node finish its work and take no more (or --undo)."""
    with fleet_client(master, transport(token, ca, cert, key)) as client:
        found = client.drain(node_id, not undo)
    if as_json:
        print_json(found)
        return
    typer.echo(f"{found.id}: {found.status}")


def _moment(text: str | None, flag: str, default: float) -> float:
    from ffleet.models import parse_rfc3339

    if text is None:
        return default
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a time; use e.g. 2027-01-31 or 2027-01-31T08:00:00Z", param_hint=flag
        ) from None


@results_app.command("export")
def export_results(
    out: Annotated[
        Path,
        typer.Option(envvar="FFLEET_OUT", help="The file to write (JSON Lines, gzip: .jsonl.gz)."),
    ],
    since: Annotated[
        str | None,
        typer.Option(envvar="FFLEET_SINCE", help="Jobs completed at or after this time (UTC)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(envvar="FFLEET_UNTIL", help="Jobs completed before this time (UTC)."),
    ] = None,
    export_format: Annotated[
        str,
        typer.Option(
            "--format",
            envvar="FFLEET_FORMAT",
            help="jsonl (gzip-compressed JSON Lines, one job detail per line); see README.",
        ),
    ] = "jsonl",
    delete_exported: Annotated[
        bool,
        typer.Option(
            envvar="FFLEET_DELETE_EXPORTED",
            help="Then remove the exported jobs, attempts and results from the master's store.",
        ),
    ] = False,
    master: MasterOption = DEFAULT_MASTER_URL,
    as_json: JsonOption = False,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
) -> None:
    """Archive finished jobs with their attempts and results to a file."""
    import time

    from ffleet.results_export import export, purge_exported

    if export_format != "jsonl":
        raise typer.BadParameter(
            "only jsonl is offered (Parquet would need pyarrow, about 150 MB; see README)",
            param_hint="--format",
        )
    start, end = _moment(since, "--since", 0.0), _moment(until, "--until", time.time())
    with fleet_client(master, transport(token, ca, cert, key)) as client:
        ids = export(client, start, end, out)
        removed = purge_exported(client, ids) if delete_exported and ids else 0
    if as_json:
        print_json({"file": str(out), "exported": len(ids), "deleted": removed})
        return
    typer.echo(f"exported {len(ids)} finished job(s) to {out}")
    if delete_exported:
        typer.echo(f"removed {removed} of them from the master's store")


@app.command("report")
def comparison_report(
    out: Annotated[
        Path, typer.Option(envvar="FFLEET_OUT", help="Directory for report.html and the PNGs.")
    ],
    scenario: Annotated[
        str | None,
        typer.Option(envvar="FFLEET_SCENARIO", help="Only scenarios containing this text."),
    ] = None,
    node: Annotated[
        str | None, typer.Option(envvar="FFLEET_NODE", help="Only nodes whose id starts so.")
    ] = None,
    limit: Annotated[
        int, typer.Option(envvar="FFLEET_LIMIT", min=1, max=10_000, help="Jobs read at most.")
    ] = 1000,
    master: MasterOption = DEFAULT_MASTER_URL,
    as_json: JsonOption = False,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
) -> None:
    """Write an HTML report with PNG charts comparing nodes x scenarios (mean ± spread)."""
    from ffleet.comparison_report import write_report

    with fleet_client(master, transport(token, ca, cert, key)) as client:
        found, _ = client.jobs("completed", limit, 0)
        chosen = [
            job
            for job in found
            if (scenario is None or scenario in job.scenario)
            and (node is None or (job.node_id or "").startswith(node))
        ]
        details = [client.job(job.id) for job in chosen]
    page = write_report(details, out)
    if as_json:
        print_json({"report": str(page), "jobs": len(details)})
    else:
        typer.echo(f"wrote {page}")


@app.command("watch")
def watch_fleet(
    interval: Annotated[
        float, duration_option("FFLEET_INTERVAL", "How often the table is redrawn.")
    ] = Seconds(1.0),
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
) -> None:
    """A live table of the nodes and running jobs, with progress and ETA; Ctrl-C leaves."""
    from ffleet.watch import watch

    with fleet_client(master, transport(token, ca, cert, key)) as client:
        watch(client, interval)


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option(envvar="FFLEET_OUT", help="Where the database, logs and results go.")
    ] = Path("ffleet-demo"),
    agents: Annotated[
        int, typer.Option(envvar="FFLEET_AGENTS", min=1, max=8, help="Local agents to start.")
    ] = 2,
    duration: Annotated[
        float,
        typer.Option(envvar="FFLEET_DURATION", min=0.5, max=60, help="Seconds of video per job."),
    ] = 2,
) -> None:
    """Benchmark a small matrix (360p/720p x h264/h265/vp9) on this machine, end to end.

    Starts a master (SQLite) and local agents in acknowledged master-as-worker development mode,
    shows live progress, prints the results and writes results.csv and results.json.
    """
    from ffleet.demo import run_demo

    raise typer.Exit(run_demo(out, agents=agents, duration=duration))
