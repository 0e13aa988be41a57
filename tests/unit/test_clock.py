"""The master's clock is the database's: a measured offset, a loud warning when it is big, and
token expiry judged by it, so that every master agrees when a token ends."""

from __future__ import annotations

import logging
import time

import pytest
from starlette.requests import Request

from ffleet.master.access import Access
from ffleet.master.clock import DatabaseClock, database_now
from ffleet.master.exposure import authentication_on
from ffleet.master.http import ApiError
from ffleet.master.settings import MasterSettings
from ffleet.store import open_store


def test_the_offset_to_a_fast_database_is_measured_and_added() -> None:
    clock = DatabaseClock(lambda: time.time() + 30.0)
    assert clock.measure() == pytest.approx(30.0, abs=0.05)
    assert clock.now() - time.time() == pytest.approx(30.0, abs=0.05)


def test_sqlite_has_nothing_to_measure() -> None:
    clock = DatabaseClock(None)
    assert clock.measure() == 0.0
    assert clock.now() == pytest.approx(time.time(), abs=0.05)


def test_a_clock_off_by_more_than_a_tenth_of_the_node_timeout_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = DatabaseClock(lambda: time.time() - 30.0)
    clock.measure()
    with caplog.at_level(logging.INFO, logger="ffleet.master"):
        clock.check(node_timeout_s=90.0)
        assert [r.levelno for r in caplog.records] == [logging.WARNING]
        assert "30.0" in caplog.text and "AHEAD OF" in caplog.text.upper()
        caplog.clear()
        clock.check(node_timeout_s=600.0)
        assert [r.levelno for r in caplog.records] == [logging.INFO]


def bearer(token: str) -> Request:
    headers = [(b"authorization", f"Bearer {token}".encode())]
    return Request({"type": "http", "method": "GET", "path": "/jobs", "headers": headers})


def test_a_token_expires_by_the_masters_clock_not_this_machines() -> None:
    """This machine's clock is two minutes behind the database's: a token that ends in one
    minute by this machine's clock has ended for every master, so it is refused here too."""
    store = open_store("memory")
    _, token = store.create_credential("reader", "r", time.time(), expires_at=time.time() + 60)
    clock = DatabaseClock(lambda: time.time() + 120.0)
    clock.measure()
    with pytest.raises(ApiError, match="revoked or expired"):
        Access(store, enforced=True, now=clock.now).identify(bearer(token))
    assert Access(store, enforced=True, now=time.time).identify(bearer(token)).role == "reader"
    store.close()


class _AheadStore:
    """A PostgreSQL-like store whose database clock runs an hour ahead of this machine, holding
    one credential that this machine's clock says ends in a minute."""

    inline = False

    def __init__(self) -> None:
        self.ends_at = time.time() + 60

    def database_time(self) -> float:
        return time.time() + 3600

    def count_credentials(self, now: float, role: str | None = None) -> int:
        return 1 if now < self.ends_at else 0


def test_a_masters_start_counts_credentials_by_the_databases_clock() -> None:
    store = _AheadStore()
    assert database_now(store) == pytest.approx(time.time() + 3600, abs=1)  # type: ignore[arg-type]
    # Expired for the database: the loopback master runs open, as with no credential at all.
    assert authentication_on(MasterSettings(), store) is False  # type: ignore[arg-type]
