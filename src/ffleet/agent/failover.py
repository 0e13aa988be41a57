"""Which of several masters to talk to: stay with one while it answers, move on when it fails.

An agent (or the CLI) given `--master URL1,URL2,...` sends everything to one master, so that
its long-poll and its heartbeats meet one dispatcher, and moves to the next when that one fails
(no connection, or a 5xx). A master that failed is tried again only after a jittered backoff
(doubling per consecutive failure), so a fleet whose master died does not return to it in step;
when every master is backing off, the one due soonest is tried, so a request never waits here.
All masters share one database, so any of them accepts any request: results spooled while one
was down go to whichever answers.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 30.0


def master_urls(text: str) -> list[str]:
    """`URL1,URL2,...` as a list; `host:port` alone means plain HTTP."""
    urls = [part.strip().rstrip("/") for part in text.split(",") if part.strip()]
    if not urls:
        raise ValueError(f"no master URL in {text!r}")
    return [url if "://" in url else f"http://{url}" for url in urls]


@dataclass
class _Health:
    failures: int = 0
    retry_at: float = 0.0


class MasterChoice:
    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self._health = [_Health() for _ in urls]
        self.current = 0

    def pick(self) -> int:
        """The index of the master to send the next request to."""
        now = time.monotonic()
        if self._health[self.current].retry_at <= now:
            return self.current
        ready = [i for i, h in enumerate(self._health) if h.retry_at <= now]
        chosen = (
            ready[0]
            if ready
            else min(range(len(self.urls)), key=lambda i: self._health[i].retry_at)
        )
        self.current = chosen
        return chosen

    def succeeded(self, index: int) -> None:
        self._health[index] = _Health()
        self.current = index

    def failed(self, index: int) -> bool:
        """Note a failure of master `index`; True when another master is there to try."""
        if len(self.urls) == 1:
            return False
        health = self._health[index]
        health.failures += 1
        backoff = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (health.failures - 1))
        health.retry_at = time.monotonic() + backoff * random.uniform(0.5, 1.0)
        if self.current == index:
            self.current = (index + 1) % len(self.urls)
        return True
