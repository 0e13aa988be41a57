"""The store's PostgreSQL connections: one the server hung up on is never handed out, a lost
one makes later transactions connect afresh, and a long wait for one is a StoreUnavailable."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psycopg
import pytest

from ffleet.store import db as store_db
from ffleet.store.base import StoreUnavailable
from ffleet.store.db import Database, libpq_url
from tests.conftest import POSTGRES_URL, postgres_available

OTHERS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
)


@pytest.fixture
def admin() -> Iterator[psycopg.Connection]:
    """A connection of the test's own, beside the store's."""
    why = postgres_available()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    with psycopg.connect(libpq_url(POSTGRES_URL), autocommit=True) as conn:
        yield conn


def store_backends(admin: psycopg.Connection) -> set[int]:
    return {pid for (pid,) in admin.execute(OTHERS).fetchall()}


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_connections_the_server_hung_up_on_are_never_handed_out(
    admin: psycopg.Connection,
) -> None:
    database = Database(POSTGRES_URL)
    try:
        with database.transaction() as tx:
            tx.ddl("SELECT 1")
        before = store_backends(admin)
        admin.execute("SELECT pg_terminate_backend(pid) FROM (" + OTHERS + ") AS store")
        wait_for(lambda: not store_backends(admin) & before, "the backends did not end")
        for _ in range(3):
            with database.transaction() as tx:  # no error: a fresh connection each time
                tx.ddl("SELECT 1")
    finally:
        database.close()


def test_a_transaction_that_lost_the_server_fails_and_the_next_connects_afresh(
    admin: psycopg.Connection,
) -> None:
    database = Database(POSTGRES_URL)
    try:
        with database.transaction() as tx:
            tx.ddl("SELECT 1")
        wait_for(lambda: len(store_backends(admin)) >= store_db.POOL_SIZE, "pool not filled")
        before = store_backends(admin)
        with (
            pytest.raises(StoreUnavailable, match="database unavailable"),
            database.transaction() as tx,
        ):
            tx.ddl("SELECT pg_terminate_backend(pg_backend_pid())")
        # Every connection opened before the loss is closed, the idle ones too.
        wait_for(lambda: not store_backends(admin) & before, "connections kept after a loss")
        with database.transaction() as tx:
            tx.ddl("SELECT 1")
    finally:
        database.close()


def test_waiting_past_the_pool_timeout_is_store_unavailable(
    admin: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_db, "POOL_SIZE", 1)
    monkeypatch.setattr(store_db, "POOL_OVERFLOW", 0)
    monkeypatch.setattr(store_db, "POOL_TIMEOUT_S", 0.1)
    database = Database(POSTGRES_URL)
    try:
        with (
            database.transaction(),  # holds the only connection
            pytest.raises(StoreUnavailable, match=r"no database connection free \(pool"),
            database.transaction(),
        ):
            pass
    finally:
        database.close()
