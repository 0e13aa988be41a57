"""The connection cap fits the open-files limit: raised as far as allowed, never past it."""

from __future__ import annotations

import logging
import resource

import pytest

from ffleet.master import connection_cap as module
from ffleet.master.connection_cap import FILES_RESERVED, connection_cap


class Limits:
    def __init__(self, soft: int, hard: int) -> None:
        self.soft, self.hard = soft, hard

    def get(self, kind: int) -> tuple[int, int]:
        assert kind == resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def set(self, kind: int, limits: tuple[int, int]) -> None:
        assert kind == resource.RLIMIT_NOFILE and limits[1] == self.hard
        self.soft = limits[0]


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> Limits:
    fake = Limits(1024, 1024)
    monkeypatch.setattr(module.resource, "getrlimit", fake.get)
    monkeypatch.setattr(module.resource, "setrlimit", fake.set)
    return fake


def test_the_soft_limit_is_raised_to_fit_the_cap(limits: Limits) -> None:
    limits.hard = 100_000
    assert connection_cap(25_000) == 25_000
    assert limits.soft == 25_000 + FILES_RESERVED  # no further than needed


def test_a_cap_past_the_hard_limit_shrinks_with_a_warning(
    limits: Limits, caplog: pytest.LogCaptureFixture
) -> None:
    limits.hard = 20_000
    with caplog.at_level(logging.WARNING, "ffleet.master"):
        assert connection_cap(25_000) == 20_000 - FILES_RESERVED
    assert limits.soft == 20_000
    assert "room for 19744 connections, not --max-connections 25000" in caplog.text


def test_an_unlimited_process_keeps_its_cap(limits: Limits) -> None:
    limits.soft = limits.hard = resource.RLIM_INFINITY
    assert connection_cap(25_000) == 25_000
