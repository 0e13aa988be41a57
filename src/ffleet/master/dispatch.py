"""Wake long-polling agents the moment the queue changes.

One asyncio.Event per "generation": a waiter takes the current event *before* it tries to claim,
so a job submitted between its failed claim and its wait still wakes it. Every change wakes all
waiters; each re-tries its claim, and the store's atomic claim decides who gets the job.
"""

from __future__ import annotations

import asyncio


class Dispatcher:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def generation(self) -> asyncio.Event:
        """The event the next `notify` will set."""
        return self._event

    def notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()
