"""The master's clock is the database's: a measured offset, and a loud warning when it is big."""

from __future__ import annotations

import logging
import time

import pytest

from ffleet.master.clock import DatabaseClock


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
