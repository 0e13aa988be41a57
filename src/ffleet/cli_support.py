"""What every `ffleet` command shares: logging, durations, KEY=VALUE flags, refused settings,
and for the client commands the connection to the master and how they print."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ffleet.durations import format_duration, parse_duration
from ffleet.escaping import EscapingFilter
from ffleet.settings import SettingsError

if TYPE_CHECKING:
    from ffleet.client import FleetClient
    from ffleet.transport import Transport

T = TypeVar("T")

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class Seconds(float):
    """A duration default that --help shows as a user would type it (`1m30s`, not `90.0`)."""

    def __str__(self) -> str:
        return format_duration(self)


def duration(value: str | float) -> float:
    """Parses a `500ms`/`10s`/`1m` flag (a bad one is a usage error naming it, exit status 2);
    a default read from a settings object is seconds already."""
    if isinstance(value, float | int):
        return float(value)
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def duration_option(envvar: str, help: str) -> Any:
    """A flag that takes a duration and hands the command seconds."""
    return typer.Option(envvar=envvar, help=help, parser=duration, metavar="DURATION")


def log_level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise typer.BadParameter(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return text.lower()


LogLevelOption = Annotated[
    str,
    typer.Option(
        envvar="FFLEET_LOG_LEVEL",
        help=f"One of {', '.join(LOG_LEVELS)}.",
        parser=log_level,
        metavar="LEVEL",
    ),
]
DEFAULT_LOG_LEVEL = "info"


def configure_logging(level: str) -> None:
    """One line per event; httpx's per-request lines only when debugging."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.root.handlers:
        handler.addFilter(EscapingFilter())  # text from the network cannot forge a line
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.root.level))


def checked(build: Callable[[], T]) -> T:
    """Builds a settings object; a refused value ends the command with its message (exit 2)."""
    try:
        return build()
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def parse_pairs(items: list[str], flag: str) -> dict[str, str]:
    """`k=v` flags into a dict; a malformed one is a usage error naming the flag."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=flag)
        pairs[key.strip()] = value.strip()
    return pairs


# How a client command reaches the master: every one takes these.
MasterOption = Annotated[
    str,
    typer.Option(
        "--master",
        envvar="FFLEET_MASTER",
        help="The master's URL; URL1,URL2,... for several masters sharing one database.",
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="FFLEET_TOKEN", help="API token, sent as Authorization: Bearer."
    ),
]
CaOption = Annotated[
    Path | None,
    typer.Option(
        "--ca",
        envvar="FFLEET_CA",
        help="CA certificate the master's must be signed by (default: the system's store).",
    ),
]
CertOption = Annotated[
    Path | None,
    typer.Option("--cert", envvar="FFLEET_CERT", help="Client certificate, for mTLS."),
]
KeyOption = Annotated[
    Path | None, typer.Option("--key", envvar="FFLEET_KEY", help="Key of --cert.")
]


def transport(token: str | None, ca: Path | None, cert: Path | None, key: Path | None) -> Transport:
    from ffleet.transport import Transport

    try:
        return Transport(token=token, ca=ca, cert=cert, key=key)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


JsonOption = Annotated[
    bool, typer.Option("--json", envvar="FFLEET_JSON", help="Print JSON instead of a table.")
]


@contextmanager
def fleet_client(
    master_url: str, token: str | None, ca: Path | None, cert: Path | None, key: Path | None
) -> Iterator[FleetClient]:
    """A client over a command's connection options, whose refusals and connection failures
    become one clear line and exit code."""
    import ssl

    from ffleet.blobs import BlobError
    from ffleet.client import FleetClient, MasterRejected, MasterUnavailable

    via = transport(token, ca, cert, key)
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
