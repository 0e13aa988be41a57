"""The statement catalogue: every row-locking read also exists without its lock, and a
statement's comments and quoted text never hold a parameter."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from ffleet.store import db as store_db
from ffleet.store import queries
from ffleet.store.db import libpq_url
from tests.conftest import store_url


def test_a_locking_read_has_an_unlocked_twin_in_every_dialect() -> None:
    postgres = queries.for_dialect("postgresql")
    sqlite = queries.for_dialect("sqlite")
    locked = postgres["claim_candidates"]
    assert locked.endswith("FOR UPDATE SKIP LOCKED")
    unlocked = postgres["claim_candidates" + queries.UNLOCKED]
    assert unlocked == locked.removesuffix("FOR UPDATE SKIP LOCKED").rstrip()
    assert sqlite["claim_candidates" + queries.UNLOCKED] == sqlite["claim_candidates"]
    assert "FOR UPDATE" not in postgres["job_locked" + queries.UNLOCKED]
    assert set(postgres) == set(sqlite)
    assert "node_get" + queries.UNLOCKED not in postgres  # a plain read needs no twin


SECTION = """-- name: probe
SELECT :a AS a, -- the first value; :skipped is not a parameter
  -- nor is :hidden, on a line of its own within the statement
  ':lit' AS lit, 'a--b' AS dash, 'it''s :z' AS quote, "q:w".x AS quoted
FROM (SELECT 1 AS x) AS "q:w" WHERE :b = :b -- :last
"""


def test_comments_go_and_quoted_text_stays_as_written() -> None:
    statement = queries.parse(SECTION, "probe.sql")["probe"]
    assert "--" not in statement.replace("'a--b'", "")
    assert "skipped" not in statement and "hidden" not in statement and "last" not in statement
    assert "':lit' AS lit, 'a--b' AS dash, 'it''s :z' AS quote" in statement


def test_only_parameters_outside_quotes_and_comments_are_substituted() -> None:
    commented = "SELECT :a, ':lit', e::text -- :x\n  -- :y\nFROM t WHERE \"c:d\" = :b"
    text = queries.substitute(commented, str.upper)
    assert text == "SELECT A, ':lit', e::text -- :x\n  -- :y\nFROM t WHERE \"c:d\" = B"


def test_a_statement_with_comments_and_quoted_colons_runs_on_sqlite() -> None:
    text, bind = store_db.positional(queries.parse(SECTION, "probe.sql"))["probe"]
    row = sqlite3.connect(":memory:").execute(text, bind({"a": 7, "b": 1})).fetchone()
    assert row == (7, ":lit", "a--b", "it's :z", 1)


def test_a_statement_with_comments_casts_and_quoted_colons_runs_on_postgresql(
    tmp_path: Path,
) -> None:
    statement = queries.parse(SECTION, "probe.sql")["probe"].replace(":a AS", ":a::int AS")
    with psycopg.connect(libpq_url(store_url("postgres", tmp_path))) as conn:
        row = conn.execute(queries.psycopg_form(statement), {"a": "7", "b": 1}).fetchone()
    assert row == (7, ":lit", "a--b", "it's :z", 1)


def test_a_percent_sign_reaches_postgresql_as_written(tmp_path: Path) -> None:
    statement = "SELECT '100%' AS text, 7 % 4 AS remainder, :a::int AS a"
    with psycopg.connect(libpq_url(store_url("postgres", tmp_path))) as conn:
        row = conn.execute(queries.psycopg_form(statement), {"a": "1"}).fetchone()
    assert row == ("100%", 3, 1)
