"""When the reaper may end attempts: not while the master could not see its fleet.

A node is declared lost when the master has not heard from it for a node timeout. That is
only fair if the master was listening: while it is stopped (SIGSTOP, a VM pause, a long
garbage collection), blocked on its store, or its wall clock jumps forward, heartbeats go
unheard or look older than they are, and the first reaper pass afterwards would end every
healthy attempt. So any such gap — measured by the reaper itself on the monotonic clock, told
by a failed store call, or seen as the wall clock outrunning the monotonic one — holds reaping
for one node timeout from its end, as at start: every live agent beats within that time (at
most every half node timeout), and results finished meanwhile are still accepted.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ReapHold:
    """`may_reap()` is False from the start for `hold_s`, and again for `hold_s` after any gap
    longer than `hold_s / 4` (a stall under it cannot make a node that beats every half
    timeout look silent)."""

    def __init__(
        self,
        hold_s: float,
        interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        refusal_pause_s: float = 0.0,
    ) -> None:
        self.hold_s = hold_s
        # How long a client refused for the store's failure may stay silent by request (its
        # Retry-After, spread): `blind` holds that much longer.
        self.refusal_pause_s = refusal_pause_s
        self.interval_s = interval_s
        self.tolerance_s = hold_s / 4
        self._clock = clock
        self._wall = wall
        self._last = (clock(), wall())
        self._until = self._last[0] + hold_s

    def may_reap(self) -> bool:
        return self._clock() >= self._until

    def blind(self) -> None:
        """The master could not see the fleet just now (its store failed): hold from now, for
        a node timeout after the pause its refused heartbeats were told to wait."""
        self._until = max(self._until, self._clock() + self.refusal_pause_s + self.hold_s)

    def worked(self) -> None:
        """The reaper's pass just ended: its length was work, not absence (the master served
        requests, heartbeats among them, between the pass's batches), so the next `tick`
        measures only the wait that follows."""
        self._last = (self._clock(), self._wall())

    def tick(self) -> str | None:
        """Called at each wake-up of the reaper, meant `interval_s` after the last one; when
        the master was away longer than the tolerance, hold, and say what happened."""
        mono, wall = self._clock(), self._wall()
        last_mono, last_wall = self._last
        self._last = (mono, wall)
        late = mono - last_mono - self.interval_s
        stepped = (wall - last_wall) - (mono - last_mono)
        if max(late, stepped) <= self.tolerance_s:
            return None
        self._until = max(self._until, mono + self.hold_s)
        if stepped > late:
            return f"the wall clock jumped {stepped:.1f} s forward"
        return f"the master did not run for {late + self.interval_s:.1f} s"
