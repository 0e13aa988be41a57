"""What several masters agree on through the store: the leader lease, idempotency keys and the
database's clock; every backend keeps the same promises."""

from __future__ import annotations

import threading
import time

import pytest

from ffleet.models import JobRequest
from ffleet.store import Conflict, InvalidRequest, Store

T0 = 1_800_000_000.0
LEASE_S = 10.0


def test_the_lease_goes_to_the_first_and_is_renewed_only_by_it(store: Store) -> None:
    assert store.take_leadership("a", T0, LEASE_S) == "a"
    assert store.take_leadership("b", T0 + 1, LEASE_S) == "a"
    assert store.take_leadership("a", T0 + 9, LEASE_S) == "a"  # renewed until T0 + 19
    assert store.take_leadership("b", T0 + 18, LEASE_S) == "a"


def test_an_expired_lease_is_taken_over(store: Store) -> None:
    assert store.take_leadership("a", T0, LEASE_S) == "a"
    assert store.take_leadership("b", T0 + LEASE_S + 0.1, LEASE_S) == "b"
    assert store.take_leadership("a", T0 + LEASE_S + 0.2, LEASE_S) == "b"


def test_a_resigned_lease_is_free_at_once_and_only_its_holder_can_resign(store: Store) -> None:
    assert store.take_leadership("a", T0, LEASE_S) == "a"
    store.resign_leadership("b")
    assert store.take_leadership("b", T0 + 1, LEASE_S) == "a"
    store.resign_leadership("a")
    assert store.take_leadership("b", T0 + 1, LEASE_S) == "b"


def test_concurrent_candidates_elect_exactly_one(store: Store) -> None:
    winners: list[str | None] = []
    start = threading.Barrier(8)

    def run(name: str) -> None:
        start.wait()
        winners.append(store.take_leadership(name, T0, LEASE_S))

    threads = [threading.Thread(target=run, args=(f"m{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(winners)) == 1 and winners[0] is not None


def requests(count: int, scenario: str = "360p-h264") -> list[JobRequest]:
    return [JobRequest(scenario=scenario) for _ in range(count)]


def test_a_repeated_key_returns_the_first_jobs_and_creates_none(store: Store) -> None:
    first = store.create_jobs(requests(3), T0, idempotency_key="key-1")
    again = store.create_jobs(requests(3), T0 + 5, idempotency_key="key-1")
    assert [job.id for job in again] == [job.id for job in first]
    assert again == first  # the first reply, as it was
    assert store.list_jobs(None, None, 0)[1] == 3
    assert len(store.create_jobs(requests(3), T0, idempotency_key="key-2")) == 3
    assert store.list_jobs(None, None, 0)[1] == 6


def test_a_key_used_for_other_jobs_is_refused(store: Store) -> None:
    store.create_jobs(requests(1), T0, idempotency_key="key-1")
    with pytest.raises(Conflict, match="already used for other jobs"):
        store.create_jobs(requests(1, "720p-h264"), T0, idempotency_key="key-1")
    with pytest.raises(InvalidRequest, match="Idempotency-Key"):
        store.create_jobs(requests(1), T0, idempotency_key="x" * 201)
    with pytest.raises(Conflict, match="already used for other jobs"):
        store.create_jobs(requests(1), T0, submitted_by="other", idempotency_key="key-1")
    assert store.list_jobs(None, None, 0)[1] == 1


def test_a_failed_submission_keeps_its_key_free(store: Store) -> None:
    with pytest.raises(InvalidRequest):
        store.create_jobs(
            [JobRequest(scenario="720p-h264", parameters={"duration": -1})],
            T0,
            idempotency_key="key-1",
        )
    assert len(store.create_jobs(requests(1), T0, idempotency_key="key-1")) == 1


def test_concurrent_repeats_of_one_key_create_the_jobs_once(store: Store) -> None:
    replies: list[list[str]] = []
    start = threading.Barrier(6)

    def run() -> None:
        start.wait()
        replies.append(
            [job.id for job in store.create_jobs(requests(2), T0, idempotency_key="key-1")]
        )

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(replies) == 6 and all(reply == replies[0] for reply in replies)
    assert store.list_jobs(None, None, 0)[1] == 2


def test_keys_are_forgotten_after_a_day(store: Store) -> None:
    first = store.create_jobs(requests(1), T0, idempotency_key="key-1")
    assert store.expire_idempotency_keys(T0 + 86_000) == 0
    assert store.expire_idempotency_keys(T0 + 86_401) == 1
    assert store.create_jobs(requests(1), T0 + 86_402, idempotency_key="key-1") != first


def test_the_database_clock_is_epoch_seconds(store: Store) -> None:
    assert abs(store.database_time() - time.time()) < 5.0
