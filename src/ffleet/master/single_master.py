"""An SQLite file serves one master: a second one on the same file is refused at start.

Two masters on one SQLite file would each run a reaper, each wake only its own agents, and
fight over SQLite's single write lock; nothing in SQLite itself stops them. The master holds an
exclusive `flock` on the database file for as long as it runs (the kernel drops it when the
process dies, even by `kill -9`). SQLite's own locks are `fcntl` locks, which do not interact
with `flock`, so readers such as the sqlite3 shell are unaffected.
"""

from __future__ import annotations

import fcntl
import os
from typing import IO


def hold_sqlite_file(url: str) -> IO[bytes] | None:
    """Lock the file of a `sqlite:///PATH` URL for this process; None for other stores.

    ValueError, with the reason, when another master holds it."""
    if not url.startswith("sqlite:") or ":///" not in url:
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    handle = open(os.path.abspath(path), "ab")  # noqa: SIM115 - held until the process ends
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ValueError(
            f"another ffleet master already serves {path}: an SQLite file has one master; "
            "for several masters use one PostgreSQL database (--store postgresql://...)"
        ) from None
    return handle
