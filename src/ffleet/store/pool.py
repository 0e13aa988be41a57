"""PostgreSQL connections shared by the master's store threads.

A connection is taken for one transaction and given back after its commit or rollback, so a
returned connection is idle and goes back as it is: no ping on the way out and no reset on the
way in (SQLAlchemy's pool spent two more round trips per transaction on those). One the server
hung up on is seen without a round trip (its socket is readable), one idle for a while is
checked before use, since the server may have restarted meanwhile; a connection that
failed for want of the server is dropped with every other one opened before it, idle or in use
at the time (they share its fate), so later transactions connect afresh.
"""

from __future__ import annotations

import select
import threading
import time
from typing import Any

import psycopg

from ffleet.store.availability import PoolTimeout

CHECK_AFTER_IDLE_S = 10.0

_Idle = tuple[psycopg.Connection[Any], float, int]  # a connection, idle since, its generation


class Pool:
    """Up to `size` idle connections kept, `size + overflow` in use at most."""

    def __init__(
        self,
        conninfo: str,
        *,
        size: int,
        overflow: int,
        timeout_s: float = 30.0,
        options: str = "",
    ) -> None:
        self._conninfo = conninfo
        self._size = size
        self._timeout_s = timeout_s
        self._options = options
        self._free = threading.BoundedSemaphore(size + overflow)
        self._lock = threading.Lock()
        # A connection's generation is the pool's when it was opened; a lost one ends it.
        self._generation = 0
        self._idle: list[_Idle] = []
        self._in_use: dict[int, int] = {}  # id(connection) -> its generation

    def take(self) -> psycopg.Connection[Any]:
        if not self._free.acquire(timeout=self._timeout_s):
            raise PoolTimeout(f"no connection free within {self._timeout_s:g} s")
        try:
            while True:
                with self._lock:
                    found = self._idle.pop() if self._idle else None
                    generation = self._generation
                if found is None:
                    conn = psycopg.connect(self._conninfo, options=self._options)
                    break
                conn, since, generation = found
                fresh = time.monotonic() - since < CHECK_AFTER_IDLE_S
                if not conn.closed and not _hung_up(conn) and (fresh or _alive(conn)):
                    break
                conn.close()
        except BaseException:
            self._free.release()
            raise
        with self._lock:
            self._in_use[id(conn)] = generation
        return conn

    def give_back(self, conn: psycopg.Connection[Any], *, lost: bool = False) -> None:
        """Return `conn`, idle; `lost`: it failed because the server went away."""
        dropped: list[_Idle] = []
        try:
            with self._lock:
                generation = self._in_use.pop(id(conn))
                if lost:
                    self._generation += 1
                    dropped, self._idle = self._idle, []
                elif (
                    generation == self._generation
                    and not conn.closed
                    and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                    and len(self._idle) < self._size
                ):
                    self._idle.append((conn, time.monotonic(), generation))
                    return
            conn.close()
            for idle, _since, _generation in dropped:
                idle.close()
        finally:
            self._free.release()

    def close(self) -> None:
        with self._lock:
            dropped, self._idle = self._idle, []
        for conn, _since, _generation in dropped:
            conn.close()


def _hung_up(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server spoke to an idle connection: a backend it terminated (a shutdown, an
    administrator) says so, or just closes the socket. One poll of the socket, no round trip."""
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    return bool(readable)


def _alive(conn: psycopg.Connection[Any]) -> bool:
    try:
        conn.execute("SELECT 1")
        conn.rollback()
    except psycopg.Error:
        return False
    return True
