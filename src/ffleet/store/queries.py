"""Named SQL statements, read once from the `.sql` files that ship beside this module.

A file is a series of sections, each opened by a `-- name: NAME` line; other comment lines are
documentation and are dropped. `queries.sql` holds what SQLite and PostgreSQL run alike;
`queries.sqlite.sql` and `queries.postgresql.sql` hold, under the same names in both, the
statements that differ (mostly in how they lock rows), so every dialect choice is written out
there and nowhere else. Every statement that locks the rows it reads also exists as
`NAME_unlocked`, the same read without the lock, for a reader that must not hold a claim's
locks (`explain` asking which job a claim would get). Parameters are written `:name`; for
psycopg they become `%(name)s` here, once per statement, not per execution.

A `--` comment, on a line of its own or after SQL, is dropped; a `'string'` or `"identifier"`
(quotes doubled inside) is text, so a `--` or `:name` in it is neither; `::type` is a
PostgreSQL cast, not a parameter. Not recognised, so not to be written in these files:
`/* */` comments, dollar-quoted strings and `E'...'` strings with backslash escapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from importlib import resources

DIALECTS = ("sqlite", "postgresql")
_SECTION = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
# What a scan of a statement meets, tried in this order at each place: a quoted string or
# identifier is taken whole before anything inside it could be read as a comment or parameter.
_TOKEN = re.compile(
    r"""(?P<quoted>'(?:[^']|'')*'|"(?:[^"]|"")*")"""
    r"|(?P<comment>^[ \t]*--[^\n]*\n?|[ \t]*--[^\n]*)"  # a line of its own goes whole
    r"|::"
    r"|(?<!\w):(?P<parameter>\w+)",
    re.MULTILINE,
)
_LOCKING = re.compile(r"\s+FOR UPDATE(?: SKIP LOCKED)?\s*$")
UNLOCKED = "_unlocked"


class QueryFileError(Exception):
    """A `.sql` file of the package is malformed (a bug in ffleet, caught at import)."""


def parse(text: str, source: str) -> dict[str, str]:
    """Sections of one file: name -> statement, comments and surrounding blank lines dropped."""
    parts = _SECTION.split(text)
    statements: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        statement = _TOKEN.sub(_without_comment, body).strip()
        if not statement:
            raise QueryFileError(f"{source}: section {name!r} is empty")
        if name in statements:
            raise QueryFileError(f"{source}: section {name!r} appears twice")
        statements[name] = statement
    return statements


def _without_comment(found: re.Match[str]) -> str:
    return "" if found["comment"] is not None else found[0]


def substitute(sql: str, replace: Callable[[str], str]) -> str:
    """`sql` with each `:name` parameter replaced by `replace(name)`; quoted text, comments and
    casts are left as they are."""

    def token(found: re.Match[str]) -> str:
        name = found["parameter"]
        return found[0] if name is None else replace(name)

    return _TOKEN.sub(token, sql)


def psycopg_form(sql: str) -> str:
    """A statement as psycopg takes it: `%(name)s` parameters, and `%` doubled elsewhere (psycopg
    reads every `%`, in a string or an operator alike, as the start of a placeholder)."""
    return substitute(sql.replace("%", "%%"), lambda name: f"%({name})s")


def _read(filename: str) -> dict[str, str]:
    return parse(resources.files("ffleet.store").joinpath(filename).read_text("utf-8"), filename)


def _load() -> dict[str, Mapping[str, str]]:
    shared = _read("queries.sql")
    variants = {dialect: _read(f"queries.{dialect}.sql") for dialect in DIALECTS}
    names = set(variants[DIALECTS[0]])
    for dialect, statements in variants.items():
        if set(statements) != names:
            raise QueryFileError(f"queries.{dialect}.sql names differ from the other dialect's")
        if names & set(shared):
            raise QueryFileError(f"queries.{dialect}.sql repeats a shared statement")
    locking = {
        name
        for statements in variants.values()
        for name, sql in statements.items()
        if _LOCKING.search(sql)
    }
    catalogs: dict[str, Mapping[str, str]] = {}
    for dialect, statements in variants.items():
        merged = {**shared, **statements}
        merged.update({name + UNLOCKED: _LOCKING.sub("", merged[name]) for name in locking})
        if dialect == "postgresql":
            merged = {name: psycopg_form(sql) for name, sql in merged.items()}
        catalogs[dialect] = merged
    return catalogs


CATALOGS = _load()


def for_dialect(dialect: str) -> Mapping[str, str]:
    """The statements of one engine (`sqlite` or `postgresql`), by name."""
    return CATALOGS[dialect]
