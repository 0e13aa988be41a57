"""One contract for every Store backend: memory, SQLite and PostgreSQL run these same tests."""

from __future__ import annotations

import threading

import pytest

from ffleet.models import (
    GpuDescription,
    Heartbeat,
    JobRequest,
    NodeRegistration,
    Progress,
    ProgressReport,
    Requirements,
    ResultSubmission,
)
from ffleet.store import Conflict, InvalidRequest, NotFound, Store

T0 = 1_800_000_000.0


def node(store: Store, now: float = T0, **fields: object) -> str:
    fields.setdefault("cpu_threads", 8)
    fields.setdefault("ram_bytes", 16 << 30)
    fields.setdefault("slots", 1)
    return store.register_node(NodeRegistration(**fields), now).id  # type: ignore[arg-type]


def jobs(store: Store, count: int = 1, now: float = T0, **fields: object) -> list[str]:
    requests = [JobRequest(scenario="360p-h264", **fields) for _ in range(count)]  # type: ignore[arg-type]
    return [job.id for job in store.create_jobs(requests, now)]


def result(job_id: str, node_id: str, attempt: int | None, status: str = "completed", **kw: object):
    return ResultSubmission(job_id=job_id, node_id=node_id, attempt=attempt, status=status, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- nodes


def test_register_and_read_back_a_node(store: Store) -> None:
    reg = NodeRegistration(
        address="10.1.2.3",
        type="server",
        cpu_threads=32,
        cpu_model="EPYC",
        ram_bytes=64 << 30,
        labels={"rack": "a"},
        encoders=["libx264"],
        slots=2,
    )
    created = store.register_node(reg, T0)
    fetched = store.get_node(created.id)
    assert fetched == created
    assert fetched.status == "available"
    assert fetched.labels == {"rack": "a"}
    assert fetched.last_heartbeat == T0
    assert [n.id for n in store.list_nodes()] == [created.id]


def test_has_gpu_is_what_the_agent_reports_whatever_devices_it_lists(store: Store) -> None:
    """`has_gpu` and `gpu_type` describe NVIDIA GPUs (v1.0); a VAAPI device in `gpus` is not one."""
    intel = GpuDescription(name="Intel UHD 770", vendor="intel", device="/dev/dri/renderD128")
    listed = store.register_node(NodeRegistration(has_gpu=False, gpus=[intel]), T0)
    assert listed.has_gpu is False and listed.gpus == [intel]
    assert listed.gpu_type is None
    nvidia = store.register_node(NodeRegistration(has_gpu=True, gpu_type="NVIDIA L4"), T0)
    assert nvidia.has_gpu is True


def test_unknown_node_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_node("nope")
    with pytest.raises(NotFound):
        store.heartbeat("nope", Heartbeat(), T0)
    with pytest.raises(NotFound):
        store.claim("nope", T0)


def test_reregistering_a_known_id_ends_its_running_attempts(store: Store) -> None:
    node_id = node(store)
    (job_id,) = jobs(store)
    assert store.claim(node_id, T0 + 1) is not None
    again = store.register_node(NodeRegistration(id=node_id, cpu_threads=8, slots=1), T0 + 2)
    assert again.id == node_id
    detail = store.get_job(job_id)
    assert detail.job.status == "pending"
    assert detail.attempts[0].error == "agent restarted"
    assert len(store.list_nodes()) == 1


# ---------------------------------------------------------------- submission and listing


def test_job_has_v1_fields_and_defaults(store: Store) -> None:
    (job,) = store.create_jobs([JobRequest(scenario="4K60-h264")], T0)
    assert job.status == "pending"
    assert job.confidence == "auto"
    assert job.retry_count == 0 and job.node_id is None and job.error is None
    assert job.created_at == T0
    assert job.timeout_s is not None and job.timeout_s > 0
    assert job.max_attempts == 3 and job.priority == 5


def test_invalid_job_in_a_batch_writes_nothing(store: Store) -> None:
    good = JobRequest(scenario="720p-h264")
    bad = JobRequest(scenario="720p-h264", parameters={"duration": -1})
    with pytest.raises(InvalidRequest):
        store.create_jobs([good, bad], T0)
    with pytest.raises(InvalidRequest):
        store.create_jobs([JobRequest(scenario="720p", priority="urgent")], T0)
    assert store.list_jobs(None, None, 0) == ([], 0)


def test_a_batch_replies_with_the_jobs_as_stored(store: Store) -> None:
    """The reply is built from the request, the row from the insert statement: they agree."""
    requests = [
        JobRequest(scenario="720p-h264", parameters={"duration": 5}, affinity={"rack": "a"}),
        JobRequest(scenario="360p-h264", priority="high", stall_timeout_s=30.0),
        JobRequest(scenario="720p-h264", parameters={"duration": 5}, affinity={"rack": "a"}),
    ]
    created = store.create_jobs(requests, T0, submitted_by="ci")
    assert [store.get_job(job.id).job for job in created] == created
    starts = {(job.status, job.attempt, job.retry_count, job.cancel_requested) for job in created}
    assert starts == {("pending", 0, 0, False)}


def test_a_batch_is_stored_in_its_order_across_distinct_requests(store: Store) -> None:
    """Alike jobs next to each other are inserted together: the queue keeps the batch's order."""
    wide, small = JobRequest(scenario="720p-h264"), JobRequest(scenario="360p-h264")
    requests = [wide, wide, small, wide, small, small, wide]
    created = store.create_jobs(requests, T0)
    listed, total = store.list_jobs(None, None, 0)
    assert [job.id for job in listed] == [job.id for job in created] and total == 7
    assert [job.scenario for job in listed] == [request.scenario for request in requests]
    assert listed == created


def test_list_jobs_filters_and_paginates(store: Store) -> None:
    ids = jobs(store, 5)
    node_id = node(store)
    store.claim(node_id, T0 + 1)
    listed, total = store.list_jobs(None, 2, 1)
    assert [j.id for j in listed] == ids[1:3] and total == 5
    running, total = store.list_jobs("running", None, 0)
    assert [j.id for j in running] == ids[:1] and total == 1
    pending, total = store.list_jobs("pending", 10, 0)
    assert [j.id for j in pending] == ids[1:] and total == 4


def test_list_jobs_filters_by_scenario_and_node(store: Store) -> None:
    small = jobs(store, 2)
    (large,) = store.create_jobs([JobRequest(scenario="720p-h264")], T0)
    node_id = node(store)
    store.claim(node_id, T0 + 1)
    found, total = store.list_jobs(None, None, 0, scenario="720p-h264")
    assert [j.id for j in found] == [large.id] and total == 1
    found, total = store.list_jobs(None, 1, 0, node_id=node_id)
    assert [j.id for j in found] == small[:1] and total == 1
    found, total = store.list_jobs("pending", 1, 1, scenario="360p-h264")
    assert found == [] and total == 1
    assert store.list_jobs("running", None, 0, scenario="720p-h264") == ([], 0)


# ---------------------------------------------------------------- claim


def test_claim_is_fifo_within_a_priority(store: Store) -> None:
    ids = jobs(store, 4)
    node_id = node(store, slots=None)
    claimed = [store.claim(node_id, T0 + 1) for _ in range(4)]
    assert [j.id for j in claimed if j] == ids
    assert store.claim(node_id, T0 + 1) is None


def test_claim_prefers_higher_priority(store: Store) -> None:
    low = jobs(store, 1, priority="low")
    med = jobs(store, 1)
    high = jobs(store, 1, priority="high")
    node_id = node(store, slots=None)
    order = [store.claim(node_id, T0 + 1) for _ in range(3)]
    assert [j.id for j in order if j] == high + med + low


def test_claim_starts_an_attempt(store: Store) -> None:
    (job_id,) = jobs(store)
    node_id = node(store)
    job = store.claim(node_id, T0 + 1)
    assert job is not None and job.id == job_id
    assert job.status == "running" and job.node_id == node_id and job.attempt == 1
    assert job.started_at == T0 + 1
    detail = store.get_job(job_id)
    assert [(a.attempt, a.node_id, a.outcome) for a in detail.attempts] == [(1, node_id, None)]
    assert store.get_node(node_id).current_job_id == job_id
    assert store.get_node(node_id).status == "busy"


def test_slots_limit_concurrent_jobs_per_node(store: Store) -> None:
    jobs(store, 3)
    node_id = node(store, slots=2)
    assert store.claim(node_id, T0) is not None
    assert store.claim(node_id, T0) is not None
    assert store.claim(node_id, T0) is None


def test_draining_node_gets_no_work(store: Store) -> None:
    jobs(store, 1)
    node_id = node(store)
    assert store.set_draining(node_id, True).status == "draining"
    assert store.claim(node_id, T0) is None
    store.set_draining(node_id, False)
    assert store.claim(node_id, T0) is not None


def test_concurrent_claims_hand_each_job_out_exactly_once(store: Store) -> None:
    total = 1000
    store.create_jobs([JobRequest(scenario="360p-h264") for _ in range(total)], T0)
    claimers = [node(store, slots=None) for _ in range(32)]
    claimed: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def drain(node_id: str) -> None:
        try:
            while (job := store.claim(node_id, T0 + 1)) is not None:
                with lock:
                    claimed.append(job.id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(n,)) for n in claimers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert len(claimed) == total
    assert len(set(claimed)) == total
    assert store.list_jobs("pending", None, 0)[1] == 0


# ---------------------------------------------------------------- results


def test_result_completes_the_job_and_is_stored(store: Store) -> None:
    (job_id,) = jobs(store)
    node_id = node(store)
    store.claim(node_id, T0)
    outcome = store.submit_result(
        result(job_id, node_id, 1, metrics={"fps": 120.5}, analyzer_output={"ok": True}), T0 + 5
    )
    assert not outcome.duplicate and outcome.job.status == "completed"
    detail = store.get_job(job_id)
    assert detail.job.completed_at == T0 + 5
    assert detail.result is not None and detail.result.metrics == {"fps": 120.5}
    assert detail.result.analyzer_output == {"ok": True}
    assert detail.attempts[0].outcome == "completed"
    assert store.get_node(node_id).status == "available"
    assert [r.job_id for r in store.list_results(job_id, None, 0)] == [job_id]


def test_the_outcome_tells_the_job_as_the_result_left_it(store: Store) -> None:
    done, canceled, retried = jobs(store, 3, max_attempts=2)
    node_id = node(store, slots=3)
    for _ in range(3):
        store.claim(node_id, T0)
    first = store.submit_result(result(done, node_id, 1), T0 + 5).job
    assert (first.id, first.scenario, first.status, first.error) == (
        done,
        "360p-h264",
        "completed",
        None,
    )
    assert (first.started_at, first.completed_at, first.not_before) == (T0, T0 + 5, None)
    again = store.submit_result(result(done, node_id, 1), T0 + 9)
    assert again.duplicate and again.job == first
    stopped = store.submit_result(result(canceled, node_id, 1, status="canceled"), T0 + 6).job
    assert (stopped.status, stopped.error, stopped.completed_at) == ("canceled", "canceled", T0 + 6)
    failed = result(retried, node_id, 1, status="failed", error="boom", retryable=True)
    queued = store.submit_result(failed, T0 + 7).job
    assert (queued.status, queued.retry_count, queued.error) == ("pending", 1, "boom")
    assert queued.not_before is not None and queued.not_before > T0 + 7
    assert queued.completed_at is None and queued.started_at == T0


def test_same_result_twice_is_stored_once(store: Store) -> None:
    (job_id,) = jobs(store)
    node_id = node(store)
    store.claim(node_id, T0)
    store.submit_result(result(job_id, node_id, 1), T0 + 1)
    again = store.submit_result(result(job_id, node_id, 1), T0 + 2)
    assert again.duplicate
    assert len(store.list_results(job_id, None, 0)) == 1
    with pytest.raises(Conflict):
        store.submit_result(result(job_id, node_id, 1, status="failed"), T0 + 3)


def test_v1_result_without_attempt_uses_the_current_one(store: Store) -> None:
    (job_id,) = jobs(store)
    node_id = node(store, slots=None)
    store.claim(node_id, T0)
    assert store.submit_result(result(job_id, node_id, None), T0 + 1).job.status == "completed"
    assert store.submit_result(result(job_id, node_id, None), T0 + 2).duplicate


def test_result_from_the_wrong_node_or_attempt_is_refused(store: Store) -> None:
    (job_id,) = jobs(store)
    owner = node(store)
    other = node(store)
    store.claim(owner, T0)
    with pytest.raises(Conflict):
        store.submit_result(result(job_id, other, 1), T0 + 1)
    with pytest.raises(Conflict):
        store.submit_result(result(job_id, owner, 2), T0 + 1)
    with pytest.raises(NotFound):
        store.submit_result(result("missing", owner, 1), T0 + 1)
    assert store.get_job(job_id).job.status == "running"
    assert store.list_results(job_id, None, 0) == []


def test_result_for_a_pending_job_is_refused(store: Store) -> None:
    (job_id,) = jobs(store)
    node_id = node(store)
    with pytest.raises(Conflict):
        store.submit_result(result(job_id, node_id, None), T0)
    assert store.get_job(job_id).job.status == "pending"


def test_retryable_failure_requeues_with_backoff_then_fails(store: Store) -> None:
    (job_id,) = jobs(store, max_attempts=2)
    node_id = node(store)
    store.claim(node_id, T0)
    job = store.submit_result(
        result(job_id, node_id, 1, status="failed", error="boom 1", retryable=True), T0 + 1
    ).job
    assert job.status == "pending" and job.retry_count == 1 and job.error == "boom 1"
    assert store.claim(node_id, T0 + 1) is None  # backing off: base 1 s, so at least 0.5 s
    again = store.claim(node_id, T0 + 10)
    assert again is not None and again.attempt == 2
    final = store.submit_result(
        result(job_id, node_id, 2, status="failed", error="boom 2", retryable=True), T0 + 11
    ).job
    assert final.status == "failed" and final.retry_count == 2
    assert final.error is not None and "boom 1" in final.error and "boom 2" in final.error
    history = store.get_job(job_id).attempts
    assert [(a.attempt, a.outcome, a.error) for a in history] == [
        (1, "failed", "boom 1"),
        (2, "failed", "boom 2"),
    ]


def test_non_retryable_failure_fails_at_once(store: Store) -> None:
    (job_id,) = jobs(store)
    node_id = node(store)
    store.claim(node_id, T0)
    job = store.submit_result(
        result(job_id, node_id, 1, status="failed", error="Unknown encoder"), T0 + 1
    ).job
    assert job.status == "failed" and job.error == "attempt 1: Unknown encoder"


def test_release_requeues_without_counting_a_failure(store: Store) -> None:
    (job_id,) = jobs(store)
    node_id = node(store)
    store.claim(node_id, T0)
    job = store.release(job_id, node_id, 1, "agent shutting down", T0 + 1)
    assert job.status == "pending" and job.retry_count == 0
    assert store.get_job(job_id).attempts[0].outcome == "released"
    with pytest.raises(Conflict):
        store.release(job_id, node_id, 1, "again", T0 + 2)
    assert store.claim(node_id, T0 + 1) is not None


# ---------------------------------------------------------------- heartbeat, cancel, retry


def test_heartbeat_stores_progress_and_answers_directives(store: Store) -> None:
    (job_id,) = jobs(store)
    node_id = node(store)
    store.claim(node_id, T0)
    beat = Heartbeat(
        jobs=[ProgressReport(job_id=job_id, attempt=1, progress=Progress(percent=40.0, fps=90.0))]
    )
    reply = store.heartbeat(node_id, beat, T0 + 1)
    assert reply.directives == [] and reply.node_status == "busy"
    job = store.get_job(job_id).job
    assert job.progress is not None and job.progress.percent == 40.0
    stale = Heartbeat(jobs=[ProgressReport(job_id="gone", attempt=3)])
    assert [d.action for d in store.heartbeat(node_id, stale, T0 + 2).directives] == ["abandon"]


def test_cancel_pending_and_running(store: Store) -> None:
    first, second = jobs(store, 2)
    assert store.cancel(second, T0).status == "canceled"
    node_id = node(store)
    store.claim(node_id, T0)
    assert store.cancel(first, T0 + 1).cancel_requested
    reply = store.heartbeat(node_id, Heartbeat(), T0 + 2)
    assert [(d.action, d.job_id) for d in reply.directives] == [("cancel", first)]
    done = store.submit_result(result(first, node_id, 1, status="canceled"), T0 + 3).job
    assert done.status == "canceled"
    with pytest.raises(Conflict):
        store.cancel(first, T0 + 4)


def test_retry_requeues_failed_and_canceled_jobs_only(store: Store) -> None:
    (job_id,) = jobs(store)
    with pytest.raises(Conflict):
        store.retry(job_id, T0)
    store.cancel(job_id, T0)
    job = store.retry(job_id, T0 + 1)
    assert job.status == "pending" and job.retry_count == 0


def test_pending_exceeds_counts_only_pending_jobs(store: Store) -> None:
    assert not store.pending_exceeds(0)
    assert store.pending_exceeds(-1)
    queued = jobs(store, 5)
    store.claim(node(store), T0)  # the first leaves the queue
    store.cancel(queued[2], T0)  # so does the third: 3 pending among 4 sequence numbers
    assert [store.pending_exceeds(bound) for bound in (2, 3, 4)] == [True, False, False]


# ---------------------------------------------------------------- reaper


def test_silent_node_goes_offline_and_its_job_is_retried(store: Store) -> None:
    (job_id,) = jobs(store)
    dead = node(store)
    store.claim(dead, T0)
    assert store.reap(T0 + 5).requeued_jobs == []  # within the 10 s node timeout
    report = store.reap(T0 + 11)
    assert report.offline_nodes == [dead] and report.requeued_jobs == [job_id]
    assert store.get_node(dead).status == "offline"
    detail = store.get_job(job_id)
    assert detail.job.status == "pending" and detail.job.retry_count == 1
    assert "stopped sending heartbeats" in (detail.attempts[0].error or "")
    # The zombie comes back: its result is refused and it is told to abandon the work.
    with pytest.raises(Conflict):
        store.submit_result(result(job_id, dead, 1), T0 + 12)
    reply = store.heartbeat(
        dead, Heartbeat(jobs=[ProgressReport(job_id=job_id, attempt=1)]), T0 + 12
    )
    assert [d.action for d in reply.directives] == ["abandon"]


def test_heartbeats_keep_a_long_job_alive(store: Store) -> None:
    (job_id,) = jobs(store, timeout_s=1000)
    node_id = node(store)
    store.claim(node_id, T0)
    for t in range(5, 60, 5):
        store.heartbeat(node_id, Heartbeat(), T0 + t)
        assert store.reap(T0 + t + 1).requeued_jobs == []
    assert store.get_job(job_id).job.status == "running"


def test_job_past_its_timeout_is_ended_and_finally_fails(store: Store) -> None:
    (job_id,) = jobs(store, timeout_s=3, max_attempts=1)
    node_id = node(store)
    store.claim(node_id, T0)
    store.heartbeat(node_id, Heartbeat(), T0 + 2)
    store.heartbeat(node_id, Heartbeat(), T0 + 9)
    assert store.reap(T0 + 10).failed_jobs == []  # the agent's own bound comes first
    report = store.reap(T0 + 14)
    assert report.failed_jobs == [job_id]
    job = store.get_job(job_id).job
    assert job.status == "failed" and "timed out after 3 s" in (job.error or "")


def test_a_reaper_pass_ends_at_most_its_limit_and_says_there_is_more(store: Store) -> None:
    fleet = [node(store) for _ in range(5)]
    queued = jobs(store, 5)
    for node_id in fleet:
        store.claim(node_id, T0)
    jobs(store, 3, priority="low", now=T0 + 1)
    jobs(store, 1, priority="high", now=T0 + 1)
    later = T0 + 40  # past the node timeout, and one aging interval for the low jobs
    passes = []
    report = store.reap(later, limit=2)
    passes.append(report)
    while report.more:
        assert len(passes) < 10
        report = store.reap(later, limit=2)
        passes.append(report)
    assert [len(p.offline_nodes) for p in passes] == [2, 2, 1]
    assert [len(p.requeued_jobs) for p in passes] == [2, 2, 1]
    assert [p.aged_jobs for p in passes] == [2, 1, 0]
    assert sorted(job for p in passes for job in p.requeued_jobs) == sorted(queued)


# ---------------------------------------------------------------- placement


def test_gpu_job_never_goes_to_a_cpu_node_and_does_not_block_cpu_work(store: Store) -> None:
    (gpu_job,) = jobs(store, requirements=Requirements(gpu=True))
    (cpu_job,) = jobs(store)
    cpu_node = node(store)
    claimed = store.claim(cpu_node, T0 + 1)
    assert claimed is not None and claimed.id == cpu_job
    assert store.get_job(gpu_job).job.status == "pending"


def test_requirements_filter_encoders_labels_ram_threads(store: Store) -> None:
    (needs,) = jobs(
        store,
        requirements=Requirements(
            encoders=["libsvtav1"],
            labels={"site": "lab"},
            min_ram_bytes=32 << 30,
            min_cpu_threads=16,
        ),
    )
    small = node(store, encoders=["libsvtav1"], labels={"site": "lab"})
    assert store.claim(small, T0 + 1) is None
    big = node(
        store, cpu_threads=32, ram_bytes=64 << 30, encoders=["libsvtav1"], labels={"site": "lab"}
    )
    claimed = store.claim(big, T0 + 1)
    assert claimed is not None and claimed.id == needs


def test_unschedulable_job_is_flagged_until_a_capable_node_registers(store: Store) -> None:
    node(store)
    (job_id,) = jobs(store, requirements=Requirements(gpu=True))
    reason = store.get_job(job_id).job.unschedulable_reason
    assert reason is not None and "GPU" in reason
    node(store, has_gpu=True, gpu_type="NVIDIA L4")
    assert store.get_job(job_id).job.unschedulable_reason is None


def test_gpu_node_takes_gpu_work_first(store: Store) -> None:
    (cpu_job,) = jobs(store)
    (gpu_job,) = jobs(store, requirements=Requirements(gpu=True))
    gpu_node = node(store, has_gpu=True, gpu_type="NVIDIA L4", slots=None)
    first = store.claim(gpu_node, T0 + 1)
    assert first is not None and first.id == gpu_job
    # No CPU node exists, so the GPU node takes the CPU job too rather than idle it.
    second = store.claim(gpu_node, T0 + 1)
    assert second is not None and second.id == cpu_job


def test_cpu_work_waits_briefly_for_an_idle_cpu_node(store: Store) -> None:
    (cpu_job,) = jobs(store)
    gpu_node = node(store, has_gpu=True, gpu_type="NVIDIA L4")
    cpu_node = node(store)
    assert store.claim(gpu_node, T0 + 1) is None  # an idle CPU node is the better home
    claimed = store.claim(cpu_node, T0 + 1)
    assert claimed is not None and claimed.id == cpu_job


def test_preference_lapses_so_no_job_starves(store: Store) -> None:
    (cpu_job,) = jobs(store)
    gpu_node = node(store, has_gpu=True, gpu_type="NVIDIA L4")
    node(store, now=T0 + 30)  # idle CPU node that never claims
    store.heartbeat(gpu_node, Heartbeat(), T0 + 30)
    claimed = store.claim(gpu_node, T0 + 30)
    assert claimed is not None and claimed.id == cpu_job


def test_aging_lifts_a_starved_low_priority_job(store: Store) -> None:
    (low,) = jobs(store, priority="low")
    jobs(store, 3, priority="high")
    assert store.reap(T0 + 29).aged_jobs == 0
    for step in range(1, 11):  # 10 intervals of 30 s lift low (0) to high (10)
        store.reap(T0 + 30 * step)
    aged = store.get_job(low).job
    assert aged.priority == 10
    node_id = node(store, now=T0 + 300)
    first = store.claim(node_id, T0 + 300)
    assert first is not None and first.id == low  # equal priority now, and it is the oldest


def test_attempt_the_agent_does_not_report_is_handed_back(store: Store) -> None:
    (job_id,) = jobs(store)
    node_id = node(store)
    store.claim(node_id, T0)
    # Just claimed: the reply may still be on its way, so an empty report changes nothing.
    store.heartbeat(node_id, Heartbeat(jobs=[]), T0 + 1)
    assert store.get_job(job_id).job.status == "running"
    # A v1.0 heartbeat reports nothing, so nothing is judged.
    store.heartbeat(node_id, Heartbeat(), T0 + 30)
    assert store.get_job(job_id).job.status == "running"
    store.heartbeat(node_id, Heartbeat(jobs=[]), T0 + 31)
    detail = store.get_job(job_id)
    assert detail.job.status == "pending" and detail.job.retry_count == 0
    assert detail.attempts[0].outcome == "released"


def test_tally_counts_jobs_by_status_and_submitted_priority(store: Store) -> None:
    jobs(store, 2, priority="high")
    (low,) = jobs(store, priority="low")
    jobs(store, requirements=Requirements(gpu=True))
    node_id = node(store)
    claimed = store.claim(node_id, T0)
    assert claimed is not None and claimed.priority == 10
    store.cancel(low, T0)
    tally = {(t.status, t.priority, t.unschedulable): t.jobs for t in store.tally_jobs()}
    assert tally == {
        ("running", 10, False): 1,
        ("pending", 10, False): 1,
        ("canceled", 0, False): 1,
        ("pending", 5, True): 1,
    }


def test_ids_with_prefix_finds_what_a_short_id_stands_for(store: Store) -> None:
    job_ids = jobs(store, 3)
    node_id = node(store)
    assert store.ids_with_prefix("job", job_ids[0][:8], 2) == [job_ids[0]]
    assert store.ids_with_prefix("job", "", 5) == sorted(job_ids)
    assert store.ids_with_prefix("job", job_ids[0] + "x", 2) == []
    assert store.ids_with_prefix("node", node_id[:4], 2) == [node_id]
    assert store.ids_with_prefix("node", job_ids[0], 2) == []


def test_finished_jobs_are_read_by_completion_time_and_only_they_can_be_deleted(
    store: Store,
) -> None:
    early, late, waiting = jobs(store, 3)
    node_id = node(store)
    for job_id, now in ((early, T0 + 10), (late, T0 + 20)):
        claimed = store.claim(node_id, now - 1)
        assert claimed is not None and claimed.id == job_id
        store.submit_result(result(job_id, node_id, 1, metrics={"fps": 9.5}), now)
    found = store.finished_between(T0, T0 + 15, 10, 0)
    assert [d.job.id for d in found] == [early]
    assert found[0].result is not None and found[0].result.metrics == {"fps": 9.5}
    assert found[0].attempts[0].outcome == "completed"
    assert [d.job.id for d in store.finished_between(T0, T0 + 30, 1, 1)] == [late]
    assert store.delete_finished([early, waiting, "no-such-job"]) == 1
    with pytest.raises(NotFound):
        store.get_job(early)
    assert store.get_job(waiting).job.status == "pending"
    assert store.list_results(early, None, 0) == []
