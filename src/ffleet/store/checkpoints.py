"""WAL checkpoints of an SQLite file, on a thread of their own instead of inside a commit.

SQLite's automatic checkpoint runs in the commit that crosses 1,000 WAL pages: it copies the
pages into the database and fsyncs both files while the master's event loop waits (the store is
called inline), which stalled job dispatch by tens of milliseconds, up to 200 ms on a busy
disk. So the serving connection never checkpoints (`wal_autocheckpoint=0`) and this thread,
with its own connection, runs a PASSIVE checkpoint every `interval_s`: it neither takes nor
waits for the write lock, so commits go on meanwhile, and a pass with nothing new to copy costs
one read of the WAL index.

A PASSIVE checkpoint cannot rewind the WAL while commits keep arriving (SQLite writes from the
file's start again only once every frame is in the database), so under a sustained stream of
commits the WAL grows. Past `limit_frames`, more PASSIVE passes catch up with what the commits
left, then one RESTART checkpoint runs under the store's own write mutex: it copies the few
frames since the last pass and the next commit rewinds the file, a short wait once per that
many pages. (RESTART, not TRUNCATE: appending to a file that grows makes ext4 allocate blocks,
which can wait behind the journal commit of a checkpoint's fsync. `journal_size_limit`, set on
the serving connection, trims an outgrown file when it rewinds.)

Durability is the commit's (synchronous=NORMAL in WAL mode): a committed change survives the
master's crash, `kill -9` included, since the WAL is in the kernel's cache; a power loss may
lose the commits since the last checkpoint's fsync.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import AbstractContextManager, closing
from typing import Any

log = logging.getLogger(__name__)

INTERVAL_S = 0.5
LIMIT_FRAMES = 16_384  # 64 MiB of 4 KiB pages
LIMIT_BYTES = LIMIT_FRAMES * 4096
# Before the RESTART, PASSIVE passes (no lock) copy what a burst of commits left, until at most
# this many frames remain for the pass under the lock: it holds the event loop's store calls.
CATCH_UP_FRAMES = 256
CATCH_UP_PASSES = 8


class Checkpointer:
    """The background checkpoints of one SQLite file; `close()` stops them."""

    def __init__(
        self,
        path: str,
        write_lock: AbstractContextManager[Any],
        interval_s: float = INTERVAL_S,
        limit_frames: int = LIMIT_FRAMES,
    ) -> None:
        self._path = path
        self._write_lock = write_lock
        self._interval_s = interval_s
        self._limit_frames = limit_frames
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with closing(sqlite3.connect(self._path, timeout=30, isolation_level=None)) as conn:
            conn.execute("PRAGMA synchronous=NORMAL")
            while not self._stop.wait(self._interval_s):
                self.checkpoint(conn)

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        """One pass: PASSIVE; if the WAL outgrew its limit, more PASSIVE passes until few
        frames are left to copy, then RESTART under the write lock (it copies those few)."""
        try:
            _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames <= self._limit_frames:
                return
            for _ in range(CATCH_UP_PASSES):
                if frames - copied <= CATCH_UP_FRAMES:
                    break
                _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            with self._write_lock:
                conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        except sqlite3.Error as exc:
            if not self._failing:  # once per spell: the next commit reports it to the clients
                log.warning("WAL checkpoint of %s failed: %s", self._path, exc)
            self._failing = True
        else:
            self._failing = False
