"""Split jobs in every Store backend: the parent no node claims, its children, its end."""

from __future__ import annotations

import pytest

from ffleet.models import JobRequest, NodeRegistration, Progress, ResultSubmission
from ffleet.store import Conflict, Store

T0 = 1_800_000_000.0
SOURCE = "blob:sha256:" + "a" * 64
PLAN = {"segments": [{"index": 0}, {"index": 1}]}


def parent(store: Store) -> str:
    request = JobRequest(scenario="360p-h264", parameters={"input": SOURCE})
    return store.create_split(request, 10.0, T0).id


def children(count: int = 2) -> list[JobRequest]:
    return [
        JobRequest(scenario="360p-h264", parameters={"input": "blob:sha256:" + f"{i}" * 64})
        for i in range(count)
    ]


def node(store: Store) -> str:
    registration = NodeRegistration(cpu_threads=8, ram_bytes=16 << 30, slots=4)
    return store.register_node(registration, T0).id


def test_a_parent_runs_on_no_node_and_is_never_claimed(store: Store) -> None:
    parent_id = parent(store)
    job = store.get_job(parent_id).job
    assert (job.status, job.node_id, job.attempt) == ("running", None, 1)
    assert store.claim(node(store), T0 + 1) is None
    assert store.reap(T0 + 10_000).requeued_jobs == []  # no lease, no deadline
    (state,) = store.running_splits()
    assert (state.parent.id, state.segment_s, state.plan, state.children) == (
        parent_id,
        10.0,
        None,
        [],
    )


def test_planning_queues_children_once_and_links_them(store: Store) -> None:
    parent_id = parent(store)
    created = store.plan_split(parent_id, 1, PLAN, children(), T0)
    assert [job.status for job in created] == ["pending", "pending"]
    with pytest.raises(Conflict):
        store.plan_split(parent_id, 1, PLAN, children(), T0)  # a second master lost the race
    (state,) = store.running_splits()
    assert state.plan == PLAN
    assert [(c.segment, c.job.id) for c in state.children] == [
        (0, created[0].id),
        (1, created[1].id),
    ]
    assert store.split_links(created[1].id) == {"parent_id": parent_id, "segment": 1}
    assert store.split_links(parent_id) == {"split": {"segment_s": 10.0, "plan": PLAN}}
    worker = node(store)
    claimed = store.claim(worker, T0 + 1)
    assert claimed is not None and claimed.id == created[0].id
    store.submit_result(
        ResultSubmission(
            job_id=claimed.id,
            node_id=worker,
            attempt=1,
            status="completed",
            metrics={"output_blob": SOURCE},
        ),
        T0 + 2,
    )
    (state,) = store.running_splits()
    first = state.children[0]
    assert first.job.status == "completed"
    assert first.result is not None and first.result.metrics == {"output_blob": SOURCE}


def test_progress_and_the_end_of_a_parent(store: Store) -> None:
    parent_id = parent(store)
    store.record_split_progress(parent_id, Progress(percent=50.0))
    progress = store.get_job(parent_id).job.progress
    assert progress is not None and progress.percent == 50.0
    done = store.finish_split(parent_id, 1, "completed", {"frames": 960}, None, T0 + 5)
    assert done.status == "completed"
    stored = store.get_job(parent_id).result
    assert stored is not None and (stored.node_id, stored.metrics) == ("master", {"frames": 960})
    assert store.running_splits() == []
    with pytest.raises(Conflict):
        store.finish_split(parent_id, 1, "failed", {}, "late", T0 + 6)


def test_a_retried_parent_runs_again_at_once_and_plans_afresh(store: Store) -> None:
    parent_id = parent(store)
    store.plan_split(parent_id, 1, PLAN, children(), T0)
    store.finish_split(parent_id, 1, "failed", {}, "segment 0 failed", T0 + 1)
    again = store.retry(parent_id, T0 + 2)
    assert (again.status, again.node_id, again.attempt) == ("running", None, 2)
    (state,) = store.running_splits()
    assert (state.plan, state.children) == (None, [])  # the first try's children stay its own
    store.plan_split(parent_id, 2, PLAN, children(), T0 + 3)


def test_a_cancel_of_a_parent_is_flagged_for_the_splitter(store: Store) -> None:
    parent_id = parent(store)
    assert store.cancel(parent_id, T0 + 1).cancel_requested
    (state,) = store.running_splits()
    assert state.parent.cancel_requested
    assert store.finish_split(parent_id, 1, "canceled", {}, "canceled", T0 + 2).status == (
        "canceled"
    )


def test_purging_finished_jobs_removes_their_split_links(store: Store) -> None:
    parent_id = parent(store)
    (child,) = store.plan_split(parent_id, 1, PLAN, children(1), T0)
    store.cancel(child.id, T0 + 1)
    store.finish_split(parent_id, 1, "failed", {}, "segment 0 canceled", T0 + 2)
    assert store.delete_finished([parent_id, child.id]) == 2
    assert store.split_links(parent_id) == {} and store.split_links(child.id) == {}
