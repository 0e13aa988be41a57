"""What every `ffleet` command shares: logging setup, durations and KEY=VALUE flags."""

from __future__ import annotations

import logging

import typer

from ffleet.durations import parse_duration

DEFAULT_MASTER = "http://127.0.0.1:8080"


def configure_logging(level: str) -> None:
    """One line per event; httpx's per-request lines only when debugging."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.root.level))


def duration_option(text: str, flag: str) -> float:
    """`500ms`, `10s`, `1m` into seconds; a bad value is a usage error naming the flag."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=flag) from None


def parse_pairs(items: list[str], flag: str) -> dict[str, str]:
    """`k=v` flags into a dict; a malformed one is a usage error naming the flag."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=flag)
        pairs[key.strip()] = value.strip()
    return pairs
