"""The job state machine's table: exactly the moves the design allows, and nothing else."""

from __future__ import annotations

from itertools import product

import pytest

from ffleet.states import FINISHED, MOVES, Event, JobStatus, allows, describe_sources

P, R, C, F, X = (
    JobStatus.PENDING,
    JobStatus.RUNNING,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.CANCELED,
)
# Written out by hand from the design, not derived from MOVES, so that the table can be wrong.
ALLOWED = {(P, R), (P, X), (R, C), (R, F), (R, P), (R, X), (F, P), (X, P)}


@pytest.mark.parametrize(("source", "target"), list(product(JobStatus, JobStatus)))
def test_every_status_pair_is_allowed_exactly_when_the_design_says(
    source: JobStatus, target: JobStatus
) -> None:
    reachable = any(allows(source, e) for e in Event if MOVES[e].target is target)
    assert reachable == ((source, target) in ALLOWED)


def test_every_status_is_the_target_of_some_event() -> None:
    assert {move.target for move in MOVES.values()} == set(JobStatus)


def test_finished_jobs_move_only_when_a_user_retries_them() -> None:
    for status in (C, F, X):
        assert [e for e in Event if allows(status, e)] == ([] if status is C else [Event.RETRY])


def test_finished_means_completed_failed_or_canceled() -> None:
    assert {C, F, X} == FINISHED


def test_allows_takes_the_status_as_stored_text() -> None:
    assert allows("pending", Event.CLAIM) and not allows("running", Event.CLAIM)


def test_sources_are_named_for_messages() -> None:
    assert describe_sources(Event.RETRY) == "canceled or failed"
    assert describe_sources(Event.CLAIM) == "pending"
