"""`transition` on every backend: for every (from, to) status pair, an event that leads to `to`
is written exactly when the state machine allows the pair, and refused (409) otherwise."""

from __future__ import annotations

from itertools import product

import pytest
from sqlalchemy import text

from ffleet.models import JobRequest
from ffleet.states import MOVES, Event, JobStatus
from ffleet.store import Conflict, IllegalTransition, Store
from ffleet.store.sql import SqlStore
from ffleet.store.transitions import transition
from tests.unit.test_states import ALLOWED

T0 = 1_800_000_000.0
# Enough for every event's statement (each takes the ones it names).
VALUES = {
    "node_id": "n1",
    "attempt": 1,
    "now": T0,
    "lease": T0 + 60,
    "deadline": T0 + 600,
    "not_before": T0,
    "retry_count": 0,
    "error": None,
}


def _job(store: SqlStore) -> str:
    return store.create_jobs([JobRequest(scenario="360p-h264")], T0)[0].id


def _force(store: SqlStore, job_id: str, status: JobStatus) -> None:
    with store.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE jobs SET status = :status WHERE id = :id"),
            {"status": status.value, "id": job_id},
        )


@pytest.mark.parametrize(("source", "target"), list(product(JobStatus, JobStatus)))
def test_transition_writes_exactly_the_allowed_pairs(
    store: Store, source: JobStatus, target: JobStatus
) -> None:
    assert isinstance(store, SqlStore)
    job_id = _job(store)
    written = []
    for event in (e for e in Event if MOVES[e].target is target):
        _force(store, job_id, source)
        with store.db.transaction() as tx:
            row = tx.one("job_get", {"id": job_id})
            assert row is not None
            try:
                changed = transition(tx, row, event, **VALUES)
            except IllegalTransition as exc:
                assert str(exc).startswith(f"job {job_id} is {source.value}: '{event}'")
                assert exc.status_code == 409
                stored = tx.one("job_get", {"id": job_id})
                assert stored is not None and stored["status"] == source.value
            else:
                assert changed["status"] == target.value
                written.append(event)
    assert bool(written) == ((source, target) in ALLOWED)


def test_a_row_changed_since_it_was_read_is_not_overwritten(store: Store) -> None:
    assert isinstance(store, SqlStore)
    job_id = _job(store)
    with store.db.transaction() as tx:
        stale = tx.one("job_get", {"id": job_id})
    _force(store, job_id, JobStatus.CANCELED)
    with store.db.transaction() as tx:
        assert stale is not None
        with pytest.raises(Conflict, match="changed concurrently"):
            transition(tx, stale, Event.CLAIM, **VALUES)
        stored = tx.one("job_get", {"id": job_id})
        assert stored is not None and stored["status"] == "canceled"
