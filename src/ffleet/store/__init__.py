"""Storage behind one protocol: `open_store(url)` picks the backend from the URL."""

from __future__ import annotations

from ffleet.store.base import (
    Conflict,
    InvalidRequest,
    NotFound,
    ReapReport,
    ResultOutcome,
    SchedulingPolicy,
    Store,
    StoreError,
)
from ffleet.store.sql import SqlStore, redact_url

__all__ = [
    "Conflict",
    "InvalidRequest",
    "NotFound",
    "ReapReport",
    "ResultOutcome",
    "SchedulingPolicy",
    "Store",
    "StoreError",
    "open_store",
    "redact_url",
]


def open_store(url: str, policy: SchedulingPolicy | None = None) -> Store:
    """`memory`, `sqlite:///PATH` or `postgresql://...` (see README: Storage)."""
    return SqlStore(url, policy)
