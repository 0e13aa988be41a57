"""Cross-master wake-ups: PostgreSQL LISTEN/NOTIFY as a hint, polling as the fallback.

A job submitted to master A must reach an agent long-polling master B at once, not at B's next
recheck. Every store transaction that makes work claimable sends a tiny NOTIFY (`work SENDER
COUNT`); each master listens on its own connection, outside the pool (a pooled connection goes
back to the pool, and with it the LISTEN). A hint can be lost (the listener reconnecting, a
pooler in transaction mode that drops notifications), so it only ever wakes waiters early: the
long-poll recheck stays, and after the listener reconnects every waiter looks again.

At start, and after each reconnect, the listener sends itself a probe; `mode` is "notify" once
it arrives and "polling" while it does not (reported in /health).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from ffleet.store.db import libpq_url

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("ffleet.master")

CHANNEL = "ffleet_work"
PROBE_TIMEOUT_S = 2.0
RECONNECT_MAX_S = 30.0


class WakeupListener:
    def __init__(
        self,
        url: str,
        origin: str,
        *,
        on_work: Callable[[int], None],
        on_leader_free: Callable[[], None],
        on_reconnect: Callable[[], None],
    ) -> None:
        self.url = libpq_url(url)
        self.origin = origin
        self.mode = "polling"
        self._on_work = on_work
        self._on_leader_free = on_leader_free
        self._on_reconnect = on_reconnect

    async def run(self) -> None:
        import psycopg  # here, not at import: a master on SQLite never loads the driver (~10 MiB)

        delay = 1.0
        first = True
        while True:
            try:
                await self._listen(first)
            except (psycopg.Error, OSError) as exc:
                self.mode = "polling"
                log.warning("wake-up listener lost (%s): polling until it reconnects", exc)
            first = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _listen(self, first: bool) -> None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, keepalives=1, keepalives_idle=10, keepalives_interval=5
        ) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self.mode = "notify" if await self._probe(conn) else "polling"
            if self.mode == "notify":
                log.info("cross-master wake-ups: LISTEN/NOTIFY")
            else:
                log.warning(
                    "cross-master wake-ups: polling only: a NOTIFY sent to this master did not "
                    "arrive within %g s (a pooler in transaction mode drops them); work from "
                    "other masters waits for the recheck interval",
                    PROBE_TIMEOUT_S,
                )
            if not first:
                self._on_reconnect()  # hints sent while it was away are lost: everyone looks
            async for note in conn.notifies():
                self._dispatch(note.payload)

    async def _probe(self, conn: psycopg.AsyncConnection[object]) -> bool:
        token = f"probe {self.origin} {uuid.uuid4().hex}"
        await conn.execute("SELECT pg_notify(%s, %s)", [CHANNEL, token])
        async for note in conn.notifies(timeout=PROBE_TIMEOUT_S):
            if note.payload == token:
                return True
            self._dispatch(note.payload)
        return False

    def _dispatch(self, payload: str) -> None:
        topic, _, rest = payload.partition(" ")
        sender, _, count = rest.partition(" ")
        if sender == self.origin:
            return
        if topic == "work":
            self._on_work(int(count) if count.isdigit() else 1)
        elif topic == "leader":
            self._on_leader_free()
