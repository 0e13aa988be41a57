"""Redoable store methods in a group commit: no savepoint of their own; a failure before any
write leaves the group as it was, one after a write undoes itself and the unguarded calls
since the group's mark, which run again and get their own results."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from ffleet.models import Heartbeat, NodeRegistration
from ffleet.store import NotFound, StoreUnavailable
from ffleet.store.group_commit import redoable
from ffleet.store.sql import SqlStore
from tests.unit.group_commit_support import (
    JOB,
    T0,
    durable,
    grouping,
    insert_one_at_a_time,
    statements,
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ffleet.db"


@pytest.fixture
def store(path: Path) -> Iterator[SqlStore]:
    opened = SqlStore(f"sqlite:///{path}")
    yield opened
    opened.close()


def served(store: SqlStore, *calls: Callable[[], Coroutine[Any, Any, Any]]) -> list[Any]:
    """The calls, started in one loop turn on a served store; their outcomes."""
    group_commit = grouping(store)

    async def scenario() -> list[Any]:
        group_commit.serve(asyncio.get_running_loop())
        outcomes = await asyncio.gather(*(call() for call in calls), return_exceptions=True)
        group_commit.unserve()
        return list(outcomes)

    return asyncio.run(scenario())


class Runs:
    """Redoable methods that set a job's priority, counting how often each ran."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.count: Counter[str] = Counter()

    def setter(self, job_id: str, priority: int, fail: bool = False) -> Callable[[], Any]:
        @redoable
        def set_priority() -> int:
            self.count[job_id] += 1
            with self.store.db.transaction() as tx:
                tx.ddl(f"UPDATE jobs SET priority = {priority} WHERE id = '{job_id}'")
                if fail:
                    raise ValueError("refused after a write")
            return priority

        return lambda: grouping(self.store).call(set_priority)


class Failing:
    """The store's connection, with `statements` failing as on an I/O error: each once, or
    all of them until `failing` is emptied."""

    def __init__(self, raw: sqlite3.Connection, statements: set[str], once: bool) -> None:
        self._raw = raw
        self.failing = set(statements)
        self._once = once

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql in self.failing:
            if self._once:
                self.failing.discard(sql)
            error = sqlite3.OperationalError("disk I/O error")
            error.sqlite_errorname = "SQLITE_IOERR"
            raise error
        return self._raw.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def priorities(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as conn:
        return dict(conn.execute("SELECT id, priority FROM jobs").fetchall())


def test_redoable_calls_share_one_savepoint_per_group(store: SqlStore) -> None:
    jobs = store.create_jobs([JOB] * 4, T0)
    runs = Runs(store)
    seen = statements(store, whole=True)
    outcomes = served(store, *(runs.setter(job.id, 7) for job in jobs))
    assert outcomes == [7] * 4
    assert seen == ["BEGIN IMMEDIATE", "SAVEPOINT mark", "COMMIT"]


def test_a_redoable_failure_before_any_write_leaves_the_group_as_it_was(
    store: SqlStore, path: Path
) -> None:
    [job] = store.create_jobs([JOB], T0)
    node = store.register_node(NodeRegistration(address="a"), T0)
    runs = Runs(store)
    group_commit = grouping(store)
    seen = statements(store, whole=True)
    before, missing, after = served(
        store,
        runs.setter(job.id, 7),
        lambda: group_commit.call(store.heartbeat, "no-such-node", Heartbeat(), T0),
        lambda: group_commit.call(store.heartbeat, node.id, Heartbeat(), T0 + 5),
    )
    assert before == 7 and isinstance(missing, NotFound) and after.status == "ok"
    assert runs.count[job.id] == 1  # not run again: nothing was undone
    assert seen == ["BEGIN IMMEDIATE", "SAVEPOINT mark", "COMMIT"]
    assert priorities(path)[job.id] == 7
    assert durable(path, "SELECT last_heartbeat FROM nodes") == [T0 + 5]


def test_a_redoable_failure_after_a_write_undoes_it_and_redoes_the_others(
    store: SqlStore, path: Path
) -> None:
    first, second, broken, guarded, later = store.create_jobs([JOB] * 5, T0)
    runs = Runs(store)
    group_commit = grouping(store)
    original = priorities(path)

    def guarded_write() -> None:  # not redoable: a savepoint of its own
        with store.db.transaction() as tx:
            tx.ddl(f"UPDATE jobs SET priority = 3 WHERE id = '{guarded.id}'")

    outcomes = served(
        store,
        runs.setter(first.id, 7),
        lambda: group_commit.call(guarded_write),
        runs.setter(second.id, 8),
        runs.setter(broken.id, 9, fail=True),
        runs.setter(later.id, 6),
    )
    assert outcomes[0] == 7 and outcomes[2] == 8 and outcomes[4] == 6
    assert isinstance(outcomes[3], ValueError)
    found = priorities(path)
    assert found[broken.id] == original[broken.id]  # its write undone
    assert (found[first.id], found[guarded.id], found[second.id], found[later.id]) == (7, 3, 8, 6)
    # Undone with the failure and run again: only the call since the guarded one's savepoint.
    assert runs.count == Counter({first.id: 1, second.id: 2, broken.id: 1, later.id: 1})


def test_a_failed_commit_fails_the_calls_a_failure_undid_too(store: SqlStore, path: Path) -> None:
    jobs = store.create_jobs([JOB] * 2, T0)
    runs = Runs(store)
    group_commit = grouping(store)
    original = priorities(path)
    failing = Failing(group_commit._conn, {"COMMIT"}, once=False)
    group_commit._conn = failing  # type: ignore[assignment]
    outcomes = served(store, runs.setter(jobs[0].id, 7), runs.setter(jobs[1].id, 8, fail=True))
    failing.failing.clear()
    assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes), outcomes
    assert all("I/O error" in outcome.cause for outcome in outcomes)
    assert runs.count[jobs[0].id] == 1  # failed with its group, not run again
    assert priorities(path) == original


def test_a_full_disk_under_a_redoable_call_fails_every_call_of_its_group(
    store: SqlStore, path: Path
) -> None:
    [job] = store.create_jobs([JOB], T0)
    runs = Runs(store)
    group_commit = grouping(store)
    original = priorities(path)
    raw = store.db._sqlite
    assert raw is not None
    pages = raw.execute("PRAGMA page_count").fetchone()[0]
    raw.execute(f"PRAGMA max_page_count = {pages + 4}")  # room for a change, not for 500 jobs
    large = redoable(lambda: insert_one_at_a_time(store, 500))
    outcomes = served(store, runs.setter(job.id, 7), lambda: group_commit.call(large))
    assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes), outcomes
    assert priorities(path) == original
    raw.execute("PRAGMA max_page_count = 1073741823")
    assert served(store, runs.setter(job.id, 7)) == [7]


def test_a_transaction_a_failed_rollback_left_open_is_rolled_back_by_the_next_begin(
    store: SqlStore, path: Path
) -> None:
    group_commit = grouping(store)
    failing = Failing(group_commit._conn, {"COMMIT", "ROLLBACK"}, once=True)
    group_commit._conn = failing  # type: ignore[assignment]
    [lost] = served(store, lambda: group_commit.call(store.create_jobs, [JOB], T0))
    assert isinstance(lost, StoreUnavailable) and not failing.failing
    assert failing.in_transaction  # what the failed ROLLBACK left
    [[kept]] = served(store, lambda: group_commit.call(store.create_jobs, [JOB], T0))
    [alone] = store.create_jobs([JOB], T0)
    assert durable(path, "SELECT id FROM jobs ORDER BY seq") == [kept.id, alone.id]
