"""What the master knows of its store's availability, logged once per change.

A full disk or a stopped PostgreSQL fails every request until it passes; a log line (and a
traceback) per request buries the one fact an operator needs. Each change of condition is
logged once: the store became unavailable (and why), its cause changed, it is back.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("ffleet.master")

# What a 503 tells clients to wait before trying again: long enough not to hammer a database
# that is coming back, short against any node timeout.
RETRY_AFTER_S = 2
# The longest a client refused with it stays silent: agents spread their resend over 1-1.5x
# the Retry-After (agent/client.py), and the reaper's hold waits that out (reap_hold.py).
REFUSAL_PAUSE_S = 1.5 * RETRY_AFTER_S


class StoreHealth:
    def __init__(self) -> None:
        self.cause: str | None = None  # None while the store serves
        self._since = 0.0

    @property
    def available(self) -> bool:
        return self.cause is None

    def failed(self, cause: str) -> None:
        if cause == self.cause:
            return
        if self.cause is None:
            self._since = time.monotonic()
        self.cause = cause
        log.error("store unavailable: %s; requests get 503 until it is back", cause)

    def ok(self) -> None:
        if self.cause is None:
            return
        self.cause = None
        log.warning("store available again after %.1f s", time.monotonic() - self._since)
