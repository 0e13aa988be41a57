"""WAL checkpoints of an SQLite store run on their own thread, never inside a commit."""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from ffleet.models import JobRequest
from ffleet.store.checkpoints import Checkpointer
from ffleet.store.sql import SqlStore

T0 = 1_800_000_000.0


def _wal_frames(path: Path) -> int:
    size = path.with_name(path.name + "-wal").stat().st_size
    return max(0, (size - 32) // (4096 + 24))


def _fill(store: SqlStore, batches: int) -> None:
    for _ in range(batches):
        store.create_jobs([JobRequest(scenario="360p-h264")] * 200, T0)


def test_commits_leave_the_checkpoint_to_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "ffleet.db"
    store = SqlStore(f"sqlite:///{path}")
    try:
        raw = store.db._sqlite
        assert raw is not None
        assert raw.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        _fill(store, 10)  # more than SQLite's own 1,000-page trigger
        # Pages reach the database file only through a checkpoint: the thread's.
        deadline = time.monotonic() + 10
        while path.stat().st_size < 256 * 1024:
            assert time.monotonic() < deadline, path.stat().st_size
            time.sleep(0.05)
    finally:
        store.close()


class CountingLock:
    def __init__(self) -> None:
        self.taken = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()
        self.taken += 1

    def __exit__(self, *_exc: object) -> None:
        self._lock.release()


@pytest.mark.parametrize(("limit", "restarts"), [(50, 1), (1_000_000, 0)])
def test_only_a_wal_past_its_limit_takes_the_write_lock(
    tmp_path: Path, limit: int, restarts: int
) -> None:
    path = tmp_path / "ffleet.db"
    store = SqlStore(f"sqlite:///{path}")
    lock = CountingLock()
    checkpointer = Checkpointer(str(path), lock, interval_s=3600, limit_frames=limit)
    try:
        _fill(store, 5)
        grown = _wal_frames(path)
        assert grown > 50
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            checkpointer.checkpoint(conn)
        assert lock.taken == restarts
        _fill(store, 1)  # written from the WAL's start again: the file does not grow
        assert _wal_frames(path) == grown
        assert store.list_jobs(None, 1, 0)[1] == 1_200
    finally:
        checkpointer.close()
        store.close()
