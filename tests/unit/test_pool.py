"""The store's PostgreSQL pool: reuse without round trips, and no dead connection handed out."""

from __future__ import annotations

import os
import select
import time

import psycopg
import pytest

from ffleet.store import pool
from ffleet.store.availability import PoolTimeout
from ffleet.store.db import libpq_url
from ffleet.store.pool import Pool
from tests.conftest import POSTGRES_URL, postgres_available


@pytest.fixture
def conninfo() -> str:
    why = postgres_available()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return libpq_url(POSTGRES_URL)


def test_a_connection_given_back_is_taken_again(conninfo: str) -> None:
    shared = Pool(conninfo, size=2, overflow=0)
    try:
        first = shared.take()
        first.execute("SELECT 1")
        first.commit()
        shared.give_back(first)
        again = shared.take()
        assert again is first
        shared.give_back(again)
    finally:
        shared.close()


def test_a_lost_connection_ends_every_one_opened_before_it(conninfo: str) -> None:
    shared = Pool(conninfo, size=3, overflow=0)
    try:
        idle, busy, failing = shared.take(), shared.take(), shared.take()
        shared.give_back(idle)
        shared.give_back(failing, lost=True)
        assert idle.closed and failing.closed
        shared.give_back(busy)  # in use at the time of the loss: closed on its way back
        assert busy.closed
        fresh = shared.take()
        assert fresh not in (idle, busy, failing) and not fresh.closed
        shared.give_back(fresh)
    finally:
        shared.close()


def test_one_idle_for_a_while_is_checked_before_use(
    conninfo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "CHECK_AFTER_IDLE_S", 0.0)
    shared = Pool(conninfo, size=1, overflow=0)
    try:
        stale = shared.take()
        pid = stale.info.backend_pid
        shared.give_back(stale)
        with psycopg.connect(conninfo, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        taken = shared.take()
        assert taken is not stale and taken.info.backend_pid != pid
        shared.give_back(taken)
    finally:
        shared.close()


def test_waiting_longer_than_the_timeout_for_a_connection_fails(conninfo: str) -> None:
    shared = Pool(conninfo, size=1, overflow=0, timeout_s=0.05)
    try:
        held = shared.take()
        with pytest.raises(PoolTimeout):
            shared.take()
        shared.give_back(held)
    finally:
        shared.close()


def test_one_the_server_hung_up_on_is_never_handed_out(conninfo: str) -> None:
    shared = Pool(conninfo, size=1, overflow=0)
    try:
        stale = shared.take()
        pid = stale.info.backend_pid
        shared.give_back(stale)  # idle only moments: not checked by a round trip
        with psycopg.connect(conninfo, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 5
        while not select.select([stale.fileno()], [], [], 0.05)[0]:
            assert time.monotonic() < deadline
        taken = shared.take()
        assert taken is not stale and taken.info.backend_pid != pid
        shared.give_back(taken)
    finally:
        shared.close()
