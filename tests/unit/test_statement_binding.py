"""How a named statement's `:name` parameters reach each driver: numbered `?N` for SQLite, with
the values taken from the caller's mapping in that order, and `%(name)s` for psycopg; every
statement of the catalogue names the same parameters after its translation as before."""

from __future__ import annotations

import functools
import re
import sqlite3
from importlib import resources

import pytest

from ffleet.store import queries
from ffleet.store.db import positional

# The shipped statements quote no colon, so a plain search finds all their parameters.
NAMED = re.compile(r"(?<![:\w]):(\w+)")
NUMBERED = re.compile(r"\?(\d+)")
PSYCOPG = re.compile(r"%\((\w+)\)s")


def run_on_sqlite(sql: str, params: dict[str, object]) -> tuple[object, ...]:
    text, bind = positional({"probe": sql})["probe"]
    row = sqlite3.connect(":memory:").execute(text, bind(params)).fetchone()
    assert row is not None
    return tuple(row)


def test_a_repeated_name_is_one_number_and_one_value() -> None:
    text, bind = positional({"probe": "SELECT :a, :b, :a WHERE :b > 0"})["probe"]
    assert text == "SELECT ?1, ?2, ?1 WHERE ?2 > 0"
    assert bind({"b": 2, "a": 1, "unused": 3}) == (1, 2)
    assert run_on_sqlite("SELECT :a, :b, :a WHERE :b > 0", {"a": 1, "b": 2}) == (1, 2, 1)


def test_a_name_that_begins_another_is_its_own_parameter() -> None:
    sql = "SELECT :idx, :id, :id_2, :id"
    text, _ = positional({"probe": sql})["probe"]
    assert text == "SELECT ?1, ?2, ?3, ?2"
    assert run_on_sqlite(sql, {"id": "a", "idx": "b", "id_2": "c"}) == ("b", "a", "c", "a")


def test_one_value_and_no_value_bind_as_tuples() -> None:
    assert run_on_sqlite("SELECT :only", {"only": 5}) == (5,)
    assert run_on_sqlite("SELECT 6", {}) == (6,)
    with pytest.raises(KeyError):
        run_on_sqlite("SELECT :only", {"other": 5})


@pytest.mark.parametrize("name", sorted(queries.for_dialect("sqlite")))
def test_each_sqlite_statement_numbers_exactly_its_names(name: str) -> None:
    source = queries.for_dialect("sqlite")[name]
    names = list(dict.fromkeys(NAMED.findall(source)))  # in order of first use
    text, bind = positional({name: source})[name]
    assert {int(number) for number in NUMBERED.findall(text)} == set(range(1, len(names) + 1))
    assert NUMBERED.sub(lambda found: ":" + names[int(found[1]) - 1], text) == source
    assert bind({parameter: parameter for parameter in names}) == tuple(names)


@functools.cache
def sources(dialect: str) -> dict[str, str]:
    """The statements of one dialect as its files write them, before any translation."""
    files = resources.files("ffleet.store")
    read = {
        filename: queries.parse(files.joinpath(filename).read_text("utf-8"), filename)
        for filename in ("queries.sql", f"queries.{dialect}.sql")
    }
    return {name: sql for statements in read.values() for name, sql in statements.items()}


@pytest.mark.parametrize("name", sorted(queries.for_dialect("postgresql")))
def test_each_postgresql_statement_names_exactly_its_parameters(name: str) -> None:
    written = sources("postgresql")
    source = written.get(name) or written[name.removesuffix(queries.UNLOCKED)]
    translated = queries.for_dialect("postgresql")[name]
    assert set(PSYCOPG.findall(translated)) == set(NAMED.findall(source))
    assert not NAMED.search(translated)
