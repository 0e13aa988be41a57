"""A job's attempt history: the attempts it shows, on every backend, whichever way each ended.

A running or completed attempt lives on the job's row and no attempt row is written for it;
one that ended otherwise is stored at its end. These tests read the history as users do
(`get_job`), and count the stored rows where that is the point.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from ffleet.models import Heartbeat, JobDetail
from ffleet.store import IllegalTransition, Store
from ffleet.store.sql import SqlStore
from tests.contract.test_store import T0, jobs, node, result


def history(store: Store, job_id: str) -> list[tuple[Any, ...]]:
    return [
        (a.attempt, a.node_id, a.started_at, a.ended_at, a.outcome, a.error)
        for a in store.get_job(job_id).attempts
    ]


def stored(store: Store) -> list[tuple[Any, ...]]:
    """The attempt rows as the database holds them."""
    assert isinstance(store, SqlStore)
    with store.db.engine.connect() as conn:
        found = conn.execute(text("SELECT attempt, ended_at, outcome FROM attempts ORDER BY 1"))
        return [tuple(row) for row in found]


def agrees(detail: JobDetail) -> bool:
    """The job's current attempt is the last of its history, with the job's node and times."""
    job, last = detail.job, detail.attempts[-1]
    ended = job.completed_at if job.status == "completed" else None
    return (last.attempt, last.node_id, last.started_at, last.ended_at) == (
        job.attempt,
        job.node_id,
        job.started_at,
        ended,
    )


def test_a_running_job_has_one_open_attempt_and_the_claim_stores_none(store: Store) -> None:
    (job_id,) = jobs(store)
    worker = node(store)
    store.claim(worker, T0 + 1)
    assert history(store, job_id) == [(1, worker, T0 + 1, None, None, None)]
    assert agrees(store.get_job(job_id))
    assert stored(store) == []


def test_a_job_completed_first_time_stores_no_attempt(store: Store) -> None:
    (job_id,) = jobs(store)
    worker = node(store)
    store.claim(worker, T0 + 1)
    store.submit_result(result(job_id, worker, 1), T0 + 2)
    assert history(store, job_id) == [(1, worker, T0 + 1, T0 + 2, "completed", None)]
    assert agrees(store.get_job(job_id))
    assert stored(store) == []
    # A completed job is not retried: its history stays as it is.
    with pytest.raises(IllegalTransition):
        store.retry(job_id, T0 + 3)
    assert history(store, job_id) == [(1, worker, T0 + 1, T0 + 2, "completed", None)]


def test_failed_then_completed(store: Store) -> None:
    (job_id,) = jobs(store, max_attempts=2)
    worker = node(store)
    store.claim(worker, T0 + 1)
    failed = result(job_id, worker, 1, status="failed", error="boom", retryable=True)
    store.submit_result(failed, T0 + 2)
    store.claim(worker, T0 + 5)
    store.submit_result(result(job_id, worker, 2), T0 + 6)
    assert history(store, job_id) == [
        (1, worker, T0 + 1, T0 + 2, "failed", "boom"),
        (2, worker, T0 + 5, T0 + 6, "completed", None),
    ]
    assert agrees(store.get_job(job_id))
    assert stored(store) == [(1, T0 + 2, "failed")]


def test_released_then_completed(store: Store) -> None:
    (job_id,) = jobs(store)
    first, second = node(store), node(store)
    store.claim(first, T0 + 1)
    store.release(job_id, first, 1, "shutting down", T0 + 2)
    store.claim(second, T0 + 3)
    store.submit_result(result(job_id, second, 2), T0 + 4)
    assert history(store, job_id) == [
        (1, first, T0 + 1, T0 + 2, "released", "shutting down"),
        (2, second, T0 + 3, T0 + 4, "completed", None),
    ]
    assert agrees(store.get_job(job_id))


def test_canceled_while_running_then_retried_by_a_user_then_completed(store: Store) -> None:
    (job_id,) = jobs(store)
    worker = node(store)
    store.claim(worker, T0 + 1)
    flagged = store.cancel(job_id, T0 + 2)
    assert flagged.status == "running" and flagged.cancel_requested
    assert history(store, job_id) == [(1, worker, T0 + 1, None, None, None)]
    store.submit_result(result(job_id, worker, 1, status="canceled"), T0 + 3)
    canceled = [(1, worker, T0 + 1, T0 + 3, "canceled", "canceled")]
    assert history(store, job_id) == canceled
    store.retry(job_id, T0 + 4)
    assert history(store, job_id) == canceled  # queued again: no attempt of its own yet
    store.claim(worker, T0 + 5)
    store.submit_result(result(job_id, worker, 2), T0 + 6)
    assert history(store, job_id) == [*canceled, (2, worker, T0 + 5, T0 + 6, "completed", None)]
    assert agrees(store.get_job(job_id))


def test_the_reaper_ends_a_lost_attempt(store: Store) -> None:
    (job_id,) = jobs(store, max_attempts=2)
    lost, alive = node(store), node(store)
    store.claim(lost, T0)
    store.heartbeat(alive, Heartbeat(), T0 + 8)
    assert store.reap(T0 + 11).requeued_jobs == [job_id]
    reason = f"node {lost} stopped sending heartbeats"
    assert history(store, job_id) == [(1, lost, T0, T0 + 11, "failed", reason)]
    assert store.get_job(job_id).job.status == "pending"
    store.claim(alive, T0 + 13)
    store.submit_result(result(job_id, alive, 2), T0 + 14)
    assert history(store, job_id) == [
        (1, lost, T0, T0 + 11, "failed", reason),
        (2, alive, T0 + 13, T0 + 14, "completed", None),
    ]


def _open_row_of_an_earlier_version(store: Store, job_id: str, worker: str, at: float) -> None:
    """What an earlier version wrote at the claim: the attempt's row, open."""
    assert isinstance(store, SqlStore)
    with store.db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO attempts (job_id, attempt, node_id, started_at) "
                "VALUES (:job_id, 1, :node_id, :at)"
            ),
            {"job_id": job_id, "node_id": worker, "at": at},
        )


def test_an_open_attempt_stored_by_an_earlier_version_completes_once(store: Store) -> None:
    (job_id,) = jobs(store)
    worker = node(store)
    store.claim(worker, T0 + 1)
    _open_row_of_an_earlier_version(store, job_id, worker, T0 + 1)
    assert history(store, job_id) == [(1, worker, T0 + 1, None, None, None)]
    store.submit_result(result(job_id, worker, 1), T0 + 2)
    assert history(store, job_id) == [(1, worker, T0 + 1, T0 + 2, "completed", None)]
    assert agrees(store.get_job(job_id))


def test_an_open_attempt_stored_by_an_earlier_version_fails_once(store: Store) -> None:
    (job_id,) = jobs(store, max_attempts=1)
    worker = node(store)
    store.claim(worker, T0 + 1)
    _open_row_of_an_earlier_version(store, job_id, worker, T0 + 1)
    store.submit_result(result(job_id, worker, 1, status="failed", error="boom"), T0 + 2)
    assert history(store, job_id) == [(1, worker, T0 + 1, T0 + 2, "failed", "boom")]
    assert stored(store) == [(1, T0 + 2, "failed")]
    assert store.get_job(job_id).job.error == "attempt 1: boom"
