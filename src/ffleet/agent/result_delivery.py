"""Bringing every result home: through the spool, asking for the next job on the way, and
sending again whatever still waits.

The spool (see spool) keeps a result safe; this decides when to use it: a finished job's
result asks for the slot's next job in the same round trip, a result left waiting is resent
by the heartbeat once the master answers again, and a stop sends the spool once more. It also
watches the spool's health: a node that could not keep a result claims nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from ffleet.agent.client import MasterClient
from ffleet.agent.spool import Spool
from ffleet.models import Job, ResultSubmission

log = logging.getLogger(__name__)


class ResultDelivery:
    """The results of this agent's jobs on their way to `client`, spooled under `work_dir`."""

    def __init__(self, work_dir: Path, client: MasterClient) -> None:
        self.spool = Spool(work_dir)
        self._client = client
        self._waiting = threading.Event()  # a result was left in the spool (or in memory)
        self._problem: str | None = None  # why the spool cannot be written now
        self._lock = threading.Lock()

    def check_spool(self) -> str | None:
        """Probe the spool; log when it starts or stops failing. A node that could not keep a
        result claims nothing, and says why in its heartbeats."""
        problem = self.spool.probe()
        with self._lock:
            before, self._problem = self._problem, problem
        if problem is not None and before is None:
            log.error("%s: claiming no work until it can", problem)
        elif problem is None and before is not None:
            log.warning("the result spool can be written again: taking work")
        return problem

    def send(
        self,
        result: ResultSubmission,
        claim_wait: float | None,
        kept: Callable[[], None] | None = None,
    ) -> Job | None:
        """Spool and send `result`; returns the next job its reply carried.

        With `claim_wait` the reply brings the next job, the master waiting for one up to that
        long. Spooling proves the spool works, so no probe comes before it (see Spool.submit);
        `kept` is called once the result is spooled.
        """
        delivery = self.spool.submit(
            self._client,
            result,
            claim_next=claim_wait is not None,
            claim_wait=claim_wait or 0.0,
            kept=kept,
        )
        if delivery.outcome in ("spooled", "held"):
            self._waiting.set()
        return delivery.reply.job if delivery.reply is not None else None

    def resend_left(self) -> None:
        """Resend what an earlier send left waiting (a heartbeat found the master answering)."""
        if self._waiting.is_set():
            self.spool.resend(self._client)
            if not self.spool.waiting():
                self._waiting.clear()

    def resend_before_exit(self) -> None:
        """A result whose reply waits for the next job left the running jobs once spooled,
        maybe before the master had it, and that reply may not come before this process
        ends. Sent again without a claim it is answered at once (stored, or a duplicate):
        a reachable master has every result before the agent is gone."""
        if self.spool.waiting():
            self.spool.resend(self._client)
