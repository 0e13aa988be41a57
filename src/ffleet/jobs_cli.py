"""`ffleet run`, `submit`, `jobs`, `job`, `explain`, `cancel`, `retry`: jobs from the command
line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ffleet.cli_support import (
    CaOption,
    CertOption,
    JsonOption,
    KeyOption,
    MasterOption,
    TokenOption,
    duration_option,
    fleet_client,
    parse_pairs,
    print_json,
    show_table,
)
from ffleet.settings import DEFAULT_MASTER_URL

if TYPE_CHECKING:
    from ffleet.models import Placement


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


def _placement(value: str | None) -> Placement | None:
    if value is None or value in ("fastest", "energy"):
        return value  # type: ignore[return-value]  # checked just above
    raise typer.BadParameter("use fastest or energy", param_hint="--placement")


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
            with fleet_client(master, token, ca, cert, key) as client:
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
    with fleet_client(master, token, ca, cert, key) as client:
        # A key for every run: the client's own retries after a lost reply create nothing twice.
        created = client.submit(requests, idempotency_key=idempotency_key or str(uuid.uuid4()))
    if as_json:
        print_json(created)
        return
    for job in created:
        note = f"  ({job.unschedulable_reason})" if job.unschedulable_reason else ""
        typer.echo(f"{job.id}  {job.scenario}  {job.status}{note}")
    typer.echo(f"{len(created)} job(s) submitted", err=True)


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
    with fleet_client(master, token, ca, cert, key) as client:
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


def job(
    job_id: str,
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
) -> None:
    """Show one job: status, attempts, progress, metrics and analysis (JSON)."""
    with fleet_client(master, token, ca, cert, key) as client:
        print_json(client.job(job_id))


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
    with fleet_client(master, token, ca, cert, key) as client:
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
    with fleet_client(master, token, ca, cert, key) as client:
        found = client.cancel(job_id)
    if as_json:
        print_json(found)
        return
    typer.echo(f"{found.id}: {'cancel requested' if found.cancel_requested else found.status}")


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
    with fleet_client(master, token, ca, cert, key) as client:
        found = client.retry(job_id)
    if as_json:
        print_json(found)
        return
    typer.echo(f"{found.id}: {found.status}")
