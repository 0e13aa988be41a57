"""Group commit on SQLite: the store calls of one loop turn, and those of the next turns while
they keep coming, share a COMMIT, and none of them returns (so no reply is sent) before it; a
failed COMMIT fails every one of them."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from ffleet.master.app import create_app
from ffleet.master.job_routes import LOOP_BATCH
from ffleet.master.settings import MasterSettings
from ffleet.store import StoreUnavailable
from ffleet.store.db import Tx
from ffleet.store.group_commit import GROUP_MAX_CALLS, GROUP_MAX_WAITS
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


def durable_ids(path: Path) -> set[str]:
    """Job ids another connection reads: what is committed."""
    return set(durable(path, "SELECT id FROM jobs"))


class FailingCommits:
    """The store's connection, with every COMMIT failing as on a full disk while `failing`."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._raw = raw
        self.failing = True

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT" and self.failing:
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorname = "SQLITE_FULL"
            raise error
        return self._raw.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class FailingOnce(FailingCommits):
    """The store's connection, with its next COMMIT failing as on a full disk."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        try:
            return super().execute(sql, *args)
        finally:
            if sql == "COMMIT":
                self.failing = False


def test_calls_of_one_loop_turn_share_one_commit_and_return_after_it(
    store: SqlStore, path: Path
) -> None:
    group_commit = grouping(store)
    seen = statements(store)

    async def scenario() -> list[str]:
        group_commit.serve(asyncio.get_running_loop())
        calls = [group_commit.call(store.create_jobs, [JOB], T0) for _ in range(8)]
        created = await asyncio.gather(*calls)
        # Every call returned after the one COMMIT: its job is there for any reader.
        assert {jobs[0].id for jobs in created} <= durable_ids(path)
        group_commit.unserve()
        return [jobs[0].id for jobs in created]

    assert len(asyncio.run(scenario())) == 8
    assert seen.count("BEGIN") == 1 and seen.count("COMMIT") == 1
    assert seen.count("SAVEPOINT") == seen.count("RELEASE") == 8


def _one_call_a_turn(store: SqlStore, count: int) -> tuple[list[str], int | None]:
    """`count` calls started one loop turn apart on a served store: their job ids, and how
    many had started when the first returned (None: after the last)."""
    group_commit = grouping(store)

    async def scenario() -> tuple[list[str], int | None]:
        group_commit.serve(asyncio.get_running_loop())
        tasks = []
        first_back: int | None = None
        for started in range(count):
            tasks.append(asyncio.create_task(group_commit.call(store.create_jobs, [JOB], T0)))
            await asyncio.sleep(0)
            if first_back is None and tasks[0].done():
                first_back = started + 1
        created = await asyncio.gather(*tasks)
        group_commit.unserve()
        return [jobs[0].id for jobs in created], first_back

    return asyncio.run(scenario())


def test_calls_that_arrive_while_a_group_grows_share_its_commit(
    store: SqlStore, path: Path
) -> None:
    seen = statements(store)
    ids, _ = _one_call_a_turn(store, 5)
    assert seen.count("BEGIN") == 1 and seen.count("COMMIT") == 1
    assert set(ids) == durable_ids(path)


def test_a_group_that_keeps_growing_commits_after_its_last_wait(
    store: SqlStore, path: Path
) -> None:
    """A stream of calls does not hold a group open: it commits after GROUP_MAX_WAITS checks,
    answering its calls while the stream goes on."""
    seen = statements(store)
    ids, first_back = _one_call_a_turn(store, 100)
    assert first_back is not None and first_back < 4 * GROUP_MAX_WAITS
    assert 100 / GROUP_MAX_CALLS < seen.count("COMMIT") < 100 / GROUP_MAX_WAITS
    assert set(ids) == durable_ids(path)


@pytest.mark.parametrize("bound", ["GROUP_MAX_CALLS", "GROUP_MAX_AGE_S"])
def test_a_group_stops_waiting_at_its_size_or_age_bound(
    store: SqlStore, path: Path, monkeypatch: pytest.MonkeyPatch, bound: str
) -> None:
    """10 calls a loop turn apart share one COMMIT by default (above); a group of at most 3
    calls, or one never deferred for its age, commits more often."""
    monkeypatch.setattr(f"ffleet.store.group_commit.{bound}", 3 if "CALLS" in bound else 0.0)
    seen = statements(store)
    ids, _ = _one_call_a_turn(store, 10)
    assert seen.count("COMMIT") >= 3
    assert set(ids) == durable_ids(path)


def test_a_failing_method_undoes_only_its_own_changes(store: SqlStore, path: Path) -> None:
    group_commit = grouping(store)
    [kept_before] = store.create_jobs([JOB], T0)

    def half_done() -> None:
        store.create_jobs([JOB], T0)
        with store.db.transaction() as tx:
            tx.ddl(f"UPDATE jobs SET priority = 99 WHERE id = '{kept_before.id}'")
            raise ValueError("refused after a write")

    async def scenario() -> tuple[list[Any], BaseException | Any]:
        group_commit.serve(asyncio.get_running_loop())
        first = group_commit.call(store.create_jobs, [JOB], T0)
        broken = group_commit.call(half_done)
        last = group_commit.call(store.create_jobs, [JOB], T0)
        outcomes = await asyncio.gather(first, broken, last, return_exceptions=True)
        group_commit.unserve()
        return [outcomes[0], outcomes[2]], outcomes[1]

    created, failure = asyncio.run(scenario())
    assert isinstance(failure, ValueError)
    assert store.get_job(kept_before.id).job.priority != 99
    # The broken call's first method committed with the group; its failed one did not.
    assert len(durable_ids(path)) == 4
    assert {jobs[0].id for jobs in created} <= durable_ids(path)


def test_a_failed_commit_answers_every_request_of_its_group_with_a_503(
    store: SqlStore, path: Path
) -> None:
    app = create_app(MasterSettings(store_url=f"sqlite:///{path}"), store)
    group_commit = grouping(store)

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://master") as client,
        ):
            failing = FailingCommits(group_commit._conn)
            group_commit._conn = failing  # type: ignore[assignment]
            job = {"scenario": "360p-h264"}
            replies = await asyncio.gather(*(client.post("/jobs", json=job) for _ in range(6)))
            failing.failing = False
            replies.append(await client.post("/jobs", json=job))
            return replies

    *failed, served = asyncio.run(scenario())
    assert [reply.status_code for reply in failed] == [503] * 6
    assert all("disk full" in reply.text for reply in failed)
    assert served.status_code == 201  # the store recovers with the disk
    assert durable_ids(path) == {served.json()["id"]}


def test_a_batch_of_up_to_loop_batch_jobs_is_created_on_the_loop_a_larger_one_aside(
    store: SqlStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(MasterSettings(store_url=f"sqlite:///{path}"), store)
    threads: list[int] = []
    create_jobs = store.create_jobs

    def recorded(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return create_jobs(*args, **kwargs)

    monkeypatch.setattr(store, "create_jobs", recorded)

    async def scenario() -> int:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://master") as client,
        ):
            for size in (LOOP_BATCH, LOOP_BATCH + 1):
                batch = {"jobs": [{"scenario": "360p-h264"}] * size}
                assert (await client.post("/jobs/batch", json=batch)).status_code == 201
        return threading.get_ident()

    loop_thread = asyncio.run(scenario())
    assert threads[0] == loop_thread and threads[1] != loop_thread
    assert len(durable_ids(path)) == 2 * LOOP_BATCH + 1


def run_beside_a_group(store: SqlStore, alone: Callable[[], None]) -> BaseException | Any:
    """One grouped `create_jobs` on a served loop, and in the same loop turn (before the
    group's scheduled COMMIT) `alone` on another thread; the grouped call's outcome."""
    group_commit = grouping(store)

    async def meanwhile() -> None:
        worker = threading.Thread(target=alone)
        worker.start()
        worker.join()

    async def scenario() -> BaseException | Any:
        group_commit.serve(asyncio.get_running_loop())
        grouped = asyncio.ensure_future(group_commit.call(store.create_jobs, [JOB], T0))
        outcome, _ = await asyncio.gather(grouped, meanwhile(), return_exceptions=True)
        group_commit.unserve()
        return outcome

    return asyncio.run(scenario())


def test_a_store_call_from_another_thread_commits_the_open_group_then_runs_alone(
    store: SqlStore, path: Path
) -> None:
    seen = statements(store)
    found: dict[str, Any] = {}

    def from_a_thread() -> None:
        [job] = store.create_jobs([JOB], T0)
        found["thread"] = job.id
        found["durable"] = durable_ids(path)

    [grouped] = run_beside_a_group(store, from_a_thread)
    assert found["durable"] == {grouped.id, found["thread"]}
    # The group's COMMIT first, then the thread's own transaction, never a savepoint in it.
    assert seen == ["BEGIN", "SAVEPOINT", "RELEASE", "COMMIT", "BEGIN", "COMMIT"]


def test_a_failing_call_from_another_thread_leaves_the_group_committed(
    store: SqlStore, path: Path
) -> None:
    def from_a_thread() -> None:
        with pytest.raises(ValueError), store.db.transaction() as tx:
            tx.ddl("UPDATE jobs SET priority = 99")
            raise ValueError("refused after a write")

    [grouped] = run_beside_a_group(store, from_a_thread)
    assert durable_ids(path) == {grouped.id}
    assert store.get_job(grouped.id).job.priority != 99


def test_a_failed_group_commit_leaves_the_call_from_another_thread_its_own(
    store: SqlStore, path: Path
) -> None:
    group_commit = grouping(store)
    found: dict[str, str] = {}

    def from_a_thread() -> None:
        # The group's COMMIT, which this thread runs before its own transaction, fails.
        group_commit._conn = FailingOnce(group_commit._conn)  # type: ignore[assignment]
        [job] = store.create_jobs([JOB], T0)
        found["thread"] = job.id

    outcome = run_beside_a_group(store, from_a_thread)
    assert isinstance(outcome, StoreUnavailable) and "disk full" in outcome.cause
    assert durable_ids(path) == {found["thread"]}


def test_a_heavy_call_on_the_loop_commits_the_group_then_runs_alone(store: SqlStore) -> None:
    group_commit = grouping(store)
    seen = statements(store)

    async def scenario() -> None:
        group_commit.serve(asyncio.get_running_loop())
        grouped = group_commit.call(store.create_jobs, [JOB], T0)
        heavy = group_commit.call(store.expire_idempotency_keys, T0)  # alone=True
        await asyncio.gather(grouped, heavy)
        group_commit.unserve()

    asyncio.run(scenario())
    assert seen == ["BEGIN", "SAVEPOINT", "RELEASE", "COMMIT", "BEGIN", "COMMIT"]


def test_every_transactions_cursor_is_closed_before_the_mutex_is_released(
    store: SqlStore,
) -> None:
    """A cursor freed later, on whatever thread drops its Tx, resets the cached statement it
    last ran, which another thread may be running under the mutex then: a 5,000-job batch
    failed with `InterfaceError: bad parameter or other API misuse` beside another."""
    group_commit = grouping(store)
    kept: list[Tx] = []

    def keep(alone: bool = False) -> None:
        with store.db.transaction(alone=alone) as tx:
            tx.run("store_write_probe")
        kept.append(tx)

    async def scenario() -> None:
        group_commit.serve(asyncio.get_running_loop())
        await group_commit.call(keep)  # a member of the loop's group
        await group_commit.call(keep, True)  # alone on the loop
        group_commit.unserve()

    asyncio.run(scenario())
    keep()  # a store not served
    assert len(kept) == 3
    for tx in kept:
        with pytest.raises(sqlite3.ProgrammingError, match="closed cursor"):
            tx.run("store_write_probe")


def test_only_the_groups_savepoints_journal_in_memory(store: SqlStore) -> None:
    group_commit = grouping(store)
    raw = store.db._sqlite
    assert raw is not None

    def temp_store(alone: bool = False) -> int:
        with store.db.transaction(alone=alone):
            return int(raw.execute("PRAGMA temp_store").fetchone()[0])

    async def scenario() -> list[int]:
        group_commit.serve(asyncio.get_running_loop())
        modes = [await group_commit.call(temp_store), await group_commit.call(temp_store, True)]
        modes.append(await group_commit.call(temp_store))
        group_commit.unserve()
        return [*modes, temp_store()]

    # 2: MEMORY; 0: the default (a file past 64 KiB), for heavy and unserved transactions.
    assert asyncio.run(scenario()) == [2, 0, 2, 0]


def test_the_checkpointers_write_lock_commits_an_open_group(store: SqlStore, path: Path) -> None:
    group_commit = grouping(store)
    checkpointed: list[tuple[int, int, int]] = []

    async def meanwhile() -> None:
        with group_commit.settled, closing(sqlite3.connect(path, timeout=0.5)) as conn:
            checkpointed.append(conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone())

    async def scenario() -> str:
        group_commit.serve(asyncio.get_running_loop())
        [jobs, _] = await asyncio.gather(
            group_commit.call(store.create_jobs, [JOB], T0), meanwhile()
        )
        group_commit.unserve()
        return jobs[0].id

    job_id = asyncio.run(scenario())
    [(busy, _frames, _copied)] = checkpointed
    assert busy == 0  # no writer left open under the lock: the RESTART did not wait for one
    assert durable_ids(path) == {job_id}


def test_a_store_not_served_commits_each_transaction_alone(store: SqlStore) -> None:
    seen = statements(store)

    async def scenario() -> None:
        await grouping(store).call(store.create_jobs, [JOB], T0)
        store.create_jobs([JOB], T0)

    asyncio.run(scenario())
    assert seen == ["BEGIN", "COMMIT", "BEGIN", "COMMIT"]


def full_disk_soon(store: SqlStore) -> sqlite3.Connection:
    """The store's connection, with room left for a job and not for 500."""
    raw = store.db._sqlite
    assert raw is not None
    pages = raw.execute("PRAGMA page_count").fetchone()[0]
    raw.execute(f"PRAGMA max_page_count = {pages + 4}")
    return raw


def test_a_full_disk_that_rolls_the_whole_group_back_fails_every_call_in_it(
    store: SqlStore, path: Path
) -> None:
    group_commit = grouping(store)
    raw = full_disk_soon(store)

    async def scenario() -> list[BaseException | Any]:
        group_commit.serve(asyncio.get_running_loop())
        small = group_commit.call(store.create_jobs, [JOB], T0)
        large = group_commit.call(insert_one_at_a_time, store, 500)
        outcomes = await asyncio.gather(small, large, return_exceptions=True)
        group_commit.unserve()
        return outcomes

    outcomes = asyncio.run(scenario())
    # SQLite answered the full disk by rolling back the whole transaction: the small call's
    # job went with it, and its call says so rather than returning it.
    assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes), outcomes
    assert all("disk full" in outcome.cause for outcome in outcomes)
    assert durable_ids(path) == set()
    raw.execute("PRAGMA max_page_count = 1073741823")
    assert len(store.create_jobs([JOB] * 500, T0)) == 500


def test_a_full_disk_met_by_a_batch_fails_that_batch_alone(store: SqlStore, path: Path) -> None:
    """A batch of alike jobs is one statement: SQLite undoes that statement only."""
    group_commit = grouping(store)
    raw = full_disk_soon(store)

    async def scenario() -> list[BaseException | Any]:
        group_commit.serve(asyncio.get_running_loop())
        small = group_commit.call(store.create_jobs, [JOB], T0)
        large = group_commit.call(store.create_jobs, [JOB] * 500, T0)
        outcomes = await asyncio.gather(small, large, return_exceptions=True)
        group_commit.unserve()
        return outcomes

    (job,), failure = asyncio.run(scenario())
    assert isinstance(failure, StoreUnavailable) and "disk full" in failure.cause
    assert durable_ids(path) == {job.id}
    raw.execute("PRAGMA max_page_count = 1073741823")
    assert len(store.create_jobs([JOB] * 500, T0)) == 500
