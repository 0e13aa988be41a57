"""Storage behind one protocol: `open_store(url)` picks the backend from the URL."""

from __future__ import annotations

from ffleet.redaction import redact_url
from ffleet.store.base import (
    Conflict,
    IllegalTransition,
    InvalidRequest,
    JobAfterResult,
    NotFound,
    ReapReport,
    ResultOutcome,
    SchedulingPolicy,
    SchemaTooNew,
    Store,
    StoreError,
    StoreUnavailable,
)
from ffleet.store.sql import SqlStore

__all__ = [
    "Conflict",
    "IllegalTransition",
    "InvalidRequest",
    "JobAfterResult",
    "NotFound",
    "ReapReport",
    "ResultOutcome",
    "SchedulingPolicy",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "open_store",
    "redact_url",
]


def open_store(url: str, policy: SchedulingPolicy | None = None) -> Store:
    """`memory`, `sqlite:///PATH` or `postgresql://...` (see README: Storage).

    Migrates the database to this version's schema first; SchemaTooNew if a newer ffleet
    already migrated it further."""
    return SqlStore(url, policy)
