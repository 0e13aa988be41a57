"""Measured efficiency and placement by it, on recorded results, on every store backend.

Two idle CPU nodes; results recorded for one scenario family make one of them measurably
faster (or cheaper per frame). A job with `placement` waits for the better node only within
the preference window, never longer, and a node a job's agent refused never gets it again.
"""

from __future__ import annotations

import pytest

from ffleet.models import Heartbeat, JobRequest, NodeRegistration, Requirements, ResultSubmission
from ffleet.scheduling import PREFERENCE_WINDOW_S
from ffleet.store import Store

T0 = 1_800_000_000.0
ENCODERS = ["libx264", "libx265"]
FAMILY = "h264/libx264/720p"


def _nodes(store: Store) -> tuple[str, str]:
    slow = store.register_node(NodeRegistration(encoders=ENCODERS, cpu_threads=2), T0).id
    fast = store.register_node(NodeRegistration(encoders=ENCODERS, cpu_threads=8), T0).id
    return slow, fast


def _record(store: Store, node_id: str, now: float, **metrics: object) -> None:
    """Run one 720p h264 job on `node_id` and report `metrics` for it."""
    (job,) = store.create_jobs([JobRequest(scenario="720p-h264")], now)
    claimed = store.claim(node_id, now)
    assert claimed is not None and claimed.id == job.id
    full = {"encoder": "libx264", "frames": 150, **metrics}
    store.submit_result(
        ResultSubmission(
            job_id=job.id, node_id=node_id, status="completed", attempt=1, metrics=full
        ),
        now,
    )


def _placed(store: Store, placement: str, now: float) -> str:
    """Submit a job asking for `placement`, every node having just beaten (all are alive)."""
    for node in store.list_nodes():
        store.heartbeat(node.id, Heartbeat(), now)
    request = JobRequest(scenario="720p-h264", placement=placement)  # type: ignore[arg-type]
    (job,) = store.create_jobs([request], now)
    return job.id


def test_results_build_a_rolling_figure_per_node_and_family(store: Store) -> None:
    slow, _ = _nodes(store)
    _record(store, slow, T0, fps=100.0, cpu_seconds=3.0, energy_joules=30.0)
    _record(store, slow, T0 + 1, fps=200.0, cpu_seconds=6.0)
    _record(store, slow, T0 + 2, fps=1.0, disturbed=True)  # measured the neighbours: left out
    (figure,) = store.node_efficiency(slow)
    assert figure.family == FAMILY and figure.samples == 2
    assert figure.fps == 100 + 0.3 * (200 - 100)  # the same floating-point steps as Python's
    assert figure.cpu_seconds_per_frame == pytest.approx(0.02 + 0.3 * (0.04 - 0.02))
    assert figure.joules_per_frame == pytest.approx(0.2)  # measured once, kept
    repeated = {"summary": {"fps": {"mean": 50.0}, "cpu_seconds": {"mean": 1.5}}, "fps": 9.0}
    _record(store, slow, T0 + 3, **repeated)  # the mean over repeats counts, not the last run
    assert store.node_efficiency(slow)[0].fps == pytest.approx(130 + 0.3 * (50 - 130))


@pytest.mark.parametrize(
    ("placement", "slow_metrics", "fast_metrics"),
    [
        ("fastest", {"fps": 40.0}, {"fps": 160.0}),
        ("energy", {"fps": 1.0, "energy_joules": 300.0}, {"fps": 1.0, "energy_joules": 30.0}),
        ("energy", {"fps": 1.0, "cpu_seconds": 20.0}, {"fps": 1.0, "cpu_seconds": 5.0}),
    ],
    ids=["fastest", "energy-joules", "energy-cpu-seconds"],
)
def test_placement_waits_for_the_better_node_within_the_window(
    store: Store, placement: str, slow_metrics: dict[str, object], fast_metrics: dict[str, object]
) -> None:
    slow, fast = _nodes(store)
    _record(store, slow, T0, **slow_metrics)
    _record(store, fast, T0, **fast_metrics)
    job = _placed(store, placement, T0 + 1)
    assert store.claim(slow, T0 + 2) is None  # the better node is idle: it waits for it
    claimed = store.claim(fast, T0 + 3)
    assert claimed is not None and claimed.id == job
    done = ResultSubmission(job_id=job, node_id=fast, status="completed", attempt=1)
    store.submit_result(done, T0 + 4)  # the fast node is idle again
    # Never starved: once the window has passed, the worse node takes it.
    late = _placed(store, placement, T0 + 10)
    assert store.claim(slow, T0 + 11) is None
    taken = store.claim(slow, T0 + 10 + PREFERENCE_WINDOW_S)
    assert taken is not None and taken.id == late


def test_without_measurements_the_default_order_holds(store: Store) -> None:
    slow, fast = _nodes(store)
    _record(store, fast, T0, fps=500.0)  # only the other node is measured: no reason to wait
    job = _placed(store, "fastest", T0 + 1)
    claimed = store.claim(slow, T0 + 2)
    assert claimed is not None and claimed.id == job
    _record(store, slow, T0 + 3, fps=1.0)  # now measured, and far slower
    plain = _placed(store, "fastest", T0 + 4)
    assert store.claim(slow, T0 + 5) is None
    (unplaced,) = store.create_jobs([JobRequest(scenario="720p-h264")], T0 + 6)
    taken = store.claim(slow, T0 + 7)  # a job without `placement` never waits
    assert taken is not None and taken.id == unplaced.id
    assert store.get_job(plain).job.status == "pending"


def test_a_node_whose_input_differs_never_gets_the_job_again(store: Store) -> None:
    wrong, right = _nodes(store)
    (job,) = store.create_jobs([JobRequest(scenario="720p-h264", max_attempts=3)], T0)
    store.set_draining(right, True)
    assert store.claim(wrong, T0) is not None
    refused = ResultSubmission(
        job_id=job.id,
        node_id=wrong,
        status="failed",
        attempt=1,
        error="the input file differs from the pinned hash",
        wrong_node=True,
    )
    assert store.submit_result(refused, T0).job.status == "pending"
    assert store.get_job(job.id).job.avoid_nodes == [wrong]
    assert store.claim(wrong, T0 + 3600) is None
    verdicts = {v.node_id: v.reason for v in store.explain(job.id, T0 + 3600).nodes}
    assert "input file differs" in verdicts[wrong]
    store.set_draining(right, False)
    again = store.claim(right, T0 + 3600)
    assert again is not None and again.id == job.id and again.attempt == 2
    history = store.get_job(job.id).attempts
    assert history[0].error == "the input file differs from the pinned hash"


def test_a_build_no_node_has_is_explained(store: Store) -> None:
    store.register_node(NodeRegistration(encoders=ENCODERS, ffmpeg_sha256="ab" * 32), T0)
    wanted = Requirements(ffmpeg_sha256="cd" * 32)
    (job,) = store.create_jobs([JobRequest(scenario="360p", requirements=wanted)], T0)
    reason = job.unschedulable_reason
    assert reason is not None and f"the FFmpeg build with SHA-256 {'cd' * 6}" in reason
