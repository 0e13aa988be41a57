"""The audit log's buffer: entries reach the store in the order recorded, and a failed write
keeps them for the next flush."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from ffleet.audit import AuditEntry
from ffleet.master.audit_log import AuditLog
from ffleet.models import Timestamp


class _Store:
    def __init__(self) -> None:
        self.written: list[list[str]] = []
        self.fail = False

    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        if self.fail:
            raise OSError("disk full")
        self.written.append([entry.action for entry in entries])


def _entry(action: str) -> AuditEntry:
    return AuditEntry(
        at=Timestamp(1e9), actor_id="a", actor_name="a", role="admin", action=action, outcome=200
    )


def test_a_failed_flush_keeps_its_entries_ahead_of_later_ones() -> None:
    store = _Store()
    store_any: Any = store
    audit = AuditLog(store_any, 3600.0, store_any, lambda: 1e9)
    for action in ("one", "two"):
        audit.record(_entry(action))
    store.fail = True
    with pytest.raises(OSError):
        audit.flush()
    audit.record(_entry("three"))
    store.fail = False
    audit.flush()
    audit.flush()  # nothing left: an empty write
    assert store.written == [["one", "two", "three"], []]
