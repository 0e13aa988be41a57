"""A completed result for an attempt this process handed out reads nothing of its job
(store/handed_out.py); a kept claim another master's work has since made stale is never
trusted. Two stores on one database stand for two masters (SQLite file, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ffleet.store import Conflict, SchedulingPolicy, open_store
from ffleet.store.sql import SqlStore
from tests.conftest import store_url
from tests.contract.test_store import T0, jobs, node, result


@pytest.fixture(params=["sqlite", "postgres"])
def masters(
    request: pytest.FixtureRequest, tmp_path: Path, policy: SchedulingPolicy
) -> Iterator[tuple[SqlStore, SqlStore]]:
    url = store_url(request.param, tmp_path)
    here, there = open_store(url, policy), open_store(url, policy)
    assert isinstance(here, SqlStore) and isinstance(there, SqlStore)
    yield here, there
    there.close()
    here.close()


def test_a_result_for_a_claim_made_here_reads_no_job_row(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'ffleet.db'}")
    assert isinstance(store, SqlStore) and store.db._sqlite is not None
    (job_id,) = jobs(store)
    worker = node(store)
    store.claim(worker, T0 + 1)
    reads: list[str] = []
    store.db._sqlite.set_trace_callback(
        lambda sql: reads.append(sql) if sql.startswith("SELECT") else None
    )
    outcome = store.submit_result(result(job_id, worker, 1), T0 + 2)
    store.db._sqlite.set_trace_callback(None)
    assert outcome.job.status == "completed" and not outcome.duplicate
    assert not any("FROM jobs WHERE id" in sql for sql in reads), reads
    assert store.get_job(job_id).result is not None
    store.close()


def claimed_again_elsewhere(here: SqlStore, there: SqlStore) -> tuple[str, str]:
    """A job claimed here (kept: attempt 1), then released and claimed again by the same node
    through the other master (attempt 2, from T0 + 3): its id and the node's."""
    (job_id,) = jobs(here)
    worker = node(here)
    assert here.claim(worker, T0 + 1) is not None
    there.release(job_id, worker, 1, "shutting down", T0 + 2)
    claimed = there.claim(worker, T0 + 3)
    assert claimed is not None and claimed.attempt == 2
    return job_id, worker


def test_a_claim_lost_and_made_again_elsewhere_is_not_trusted(
    masters: tuple[SqlStore, SqlStore],
) -> None:
    here, there = masters
    job_id, worker = claimed_again_elsewhere(here, there)
    # The node's late result for attempt 1 is refused, as if nothing were kept here ...
    with pytest.raises(Conflict, match=r"attempt 1 of job .* is not current"):
        here.submit_result(result(job_id, worker, 1), T0 + 4)
    job = here.get_job(job_id)
    assert (job.job.status, job.job.attempt, job.result) == ("running", 2, None)
    # ... and one for attempt 2 completes attempt 2.
    outcome = here.submit_result(result(job_id, worker, 2), T0 + 5)
    assert outcome.job.status == "completed" and outcome.job.started_at == T0 + 3


def test_a_v1_result_for_a_stale_claim_completes_the_current_attempt(
    masters: tuple[SqlStore, SqlStore],
) -> None:
    """A v1.0 result names no attempt: it is the node's current one, read afresh."""
    here, there = masters
    job_id, worker = claimed_again_elsewhere(here, there)
    outcome = here.submit_result(result(job_id, worker, None), T0 + 4)
    assert outcome.job.status == "completed" and outcome.job.started_at == T0 + 3
    detail = here.get_job(job_id)
    assert [(a.attempt, a.outcome) for a in detail.attempts] == [(1, "released"), (2, "completed")]


def kept_as(store: SqlStore, job_id: str, **changed: object) -> None:
    """Replace the job's kept claim with one whose columns differ (as a claim rolled back and
    made again would leave it)."""
    kept = store._handed_out.take(job_id)
    assert kept is not None
    store._handed_out.add({**kept, **changed})


def test_a_kept_claim_for_another_node_never_completes_this_ones_attempt(
    masters: tuple[SqlStore, SqlStore],
) -> None:
    here, _ = masters
    (job_id,) = jobs(here)
    running, other = node(here), node(here)
    here.claim(running, T0 + 1)
    kept_as(here, job_id, node_id=other)
    with pytest.raises(Conflict, match=r"attempt 1 of job .* on node .* is not current"):
        here.submit_result(result(job_id, other, 1), T0 + 2)
    assert here.get_job(job_id).job.status == "running"


def test_a_kept_claim_with_another_start_is_not_trusted(
    masters: tuple[SqlStore, SqlStore],
) -> None:
    here, _ = masters
    (job_id,) = jobs(here)
    worker = node(here)
    here.claim(worker, T0 + 3)
    kept_as(here, job_id, started_at=T0 + 1)
    outcome = here.submit_result(result(job_id, worker, 1), T0 + 4)
    assert outcome.job.started_at == T0 + 3  # the job's own start, read afresh
