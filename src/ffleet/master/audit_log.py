"""The master's audit trail: every state-changing request and every refused one, in the store.

Entries are buffered and written in one transaction every `FLUSH_S`, so auditing a heartbeat
costs an append to a list, not a commit of its own. Reading the trail through this master
flushes first, so it always shows what this master did; a kill -9 can lose the last
`FLUSH_S` of entries. Retention: entries older than `retention_s` are pruned by the same task.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from ffleet.audit import AuditEntry
from ffleet.master.leadership import Call
from ffleet.store import Store, StoreUnavailable

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
        # A deque's append and popleft are atomic: requests on the loop record while a flush
        # on a store thread (PostgreSQL) takes what is there, with no lock per request.
        self._pending: deque[AuditEntry] = deque()
        self._pruned_at = 0.0

    def record(self, entry: AuditEntry) -> None:
        self._pending.append(entry)

    def flush(self) -> None:
        pending = self._pending
        entries: list[AuditEntry] = []
        for _ in range(len(pending)):
            try:
                entries.append(pending.popleft())
            except IndexError:  # a flush on another thread took the rest (PostgreSQL)
                break
        try:
            self.store.append_audit(entries)
        except Exception:
            pending.extendleft(reversed(entries))  # kept for the next pass, in their order
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
            except StoreUnavailable:
                continue  # kept for the next flush; said once by the master's store health
            except Exception:
                log.exception("audit: writing the trail failed; will try again")
