"""Connections and transactions for the SQL store, on SQLite and PostgreSQL alike.

Statements run straight on the DB-API connection: one sqlite3 connection for the process, or
psycopg connections from a psycopg_pool pool. SQLAlchemy is not on this path: its
per-statement work measured ~3x the cost of the statement itself on SQLite here (heartbeat:
444 us through Core vs 136 us raw), its pool added a ping and a rollback round trip to every
PostgreSQL transaction, and importing it cost the master ~28 MiB of its resident memory. Tests
and tools that inspect a database get an SQLAlchemy engine on it from `Database.engine`. A
statement is named, not written, here: its text for this engine comes from the catalogue in
queries.py.

The pool hands a connection back as it is (no reset callback: no round trip per transaction);
one the server hung up on is seen without a round trip, its socket being readable; a
transaction that lost the server drains the pool, so every connection opened before it, idle or
in use, is closed and later transactions connect afresh.
"""

from __future__ import annotations

import functools
import operator
import re
import select
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from ffleet.redaction import redact_url
from ffleet.store import checkpoints, queries
from ffleet.store.availability import unavailable_cause
from ffleet.store.base import StoreUnavailable
from ffleet.store.group_commit import GroupCommit

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool
    from sqlalchemy import Engine

Row = Mapping[str, Any]
# A statement as the driver runs it, with what turns its named values into the driver's.
Statement = tuple[str, Callable[[Mapping[str, Any]], Any]]

POOL_SIZE = 10  # PostgreSQL connections kept open; the master runs this many calls at once
POOL_OVERFLOW = 40
# A connection wait longer than this is a 503 at once rather than a stalled request: with the
# master's calls fewer than POOL_SIZE, a wait is a server out of reach. A connection attempt
# given up after as long lets the next transaction try afresh once the server is back.
POOL_TIMEOUT_S = 1.0
# A row lock held by a slow transaction fails a waiting statement after this instead of
# stalling it (and the heartbeats queued behind it) indefinitely.
LOCK_TIMEOUT_MS = 5000
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)
SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000")


class Database:
    """A way to run a transaction on a raw DB-API connection of one database."""

    def __init__(self, url: str) -> None:
        self.url = url
        path = sqlite_path(url)
        self.is_sqlite = path is not None
        self.dialect = "sqlite" if self.is_sqlite else "postgresql"
        named = queries.for_dialect(self.dialect)
        self._statements = positional(named) if self.is_sqlite else as_named(named)
        # SQLite's statements that write and return rows, finished by `Tx.one` once it has its
        # row: until then `total_changes` (group_commit.py) does not count their changes. Any
        # other statement a cursor leaves unfinished is reset by its next one or by its close.
        self._returning = frozenset(
            name for name, sql in named.items() if self.is_sqlite and _RETURNING.search(sql)
        )
        # SQLite: statement name -> its result's column names (see Tx)
        self._columns: dict[str, tuple[str, ...]] | None = {} if self.is_sqlite else None
        self._checkpointer: checkpoints.Checkpointer | None = None
        # SQLite: one connection for the process, used under a mutex (it is not thread-safe,
        # and SQLite has one writer anyway), its transactions grouped while a master serves
        # (group_commit.py). PostgreSQL: pooled connections, row locks.
        self._sqlite: sqlite3.Connection | None = None
        self.group_commit: GroupCommit | None = None
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        if path is None:
            from psycopg_pool import ConnectionPool  # psycopg: loaded by PostgreSQL stores only

            self._pool = ConnectionPool(
                libpq_url(url),
                kwargs={"options": f"-c lock_timeout={LOCK_TIMEOUT_MS}"},
                min_size=POOL_SIZE,
                max_size=POOL_SIZE + POOL_OVERFLOW,
                timeout=POOL_TIMEOUT_S,
                reconnect_timeout=POOL_TIMEOUT_S,
                open=False,
            )
            self._pool.open()
            return
        mutex = threading.Lock()
        self._sqlite = sqlite3.connect(
            path, timeout=30, isolation_level=None, check_same_thread=False
        )
        for pragma in SQLITE_PRAGMAS:
            self._sqlite.execute(f"PRAGMA {pragma}")
        self.group_commit = GroupCommit(self._sqlite, mutex)
        if path != ":memory:":
            # A file: its WAL checkpoints run on a thread of their own, never in a commit.
            self._sqlite.execute("PRAGMA wal_autocheckpoint=0")
            self._sqlite.execute(f"PRAGMA journal_size_limit={checkpoints.LIMIT_BYTES}")
            self._checkpointer = checkpoints.Checkpointer(path, self.group_commit.settled)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        if self.group_commit is not None:
            self.group_commit.unserve()
        if "engine" in self.__dict__:
            self.engine.dispose()
        if self._sqlite is not None:
            self._sqlite.close()
        if self._pool is not None:
            self._pool.close()

    @functools.cached_property
    def engine(self) -> Engine:
        """An SQLAlchemy engine on this database, for tests and tools that inspect it (on
        SQLite, over the store's own connection: an in-memory database has no other)."""
        from sqlalchemy import create_engine
        from sqlalchemy.pool import StaticPool

        if self._sqlite is not None:
            shared = self._sqlite
            return create_engine("sqlite://", creator=lambda: shared, poolclass=StaticPool)
        return create_engine("postgresql+psycopg://" + libpq_url(self.url).split("://", 1)[1])

    def transaction(self, alone: bool = False) -> Tx:
        """Commit on success, roll back on any exception. A database that cannot serve now
        (see availability.py) raises StoreUnavailable naming the cause. `alone`: one that may
        change many rows, never grouped with others (group_commit.py)."""
        return Tx(self, alone)

    def _finish(self, conn: psycopg.Connection[Any], failure: BaseException | None) -> None:
        """Commit a pooled connection's transaction, or roll it back after `failure` or a
        failed COMMIT, and hand the connection back."""
        assert self._pool is not None
        try:
            if failure is None:
                try:
                    conn.commit()
                except BaseException as exc:
                    self._undo(conn, exc)
                    raise
            else:
                self._undo(conn, failure)
        finally:
            self._pool.putconn(conn)

    def _undo(self, conn: psycopg.Connection[Any], failure: BaseException) -> None:
        assert self._pool is not None
        if unavailable_cause(failure) is not None or conn.closed:
            self._pool.drain()  # the others share this one's fate
        else:
            conn.rollback()

    def _connection(self) -> psycopg.Connection[Any]:
        """A pooled connection the server has not hung up on. An idle one the server spoke to
        was terminated (a shutdown, an administrator) or closed: one poll of its socket, no
        round trip. One found drains the pool, since the others most likely share its fate
        (a restart), and the wait starts over for a fresh one. Not the pool's `check`
        callback: a failed check costs a second's back-off out of the same wait."""
        assert self._pool is not None
        while True:
            conn = self._pool.getconn()
            if not select.select([conn.fileno()], [], [], 0)[0]:
                return conn
            self._pool.drain()
            self._pool.putconn(conn)  # opened before the drain: closed, not kept


class Tx:
    """One transaction, its own context manager (one object a store call, no generator
    frames): named statements inside it; rows come back as dicts keyed by column.

    On SQLite a row is built from the plain tuple with the statement's column names, learnt
    once per statement: `sqlite3.Row` finds a column by comparing names one by one, and the
    hot paths read most of a job's 29 columns, several times each.
    """

    __slots__ = ("_alone", "_columns", "_conn", "_cursor", "_db", "_statements")

    def __init__(self, db: Database, alone: bool) -> None:
        self._db = db
        self._alone = alone
        self._statements = db._statements
        self._columns = db._columns
        self._cursor: Any = None
        self._conn: psycopg.Connection[Any] | None = None

    def __enter__(self) -> Tx:
        db = self._db
        try:
            if db.group_commit is not None:
                self._cursor = db.group_commit.enter(self._alone)
                return self
            from psycopg.rows import dict_row

            conn = self._conn = db._connection()
            try:
                self._cursor = conn.cursor(row_factory=dict_row)
            except BaseException as exc:
                db._finish(conn, exc)
                raise
            return self
        except Exception as exc:
            _raise_unavailable(exc)
            raise

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        db = self._db
        try:
            if db.group_commit is not None:
                db.group_commit.exit(self._cursor, exc)
            else:
                assert self._conn is not None
                db._finish(self._conn, exc)
        except Exception as error:
            _raise_unavailable(error)
            raise
        if isinstance(exc, Exception):
            _raise_unavailable(exc)

    def run(self, name: str, params: Mapping[str, Any] | None = None) -> int:
        """Execute; returns the number of rows changed."""
        statement, bind = self._statements[name]
        self._cursor.execute(statement, bind(params or _NONE))
        return int(self._cursor.rowcount)

    def many(self, name: str, rows: Iterable[Mapping[str, Any]]) -> None:
        statement, bind = self._statements[name]
        self._cursor.executemany(statement, map(bind, rows))

    def one(self, name: str, params: Mapping[str, Any] | None = None) -> Row | None:
        cursor = self._cursor
        statement, bind = self._statements[name]
        cursor.execute(statement, bind(params or _NONE))
        row = cursor.fetchone()
        if row is None:
            return None
        if name in self._db._returning:
            cursor.fetchall()  # finish it: see Database._returning
        if self._columns is None:
            return cast(Row, row)
        return dict(zip(self._names(name), row, strict=True))

    def all(self, name: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        cursor = self._cursor
        statement, bind = self._statements[name]
        cursor.execute(statement, bind(params or _NONE))
        rows = cursor.fetchall()
        if self._columns is None or not rows:
            return cast(list[Row], rows)
        names = self._names(name)
        return [dict(zip(names, row, strict=True)) for row in rows]

    def scalar(self, name: str, params: Mapping[str, Any] | None = None) -> Any:
        row = self.one(name, params)
        return None if row is None else next(iter(row.values()))

    def ddl(self, statement: str) -> None:
        """Run one literal DDL statement (a migration step; it takes no parameters)."""
        self._cursor.execute(statement)

    def _names(self, name: str) -> tuple[str, ...]:
        assert self._columns is not None
        names = self._columns.get(name)
        if names is None:
            names = self._columns[name] = tuple(column[0] for column in self._cursor.description)
        return names


_NONE: Mapping[str, Any] = {}


def _raise_unavailable(error: Exception) -> None:
    """StoreUnavailable, naming the cause, for an error that means the database cannot serve
    now (availability.py); nothing for any other."""
    cause = unavailable_cause(error)
    if cause is not None:
        raise StoreUnavailable(cause) from error


def _null(value: None) -> None:
    return value


# sqlite3 binds a value of a type it does not take as it is (None, bool) only after looking up
# an adapter, then `__adapt__` and `__conform__` methods: ~0.4 us a value, and a job's insert
# alone binds a dozen NULLs. Adapters registered for both are found at the first look, and
# bind what sqlite3 bound without them (NULL; 1 and 0).
sqlite3.register_adapter(type(None), _null)
sqlite3.register_adapter(bool, int)


def positional(statements: Mapping[str, str]) -> dict[str, Statement]:
    """SQLite's statements with numbered parameters (`?1`, one number per name), each with the
    `operator.itemgetter` that takes their values from the caller's mapping as a tuple, built
    once here: sqlite3 binds a named parameter by making a string of its name and looking that
    up in the mapping, per parameter and execution (34 for each job a submission inserts)."""
    return {name: _numbered(sql) for name, sql in statements.items()}


def _numbered(sql: str) -> Statement:
    names: list[str] = []

    def number(name: str) -> str:
        if name not in names:
            names.append(name)
        return f"?{names.index(name) + 1}"

    text = queries.substitute(sql, number)
    if not names:
        return text, _no_values
    if len(names) == 1:
        return text, functools.partial(_one_value, names[0])
    return text, operator.itemgetter(*names)


def _no_values(params: Mapping[str, Any]) -> tuple[()]:
    return ()


def _one_value(name: str, params: Mapping[str, Any]) -> tuple[Any]:
    return (params[name],)


def as_named(statements: Mapping[str, str]) -> dict[str, Statement]:
    """PostgreSQL's statements as they are: psycopg takes the mapping itself."""
    return {name: (sql, _as_given) for name, sql in statements.items()}


def _as_given(params: Mapping[str, Any]) -> Mapping[str, Any]:
    return params


def libpq_url(url: str) -> str:
    """The PostgreSQL URL as libpq (psycopg's own connect) takes it, without SQLAlchemy's
    driver suffix."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def sqlite_path(url: str) -> str | None:
    """The file of a `sqlite:///PATH` store URL, `:memory:` for `memory`, None for a
    `postgresql://...` one (psycopg 3); ValueError for any other."""
    if url == "memory":
        return ":memory:"
    if url.startswith(("postgresql+psycopg://", "postgresql://", "postgres://")):
        return None
    if not url.startswith("sqlite:"):
        raise ValueError(
            f"unsupported store URL {redact_url(url)!r}: use memory, sqlite:///PATH or "
            "postgresql://USER@HOST/DB"
        )
    path = url.removeprefix("sqlite:").removeprefix("//").split("?", 1)[0]
    path = path[1:] if path.startswith("/") else path
    return path or ":memory:"
