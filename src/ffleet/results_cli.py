"""`ffleet results` (table, CSV, JSON), `ffleet results export` (archive) and
`ffleet report` (HTML comparison): finished jobs' results from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ffleet.cli_support import (
    CaOption,
    CertOption,
    JsonOption,
    KeyOption,
    MasterOption,
    TokenOption,
    fleet_client,
    print_json,
)
from ffleet.settings import DEFAULT_MASTER_URL

results_app = typer.Typer(no_args_is_help=False)


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

    with fleet_client(master, token, ca, cert, key) as client:
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
    with fleet_client(master, token, ca, cert, key) as client:
        ids = export(client, start, end, out)
        removed = purge_exported(client, ids) if delete_exported and ids else 0
    if as_json:
        print_json({"file": str(out), "exported": len(ids), "deleted": removed})
        return
    typer.echo(f"exported {len(ids)} finished job(s) to {out}")
    if delete_exported:
        typer.echo(f"removed {removed} of them from the master's store")


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

    with fleet_client(master, token, ca, cert, key) as client:
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
