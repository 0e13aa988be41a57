"""The splitter's decisions over a real store, without FFmpeg: what it does to a parent whose
child failed, whose cancel was asked for, or whose children are halfway."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ffleet.blobs import DirectoryBlobStore
from ffleet.master import splitter as splitter_module
from ffleet.master.splitter import SplitRefused, Splitter, check_request
from ffleet.models import (
    Heartbeat,
    JobRequest,
    NodeRegistration,
    Progress,
    ProgressReport,
    ResultSubmission,
)
from ffleet.store import SqlStore
from ffleet.store.splits import SplitState

T0 = 1_800_000_000.0
SOURCE = "blob:sha256:" + "a" * 64


@pytest.fixture
def store() -> Iterator[SqlStore]:
    opened = SqlStore("memory")
    yield opened
    opened.close()


@pytest.fixture
def splitter(store: SqlStore, tmp_path: Path) -> Splitter:
    return Splitter(store, DirectoryBlobStore(tmp_path / "blobs"), ffmpeg="ffmpeg")


def planned(store: SqlStore, segments: int = 2) -> tuple[str, list[str]]:
    request = JobRequest(scenario="320x240-h264", parameters={"input": SOURCE})
    parent = store.create_split(request, 5.0, T0)
    plan = {
        "segments": [
            {"index": i, "start_s": 5.0 * i, "end_s": 5.0 * i + 5} for i in range(segments)
        ]
    }
    children = [
        JobRequest(scenario="320x240-h264", parameters={"input": SOURCE}) for _ in range(segments)
    ]
    created = store.plan_split(parent.id, 1, plan, children, T0)
    return parent.id, [job.id for job in created]


def step(splitter: Splitter, store: SqlStore) -> None:
    for state in store.running_splits():
        splitter._step(state, lambda count: None)


def worker(store: SqlStore) -> str:
    return store.register_node(NodeRegistration(cpu_threads=4, ram_bytes=1 << 30, slots=4), T0).id


def test_a_child_failing_for_good_fails_the_parent_and_cancels_the_rest(
    store: SqlStore, splitter: Splitter
) -> None:
    parent_id, (first, second) = planned(store)
    node = worker(store)
    claimed = store.claim(node, T0 + 1)
    assert claimed is not None and claimed.id == first
    failure = ResultSubmission(
        job_id=first, node_id=node, attempt=1, status="failed", error="encoder exploded"
    )
    store.submit_result(failure, T0 + 2)
    step(splitter, store)
    parent = store.get_job(parent_id).job
    assert parent.status == "failed"
    assert parent.error == f"segment 0 (job {first}) failed: attempt 1: encoder exploded"
    assert store.get_job(second).job.status == "canceled"


def test_canceling_the_parent_cancels_every_child(store: SqlStore, splitter: Splitter) -> None:
    parent_id, (first, second) = planned(store)
    node = worker(store)
    store.claim(node, T0 + 1)  # the first child runs: it is told through its agent's heartbeat
    store.cancel(parent_id, T0 + 2)
    step(splitter, store)
    assert store.get_job(parent_id).job.status == "canceled"
    assert store.get_job(first).job.cancel_requested
    assert store.get_job(second).job.status == "canceled"


def test_the_parent_shows_the_progress_of_its_children(store: SqlStore, splitter: Splitter) -> None:
    parent_id, (first, _) = planned(store)
    node = worker(store)
    store.claim(node, T0 + 1)
    report = ProgressReport(job_id=first, attempt=1, progress=Progress(percent=50.0))
    store.heartbeat(node, Heartbeat(jobs=[report]), T0 + 2)
    step(splitter, store)
    progress = store.get_job(parent_id).job.progress
    assert progress is not None and progress.percent == 25.0


def test_only_a_blob_input_and_a_file_output_can_be_split() -> None:
    ok = JobRequest(scenario="320x240-h264", parameters={"input": SOURCE})
    check_request(ok, has_blob=True)
    with pytest.raises(SplitRefused, match="upload it first"):
        check_request(ok, has_blob=False)
    with pytest.raises(SplitRefused, match="blob:sha256"):
        check_request(JobRequest(scenario="320x240-h264", parameters={"input": "/x.mp4"}), True)
    streaming = {"input": SOURCE, "output": "rtmp://example.invalid/live/key"}
    with pytest.raises(SplitRefused, match="output"):
        check_request(JobRequest(scenario="320x240-h264", parameters=streaming), True)


class CountedPasses(SqlStore):
    """The store, counting the splitter's passes (each is one `running_splits` read)."""

    passes = 0

    def running_splits(self) -> list[SplitState]:
        self.passes += 1
        return super().running_splits()


def test_a_result_costs_a_pass_only_when_its_job_may_be_a_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(splitter_module, "ACTIVE_PASS_S", 3600.0)  # passes come from wakes only
    monkeypatch.setattr(splitter_module, "IDLE_PASS_S", 3600.0)
    store = CountedPasses("memory")
    splitter = Splitter(store, DirectoryBlobStore(tmp_path / "blobs"), ffmpeg="ffmpeg")
    other = store.create_jobs([JobRequest(scenario="320x240-h264")], T0)[0].id

    async def passes_after(wake: Callable[[], None]) -> int:
        before = store.passes
        wake()
        for _ in range(5):  # a woken splitter passes within a loop turn or two
            await asyncio.sleep(0)
        return store.passes - before

    async def scenario() -> None:
        task = asyncio.get_running_loop().create_task(splitter.run(lambda count: None))
        assert await passes_after(splitter.wake) == 1  # no split job runs
        assert await passes_after(lambda: splitter.result_stored(other)) == 0
        parent = store.create_split(
            JobRequest(scenario="320x240-h264", parameters={"input": SOURCE}), 5.0, T0
        )
        splitter._busy.add(parent.id)  # its cut is under way (no FFmpeg here)
        assert await passes_after(splitter.wake) == 1
        # unplanned: its children, made here or by another master, are not known yet
        assert await passes_after(lambda: splitter.result_stored(other)) == 1
        plan = {"segments": [{"index": 0, "start_s": 0.0, "end_s": 5.0}]}
        child = JobRequest(scenario="320x240-h264", parameters={"input": SOURCE})
        (created,) = store.plan_split(parent.id, 1, plan, [child], T0)
        assert await passes_after(splitter.wake) == 1
        assert await passes_after(lambda: splitter.result_stored(other)) == 0
        assert await passes_after(lambda: splitter.result_stored(created.id)) == 1
        task.cancel()

    try:
        asyncio.run(scenario())
    finally:
        store.close()
