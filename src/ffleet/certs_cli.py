"""`ffleet certs init|node`: a private CA, the master's certificate, node client certificates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

certs_app = typer.Typer(
    help="Make the TLS files of a fleet: a CA, the master's and each node's certificate.",
    no_args_is_help=True,
)

DirOption = Annotated[
    Path, typer.Option("--dir", envvar="FFLEET_DIR", help="Where the CA and certificates live.")
]


def _done(paths: list[Path]) -> None:
    for path in paths:
        typer.echo(f"wrote {path}")


@certs_app.command("init")
def init(
    directory: DirOption,
    host: Annotated[
        list[str],
        typer.Option(
            envvar="FFLEET_HOST",
            help="A name or address agents use to reach the master (repeatable).",
        ),
    ],
) -> None:
    """Create a CA (ca.pem, ca-key.pem) and the master's certificate (master.pem, -key.pem)."""
    from ffleet.certs import CertsError
    from ffleet.certs import init as make

    try:
        _done(make(directory, host))
    except CertsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@certs_app.command("node")
def node(
    directory: DirOption,
    name: Annotated[str, typer.Option(envvar="FFLEET_NAME", help="The node's name.")],
) -> None:
    """Issue a client certificate for one node (NAME.pem, NAME-key.pem)."""
    from ffleet.certs import CertsError, issue_node

    try:
        _done(issue_node(directory, name))
    except CertsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
