"""The master's audit trail: every state-changing request and every refused one, in the store.

Entries are buffered and written in one transaction every `FLUSH_S`, so auditing a heartbeat
costs an append to a list, not a commit of its own. Reading the trail through this master
flushes first, so it always shows what this master did; a kill -9 can lose the last
`FLUSH_S` of entries. Retention: entries older than `retention_s` are pruned by the same task.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from ffleet.audit import AuditEntry
from ffleet.master.leadership import Call
from ffleet.store import Store

log = logging.getLogger("ffleet.master")

FLUSH_S = 1.0
PRUNE_EVERY_S = 3600.0


class AuditLog:
    def __init__(
        self, store: Store, retention_s: float, call: Call, now: Callable[[], float]
    ) -> None:
        self.store = store
        self.retention_s = retention_s
        self.call = call  # the master's way to the store (off its event loop on PostgreSQL)
        self.now = now
        self._pending: list[AuditEntry] = []
        self._lock = threading.Lock()
        self._pruned_at = 0.0

    def record(self, entry: AuditEntry) -> None:
        with self._lock:
            self._pending.append(entry)

    def flush(self) -> None:
        with self._lock:
            entries, self._pending = self._pending, []
        try:
            self.store.append_audit(entries)
        except Exception:
            with self._lock:  # keep them for the next pass rather than lose them
                self._pending[:0] = entries
            raise

    def prune(self, now: float) -> None:
        removed = self.store.prune_audit(now - self.retention_s)
        self._pruned_at = now
        if removed:
            log.info("audit: %d entries older than the retention removed", removed)

    async def run(self) -> None:
        """Flush (and now and then prune) for as long as the app runs."""
        while True:
            await asyncio.sleep(FLUSH_S)
            try:
                await self.call(self.flush)
                now = self.now()
                if now - self._pruned_at >= PRUNE_EVERY_S:
                    await self.call(self.prune, now)
            except Exception:
                log.exception("audit: writing the trail failed; will try again")
