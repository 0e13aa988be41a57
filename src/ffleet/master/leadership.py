"""Leader duties on exactly one master: a lease row in the database, renewed while it lives.

Each master tries every third of the lease: the row is taken when absent or expired, renewed
when ours. A master stops counting itself leader when its lease would have run out, even if the
database cannot be reached to say so; a clean shutdown resigns and tells the others, so one of
them takes over at once instead of at expiry. Lease times are the database's clock.

A master starts competing one node timeout after it starts: when it was the only master, its
own downtime must not count against its agents (they get a full node timeout to reach it again
and deliver what they spooled) before its reaper declares anything lost. With other masters up,
one of them, already past that grace, takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ffleet.master.clock import DatabaseClock
from ffleet.store import Store
from ffleet.store.base import StoreUnavailable

log = logging.getLogger("ffleet.master")

Call = Callable[..., Awaitable[Any]]  # runs a store method where it may block


class Leadership:
    def __init__(
        self,
        store: Store,
        clock: DatabaseClock,
        holder: str,
        *,
        lease_s: float,
        grace_s: float,
        call: Call,
    ) -> None:
        self.store = store
        self.clock = clock
        self.holder = holder
        self.lease_s = lease_s
        self.grace_s = grace_s
        self.leader: str | None = None  # who leads, as of the last attempt
        self._call = call
        self._valid_until = 0.0
        self._poke = asyncio.Event()
        self._unanswered = False  # the last attempt met an unavailable store

    @property
    def is_leader(self) -> bool:
        """True while this master holds an unexpired lease (checked before every duty)."""
        return self.leader == self.holder and self.clock.now() < self._valid_until

    def poke(self) -> None:
        """Try for the lease now (the leader resigned)."""
        self._poke.set()

    async def run(self) -> None:
        await asyncio.sleep(self.grace_s)
        while True:
            await self._attempt()
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self.lease_s / 3)

    async def _attempt(self) -> None:
        started = self.clock.now()
        was_leader = self.is_leader
        try:
            take = self.store.take_leadership
            leader = await self._call(take, self.holder, started, self.lease_s)
        except StoreUnavailable:
            # The master's store health says so once per outage; a line per lease attempt
            # would bury it.
            if not self._unanswered:
                log.warning("leader lease not renewed while the database cannot serve")
            self._unanswered = True
            if was_leader and not self.is_leader:
                log.warning("leader lease expired unrenewed: %s stops leading", self.holder)
            return
        except Exception as exc:
            log.warning("leader lease: the database did not answer (%s)", exc)
            if was_leader and not self.is_leader:
                log.warning("leader lease expired unrenewed: %s stops leading", self.holder)
            return
        self._unanswered = False
        if leader == self.holder:
            self._valid_until = started + self.lease_s
        if leader != self.leader:
            if leader == self.holder:
                log.info("this master (%s) leads: it runs the reaper, aging, retention", leader)
            elif was_leader:
                log.warning("this master lost the lead to %s", leader)
            else:
                log.info("master %s leads", leader)
        self.leader = leader

    async def resign(self) -> None:
        """On clean shutdown: give the lease up so another master leads at once."""
        if self.leader != self.holder:
            return
        self.leader = None
        try:
            await self._call(self.store.resign_leadership, self.holder)
        except Exception as exc:
            log.warning("could not resign the lead (%s): it expires in %g s", exc, self.lease_s)
        else:
            log.info("this master resigned the lead")
