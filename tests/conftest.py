"""Shared fixtures: a store of every backend (memory, SQLite file, PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ffleet.store import SchedulingPolicy, Store, open_store

POSTGRES_URL = os.environ.get("FFLEET_TEST_POSTGRES", "postgresql+psycopg:///ffleet_test")
BACKENDS = ["memory", "sqlite", "postgres"]


def postgres_available() -> str | None:
    """None when reachable, else why not. In CI a missing server is a failure, not a skip."""
    try:
        engine = create_engine(POSTGRES_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {exc.__class__.__name__}"
    return None


def reset_postgres() -> None:
    """Drop every table of the test database, whichever migrations created them."""
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        found = conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        )
        tables = ", ".join(f'"{name}"' for (name,) in found)
        if tables:
            conn.execute(text(f"DROP TABLE IF EXISTS {tables} CASCADE"))
    engine.dispose()


def store_url(backend: str, tmp_path: Path) -> str:
    if backend == "memory":
        return "memory"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'ffleet.db'}"
    why = postgres_available()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    reset_postgres()
    return POSTGRES_URL


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_url(request.param, tmp_path)


@pytest.fixture
def policy() -> SchedulingPolicy:
    return SchedulingPolicy(
        node_timeout_s=10.0, backoff_base_s=1.0, backoff_cap_s=4.0, aging_interval_s=30.0
    )


@pytest.fixture
def store(backend_url: str, policy: SchedulingPolicy) -> Iterator[Store]:
    opened = open_store(backend_url, policy)
    yield opened
    opened.close()
