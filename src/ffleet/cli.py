"""The `ffleet` command line. Every flag has an FFLEET_* environment twin (shown in --help).

Each group of commands lives in its own module (jobs_cli.py, nodes_cli.py, results_cli.py,
blobs_cli.py, token_cli.py, certs_cli.py, agent/cli.py, master/cli.py); this one assembles
them, in the order --help lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ffleet.agent.cli import agent
from ffleet.blobs_cli import download, upload
from ffleet.certs_cli import certs_app
from ffleet.cli_support import (
    CaOption,
    CertOption,
    KeyOption,
    MasterOption,
    Seconds,
    TokenOption,
    duration_option,
    fleet_client,
)
from ffleet.jobs_cli import cancel, explain, job, jobs, retry, run, submit
from ffleet.master.cli import master
from ffleet.nodes_cli import drain, nodes
from ffleet.results_cli import comparison_report, results_app
from ffleet.settings import DEFAULT_MASTER_URL
from ffleet.token_cli import audit, token_app

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


app.command()(run)
app.command()(submit)
app.command()(jobs)
app.command()(job)
app.command()(explain)
app.command()(nodes)
app.add_typer(results_app, name="results")
app.command()(cancel)
app.command()(retry)
app.command()(upload)
app.command()(download)
app.command()(drain)
app.command("report")(comparison_report)


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

    with fleet_client(master, token, ca, cert, key) as client:
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
