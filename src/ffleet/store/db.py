"""Connections and transactions for the SQL store, on SQLite and PostgreSQL alike.

SQLAlchemy owns what it is best at: URLs and the connection pool. Statements run straight on
the DB-API connection, because SQLAlchemy's per-statement expression and compile-cache work
measured ~3x the cost of the statement itself on SQLite here (heartbeat: 444 us through Core vs
136 us raw), and the master's CPU per request is dominated by such statements. A statement is
named, not written, here: its text for this engine comes from the catalogue in queries.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool

from ffleet.redaction import redact_url
from ffleet.store import checkpoints, queries
from ffleet.store.availability import unavailable_cause
from ffleet.store.base import StoreUnavailable

Row = Mapping[str, Any]

POOL_SIZE = 10  # PostgreSQL connections kept open; the master runs this many calls at once
LOCK_TIMEOUT_MS = 5000


class Database:
    """One engine plus a way to run a transaction on a raw DB-API connection."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        self.is_sqlite = self.dialect == "sqlite"
        self.queries = queries.for_dialect(self.dialect)
        # SQLite: one connection for the process, used under a mutex (it is not thread-safe,
        # and SQLite has one writer anyway). PostgreSQL: pooled connections, row locks.
        self._mutex = threading.Lock() if self.is_sqlite else None
        self._sqlite: Any = self.engine.raw_connection() if self.is_sqlite else None
        self._columns: dict[str, tuple[str, ...]] = {}
        self._checkpointer: checkpoints.Checkpointer | None = None
        path = self.engine.url.database
        if self._mutex is not None and path and path != ":memory:":
            # A file: its WAL checkpoints run on a thread of their own, never in a commit.
            serving: Any = cast(Any, self._sqlite).driver_connection
            serving.execute("PRAGMA wal_autocheckpoint=0")
            serving.execute(f"PRAGMA journal_size_limit={checkpoints.LIMIT_BYTES}")
            self._checkpointer = checkpoints.Checkpointer(path, self._mutex)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        if self._sqlite is not None:
            self._sqlite.close()
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """Commit on success, roll back on any exception. A database that cannot serve now
        (see availability.py) raises StoreUnavailable naming the cause."""
        try:
            with self._transaction() as tx:
                yield tx
        except Exception as exc:
            cause = unavailable_cause(exc)
            if cause is None:
                raise
            raise StoreUnavailable(cause) from exc

    @contextmanager
    def _transaction(self) -> Iterator[Tx]:
        if self._mutex is not None:
            with self._mutex:
                raw = self._sqlite.driver_connection
                raw.execute("BEGIN IMMEDIATE")
                try:
                    yield Tx(raw.cursor(), self.queries, self._columns)
                    raw.execute("COMMIT")
                except BaseException:
                    # Also after a failed COMMIT (disk full, I/O error): an open transaction
                    # on the shared connection would refuse every later BEGIN.
                    if raw.in_transaction:
                        raw.execute("ROLLBACK")
                    raise
            return
        pooled = self.engine.raw_connection()
        try:
            raw = pooled.driver_connection
            assert raw is not None
            try:
                yield Tx(raw.cursor(), self.queries, None)
            except BaseException as exc:
                if unavailable_cause(exc) is not None:
                    pooled.invalidate()  # a lost connection must not go back to the pool
                else:
                    raw.rollback()
                raise
            raw.commit()
        finally:
            pooled.close()


class Tx:
    """Named statements inside one transaction; rows come back as dicts keyed by column.

    On SQLite a row is built from the plain tuple with the statement's column names, learnt
    once per statement: `sqlite3.Row` finds a column by comparing names one by one, and the
    hot paths read most of a job's 29 columns, several times each.
    """

    def __init__(
        self, cursor: Any, statements: Mapping[str, str], columns: dict[str, tuple[str, ...]] | None
    ) -> None:
        self._cursor = cursor
        self._statements = statements
        self._columns = columns  # SQLite: statement name -> its result's column names
        if columns is None:
            from psycopg.rows import dict_row

            cursor.row_factory = dict_row

    def run(self, name: str, params: Mapping[str, Any] | None = None) -> int:
        """Execute; returns the number of rows changed."""
        self._cursor.execute(self._statements[name], params or {})
        return int(self._cursor.rowcount)

    def many(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        self._cursor.executemany(self._statements[name], rows)

    def one(self, name: str, params: Mapping[str, Any] | None = None) -> Row | None:
        cursor = self._cursor
        cursor.execute(self._statements[name], params or {})
        row = cursor.fetchone()
        if row is None:
            return None
        cursor.fetchall()  # finish the statement (RETURNING on SQLite)
        if self._columns is None:
            return cast(Row, row)
        return dict(zip(self._names(name), row, strict=True))

    def all(self, name: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        cursor = self._cursor
        cursor.execute(self._statements[name], params or {})
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


def libpq_url(url: str) -> str:
    """The PostgreSQL URL as libpq (psycopg's own connect) takes it, without SQLAlchemy's
    driver suffix."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    """`memory`, `sqlite:///PATH` or `postgresql://...` (psycopg 3)."""
    if url == "memory" or url.startswith("sqlite:"):
        engine = create_engine(
            "sqlite://" if url == "memory" else url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False, "timeout": 30},
        )

        @event.listens_for(engine, "connect")
        def _sqlite_setup(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # transactions are begun explicitly
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
                dbapi_conn.execute(f"PRAGMA {pragma}")

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return create_engine(
                "postgresql+psycopg://" + url[len(prefix) :],
                pool_size=POOL_SIZE,
                max_overflow=40,
                pool_pre_ping=True,
                # A row lock held by a slow transaction fails a waiting statement after this
                # instead of stalling it (and the heartbeats queued behind it) indefinitely.
                connect_args={"options": f"-c lock_timeout={LOCK_TIMEOUT_MS}"},
            )
    raise ValueError(
        f"unsupported store URL {redact_url(url)!r}: use memory, sqlite:///PATH or "
        "postgresql://USER@HOST/DB"
    )
