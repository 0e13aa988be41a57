"""One clock for every master: the database's.

Heartbeats, leases and backoffs written by one master are compared by another, so a master that
stamped them with its own clock would, 30 s fast, expire every other master's agents. Asking
the database for each stamp would cost a round trip per request, so the master measures how far
its clock is from the database's (half a round trip of error at most) and adds that offset to
its own time; it measures again now and then, as its clock drifts or is stepped.

SQLite serves one master on this machine: its clock is the master's own, nothing to measure.
What runs once (a master's start, a token command straight on the store) reads the database's
time once instead (`database_now`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ffleet.store import Store

log = logging.getLogger("ffleet.master")

SAMPLES = 5  # the offset comes from the fastest round trip of these: the least uncertain
REMEASURE_S = 30.0
# A clock this far (as a fraction of the node timeout) from the database's is warned about: the
# offset corrects it, but a clock that far off is likely to be stepped later.
SKEW_WARNING_FRACTION = 0.1


class DatabaseClock:
    """`now()` is the database's time, from this machine's clock and a measured offset."""

    def __init__(self, database_time: Callable[[], float] | None) -> None:
        self._database_time = database_time
        self.offset_s = 0.0

    def now(self) -> float:
        return time.time() + self.offset_s

    def measure(self) -> float:
        """Measure the offset again (blocking: a few round trips); returns it."""
        if self._database_time is None:
            return 0.0
        best: tuple[float, float] | None = None  # (round trip, offset)
        for _ in range(SAMPLES):
            sent = time.time()
            theirs = self._database_time()
            back = time.time()
            sample = (back - sent, theirs - (sent + back) / 2)
            if best is None or sample[0] < best[0]:
                best = sample
        assert best is not None
        self.offset_s = best[1]
        return self.offset_s

    def check(self, node_timeout_s: float) -> None:
        """Warn loudly when this machine's clock is far from the database's."""
        limit = node_timeout_s * SKEW_WARNING_FRACTION
        if abs(self.offset_s) > limit:
            log.warning(
                "THIS MACHINE'S CLOCK IS %.3f s %s THE DATABASE'S (more than %.3f s, a tenth of "
                "the node timeout): ffleet corrects for it, but fix the clock (NTP) before it is "
                "stepped under running work",
                abs(self.offset_s),
                "behind" if self.offset_s > 0 else "ahead of",
                limit,
            )
        else:
            log.info("clock offset to the database: %+.4f s", self.offset_s)


def database_now(store: Store) -> float:
    """The database's time, read once: the time a `DatabaseClock` on `store` would give."""
    return time.time() if store.inline else store.database_time()
