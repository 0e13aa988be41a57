"""Which database errors mean "the store is unavailable now" rather than "this is a bug".

A full disk, a read-only database, a lost connection or a lock that timed out will pass without
anyone changing ffleet: the master answers 503 with the cause and a Retry-After, and its
reaper counts the time as time it could not observe the fleet. Every other error (a bad
statement, a broken invariant) stays an internal error with its traceback.
"""

from __future__ import annotations

import sqlite3
import sys

# SQLite result codes (sqlite_errorname) of conditions outside ffleet's control.
_SQLITE_CAUSES = {
    "SQLITE_FULL": "disk full",
    "SQLITE_READONLY": "database is read-only",
    "SQLITE_BUSY": "database is locked (lock timeout)",
    "SQLITE_LOCKED": "database is locked (lock timeout)",
    "SQLITE_IOERR": "disk I/O error",
    "SQLITE_CANTOPEN": "database file cannot be opened",
    "SQLITE_PROTOCOL": "database is locked (lock protocol)",
}


def unavailable_cause(error: BaseException) -> str | None:
    """A short cause when `error` means the store cannot serve now, else None."""
    if isinstance(error, sqlite3.OperationalError | sqlite3.DatabaseError):
        name = getattr(error, "sqlite_errorname", "") or ""
        primary = "_".join(name.split("_")[:2])  # SQLITE_IOERR_WRITE is an SQLITE_IOERR
        cause = _SQLITE_CAUSES.get(primary)
        return f"{cause}: {error}" if cause else None
    psycopg = sys.modules.get("psycopg")  # not loaded: no PostgreSQL store, no such error
    if psycopg is None:
        return None
    psycopg_pool = sys.modules.get("psycopg_pool")
    if psycopg_pool is not None and isinstance(error, psycopg_pool.PoolTimeout):
        return "no database connection free (pool timeout)"  # before its OperationalError
    if isinstance(error, psycopg.errors.ReadOnlySqlTransaction):
        return f"database is read-only: {_first_line(error)}"
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        return f"database unavailable: {_first_line(error)}"
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
