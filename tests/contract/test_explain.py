"""Why is my job pending? Every node's first unmet need, on every backend, by the claim's rules."""

from __future__ import annotations

from ffleet.models import JobRequest, NodeRegistration, Requirements, ResultSubmission, rfc3339
from ffleet.store import SchedulingPolicy, Store

T0 = 1_800_000_000.0


def node(store: Store, now: float = T0, **fields: object) -> str:
    fields.setdefault("cpu_threads", 8)
    fields.setdefault("ram_bytes", 16 << 30)
    fields.setdefault("slots", 1)
    fields.setdefault("encoders", ["libx264"])
    return store.register_node(NodeRegistration(**fields), now).id  # type: ignore[arg-type]


def job(store: Store, now: float = T0, **fields: object) -> str:
    (created,) = store.create_jobs([JobRequest(scenario="360p-h264", **fields)], now)  # type: ignore[arg-type]
    return created.id


def verdicts(store: Store, job_id: str, now: float) -> dict[str, tuple[str, str]]:
    return {v.node_id: (v.verdict, v.reason) for v in store.explain(job_id, now).nodes}


def test_a_job_queued_before_any_node_says_why_once_nodes_join(store: Store) -> None:
    gpu_job = job(store, requirements=Requirements(gpu=True))
    assert store.get_job(gpu_job).job.unschedulable_reason == "no node is registered yet"
    assert store.explain(gpu_job, T0).summary == "no node is registered yet"

    cpu = node(store)

    reason = store.get_job(gpu_job).job.unschedulable_reason
    assert reason is not None and f"{cpu[:8]} lacks a GPU" in reason
    assert verdicts(store, gpu_job, T0) == {cpu: ("lacks", "needs a GPU")}
    assert "no registered node can run it" in store.explain(gpu_job, T0).summary
    node(store, has_gpu=True, gpu_type="NVIDIA L4")
    assert store.get_job(gpu_job).job.unschedulable_reason is None


def test_each_node_names_the_first_thing_that_keeps_it_away(
    store: Store, policy: SchedulingPolicy
) -> None:
    later = T0 + policy.node_timeout_s + 1
    lacking = node(store, now=later, ram_bytes=1 << 30)
    silent = node(store, now=T0)  # its last heartbeat is a node timeout old by `later`
    draining = node(store, now=later)
    store.set_draining(draining, True)
    busy = node(store, now=later)
    filler = job(store, now=later)
    claimed = store.claim(busy, later)
    assert claimed is not None and claimed.id == filler
    waiting = job(store, now=later, requirements=Requirements(min_ram_bytes=8 << 30))

    found = verdicts(store, waiting, later)

    assert found[lacking] == ("lacks", f"needs at least {8 << 30} bytes of RAM")
    assert found[silent][0] == "offline"
    assert found[draining][0] == "draining"
    assert found[busy] == ("busy", "busy: all 1 slot(s) full")
    summary = store.explain(waiting, later).summary
    assert summary == "waiting: every node that could run it is offline or draining or busy"


def test_an_eligible_node_says_how_many_jobs_are_ahead(store: Store) -> None:
    free = node(store)
    first = job(store, priority="high")
    second = job(store, priority="high")
    low = job(store, priority="low")

    assert store.explain(first, T0).summary.startswith("next in line")
    assert store.explain(second, T0).ahead == 1
    explained = store.explain(low, T0)
    assert explained.ahead == 2
    assert explained.summary.startswith("behind 2 job(s)")
    assert verdicts(store, low, T0) == {
        free: ("eligible", f"would claim job {first[:8]} first (ahead of it in its queue)")
    }
    assert verdicts(store, first, T0) == {free: ("next", "would claim it at its next claim")}


def test_backoff_and_deferral_say_until_when(store: Store) -> None:
    plain = node(store, labels={"rack": "a"})
    preferred = node(store, labels={"rack": "b"})
    start = T0 + 600
    later = job(store, not_before=rfc3339(start))
    picky = job(store, affinity={"rack": "b"})

    assert verdicts(store, later, T0)[plain] == ("backoff", f"not to start until {rfc3339(start)}")
    deferred = verdicts(store, picky, T0 + 1)
    assert deferred[plain][0] == "deferred"
    assert deferred[plain][1].endswith(f"until {rfc3339(T0 + 10)}")
    assert deferred[preferred][0] == "next"


def test_a_job_every_capable_node_refused_is_unschedulable_until_another_joins(
    store: Store,
) -> None:
    first = node(store, hostname="first")
    second = node(store, hostname="second")
    waiting = job(store, max_attempts=1)  # no requirements: every node could run it
    for worker, attempt in ((first, 1), (second, 2)):
        claimed = store.claim(worker, T0)
        assert claimed is not None and claimed.id == waiting
        refusal = ResultSubmission(
            job_id=waiting,
            node_id=worker,
            status="failed",
            attempt=attempt,
            error=f"input differs on {worker[:8]}",
            wrong_node=True,
        )
        queued = store.submit_result(refusal, T0).job
        assert queued.status == "pending" and queued.retry_count == 0  # it never ran

    reason = store.get_job(waiting).job.unschedulable_reason
    assert reason is not None and reason.startswith("every node that can run it refused it (")
    for worker in (first, second):
        assert f"{worker[:8]}: input differs on {worker[:8]}" in reason
    explained = store.explain(waiting, T0)
    assert verdicts(store, waiting, T0)[first] == (
        "refused",
        f"refused it: input differs on {first[:8]}",
    )
    assert explained.summary.startswith("no registered node will run it: ")
    assert f"first refused it: input differs on {first[:8]}" in explained.summary
    store.register_node(NodeRegistration(id=first, hostname="first", ram_bytes=16 << 30), T0)
    assert store.get_job(waiting).job.unschedulable_reason == reason  # a refuser stays one
    third = node(store, hostname="third")
    assert store.get_job(waiting).job.unschedulable_reason is None
    claimed = store.claim(third, T0)
    assert claimed is not None and claimed.id == waiting


def test_a_deferral_for_a_measured_node_names_it(store: Store) -> None:
    slow, fast = node(store, hostname="slow"), node(store, hostname="fast")
    for worker, fps in ((slow, 40.0), (fast, 160.0)):
        ran = job(store)
        store.claim(worker, T0)
        metrics = {"encoder": "libx264", "frames": 150, "fps": fps}
        done = ResultSubmission(
            job_id=ran, node_id=worker, status="completed", attempt=1, metrics=metrics
        )
        store.submit_result(done, T0)
    placed = job(store, placement="fastest")
    assert verdicts(store, placed, T0 + 1)[slow] == (
        "deferred",
        "deferred for node fast, idle and measured faster for this scenario "
        f"(placement: fastest), until {rfc3339(T0 + 10)}",
    )


def test_a_job_that_is_not_pending_says_where_it_is(store: Store) -> None:
    worker = node(store)
    running = job(store)
    store.claim(worker, T0)
    explained = store.explain(running, T0)
    assert explained.status == "running" and explained.nodes == []
    assert explained.summary == f"not pending: running on node {worker}"
