"""How many job requests may wait at once: in all, and per node.

A long-poll holds a connection and a waiter; without a bound one client could hold them all
(or one node id could crowd out the rest). A request past a bound is answered 429 with
Retry-After at once, so an agent backs off instead of piling up. A result whose reply would
wait for the next job counts the same; past a bound it is answered at once instead (a result
is never refused for this: it is stored first).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from ffleet.master.http import ApiError


def _too_many(message: str) -> ApiError:
    return ApiError(429, message, {"Retry-After": "1"})


class LongPolls:
    def __init__(self, total: int, per_node: int) -> None:
        self.total = total
        self.per_node = per_node
        self._waiting: Counter[str] = Counter()
        self._count = 0

    def has_room(self, node_id: str) -> bool:
        """Whether `slot(node_id)` would be granted now."""
        return self._count < self.total and self._waiting[node_id] < self.per_node

    @contextmanager
    def slot(self, node_id: str) -> Iterator[None]:
        """Hold one waiting place for `node_id` while the request waits."""
        if self._count >= self.total:
            raise _too_many(f"{self.total} job requests are waiting already; retry later")
        if self._waiting[node_id] >= self.per_node:
            raise _too_many(f"node {node_id} has {self.per_node} job requests waiting already")
        self._waiting[node_id] += 1
        self._count += 1
        try:
            yield
        finally:
            self._count -= 1
            self._waiting[node_id] -= 1
            if not self._waiting[node_id]:
                del self._waiting[node_id]
