"""Wake long-polling agents when work appears — as few as the work needs.

Waking every waiter for every job costs a claim transaction per idle agent per job (measured:
+32% master CPU per job with 8 idle agents). Instead each new job wakes one waiter, oldest
first. A waiter that wakes and finds nothing it can run (the job needs a GPU it lacks, or
someone else took it) passes the wake to the next waiter, at most once around the queue, so a
job that only one node can run still reaches that node at once.

A wake is passed on only while work announced to waiters is still untaken (as far as this
master saw claims): a job that a poll just arriving claimed first would otherwise send its
wake around every waiter in turn, one claim each (measured with 10,000 agents: four fifths
of the master's CPU in claims that found nothing).

A waiter registers *before* it tries to claim, so a job submitted between a failed claim and
the wait still wakes it. A waiter that leaves is removed at once: the queue holds only
requests that are waiting now, however many polls an idle fleet makes (a poll that does not
wait never enters it).

An idle waiter costs nothing but its place in the queue: it waits on its own future with one
timer, and looks again only when woken, or, where other masters may create work it hears of
only by a hint that can be lost, every recheck interval.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

_TIMED_OUT = -1  # what a waiter's future holds when its wait ended unwoken


class Dispatcher:
    def __init__(self) -> None:
        # Oldest first, with the node each waits for; an OrderedDict so that a waiter
        # leaving from the middle costs O(1).
        self._waiting: OrderedDict[asyncio.Future[int], str | None] = OrderedDict()
        # Jobs announced by `notify` less jobs claimed since (`taken`), never below 0: work
        # created before this master started or by another master is taken unannounced.
        self._untaken = 0

    @property
    def waiting(self) -> int:
        """How many requests are waiting for a wake now."""
        return len(self._waiting)

    def enlist(self, node_id: str | None = None) -> asyncio.Future[int]:
        """A future resolved with a wake's remaining hops when this waiter is woken."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[future] = node_id
        return future

    def leave(self, future: asyncio.Future[int]) -> None:
        """Stop waiting; a wake this waiter received but did not use goes to the next one."""
        if future.done():  # woken or timed out (out of the queue), or cancelled with its task
            self._waiting.pop(future, None)
            if not future.cancelled():
                self.pass_on(future.result())
            return
        del self._waiting[future]
        future.cancel()

    def pass_on(self, hops: int) -> None:
        """The woken waiter could not use the wake: give it to the next, while hops remain
        and announced work is untaken."""
        if hops > 0 and self._untaken > 0:
            self._wake(1, hops - 1)

    def taken(self) -> None:
        """A job was claimed (woken or not, by a poll or with a result)."""
        self._untaken = max(0, self._untaken - 1)

    def notify(self, count: int = 1) -> None:
        """`count` jobs may have become claimable: wake up to `count` waiters; each may pass
        its wake on once around everyone waiting now."""
        self._untaken += count
        self._wake(count, self.waiting)

    def _wake(self, count: int, budget: int) -> None:
        while count > 0 and self._waiting:
            future, _ = self._waiting.popitem(last=False)
            if future.done():  # cancelled with its request, which has not left yet
                continue
            future.set_result(budget)
            count -= 1

    def notify_node(self, node_id: str) -> None:
        """The waiters of one node look once (it takes work again after a drain)."""
        for future in [f for f, waits_for in self._waiting.items() if waits_for == node_id]:
            del self._waiting[future]
            if not future.done():
                future.set_result(0)

    def notify_all(self) -> None:
        """Everyone waiting looks once (work may have become claimable for any of them)."""
        self._wake(self.waiting, 0)

    async def wait(self, future: asyncio.Future[int], timeout: float) -> int | None:
        """The hops of the wake `future` received, or None when `timeout` passed first (it
        has left the queue then). Cancelled, it leaves, handing on a wake it had."""
        timer = asyncio.get_running_loop().call_later(timeout, self._time_out, future)
        try:
            hops = await future
        except BaseException:
            self.leave(future)
            raise
        finally:
            timer.cancel()
        return None if hops == _TIMED_OUT else hops

    def _time_out(self, future: asyncio.Future[int]) -> None:
        if not future.done():
            del self._waiting[future]
            future.set_result(_TIMED_OUT)

    async def long_poll(
        self,
        claim: Callable[[], Awaitable[T | None]],
        wait_s: float,
        *,
        node_id: str,
        recheck_s: float | None,
        client_gone: Callable[[], Awaitable[bool]],
        stopping: Callable[[], bool],
        first: Callable[[], Awaitable[T | None]] | None = None,
    ) -> T | None:
        """`first()` (by default `claim()`) now; if it finds nothing, wait up to `wait_s` for
        a wake and `claim()` again. `first` always runs, even on a stopping master: a result
        whose reply waits for the next job is stored by it (and its claim shares the result's
        transaction), with this request already enlisted, so a job created meanwhile wakes it.

        Without `recheck_s` a waiter looks again only when woken: its master hears of all
        work (on SQLite it is the only one). With it, also that often. A poll that ends
        unwoken does not look once more: the agent asks again at once, and that claims."""
        look = first or claim
        if wait_s <= 0:  # a plain poll: never in the queue, so no wake can go to it in vain
            return await look()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        held: int | None = None  # hops of a wake this request holds and has not used yet
        while True:
            wake = self.enlist(node_id)
            try:
                found = await look()
            except BaseException:  # e.g. an unknown node: leave no dead waiter behind
                self.leave(wake)
                if held is not None:
                    self._wake(1, held)
                raise
            look = claim
            if found is not None:
                self.leave(wake)
                return found
            if held is not None:  # woken, yet nothing here for this node: next waiter's turn
                self.pass_on(held)
            remaining = deadline - loop.time()
            if remaining <= 0 or stopping():  # a stopping master hands out no more work
                self.leave(wake)
                return None
            timeout = remaining if recheck_s is None else min(remaining, recheck_s)
            held = await self.wait(wake, timeout)
            if held is None and timeout == remaining:
                return None
            if await client_gone():
                if held is not None:  # nobody would receive a job: hand the wake on unspent
                    self._wake(1, held)
                return None
            if stopping():  # woken by the stop (every waiter is): answer with no job
                return None
