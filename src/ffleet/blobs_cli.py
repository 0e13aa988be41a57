"""`ffleet upload` and `ffleet download`: files to and from the master's blob store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ffleet.cli_support import (
    CaOption,
    CertOption,
    KeyOption,
    MasterOption,
    TokenOption,
    fleet_client,
)
from ffleet.settings import DEFAULT_MASTER_URL


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
    with fleet_client(master, token, ca, cert, key) as client:
        typer.echo(client.upload_blob(file))


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

    with fleet_client(master, token, ca, cert, key) as client:
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
