"""A refused input and a stalled FFmpeg, end to end: a real master, real agents, real FFmpeg.

The executor's own tests (test_measurement.py) show the refusal and the stall on one machine;
these show what the fleet makes of them: a node whose input file differs from the pinned hash,
or that a job is too big for, never gets the job again, the job says why it is unschedulable
until a node that can run it joins, and a stopped FFmpeg is killed as stalled and its job
retried.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import imageio_ffmpeg  # type: ignore[import-untyped]
import pytest

from ffleet.agent.file_hashes import FileHashes

from .conftest import Fleet, wait_until

pytestmark = pytest.mark.integration

FFMPEG: str = imageio_ffmpeg.get_ffmpeg_exe()


def _clip(path: Path, pattern: str) -> str:
    """A one-second 64x64 H.264 clip of `pattern` (a lavfi source) at `path`; its SHA-256."""
    source = ["-f", "lavfi", "-i", f"{pattern}=size=64x64:duration=1"]
    encode = ["-pix_fmt", "yuv420p", "-c:v", "libx264", str(path)]
    subprocess.run([FFMPEG, "-v", "error", "-y", *source, *encode], check=True, timeout=60)
    return FileHashes().sha256(path)[0]


def test_a_node_whose_input_differs_refuses_and_a_node_that_matches_runs_it(
    fleet: Fleet, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    clip = inputs / "clip.mp4"
    wanted = _clip(clip, "testsrc2")
    other = _clip(clip, "smptebars")  # what the first node's file holds
    master = fleet.master()
    first = fleet.agent(master, name="first", extra_args=["--input-dir", str(inputs)])
    parameters = {"duration": 1, "input": str(clip), "input_sha256": wanted}
    job = master.submit("64x64-h264", parameters=parameters, max_attempts=1)

    def refused() -> dict[str, object] | None:
        detail = master.job(job["id"])
        return detail if detail["unschedulable_reason"] else None

    detail = wait_until(refused, timeout=60, message=lambda: f"a refusal: {master.job(job['id'])}")
    assert detail["status"] == "pending" and detail["avoid_nodes"] == [first.node_id]
    (attempt,) = detail["attempts"]
    error = f"has SHA-256 {other}, not the pinned {wanted}"
    assert attempt["outcome"] == "failed" and error in attempt["error"]
    assert detail["unschedulable_reason"].startswith("every node that can run it refused it (")
    assert f"{first.node_id[:8]}: " in detail["unschedulable_reason"]
    (verdict,) = master.api.get(f"/jobs/{job['id']}/explain").json()["nodes"]
    assert verdict["verdict"] == "refused" and error in verdict["reason"]

    assert _clip(clip, "testsrc2") == wanted  # the file now holds what the job pins
    second = fleet.agent(master, name="second", extra_args=["--input-dir", str(inputs)])
    done = master.wait_job(job["id"], ["completed", "failed"])
    assert done["status"] == "completed", done
    assert done["node_id"] == second.node_id and done["unschedulable_reason"] is None
    assert done["result"]["metrics"]["input"]["sha256"] == wanted


def test_a_job_too_big_for_the_only_agent_is_refused_there_and_unschedulable(
    fleet: Fleet,
) -> None:
    master = fleet.master()
    small = fleet.agent(master, extra_args=["--max-job-memory", "64"])  # MiB: below any job
    job = master.submit("160x90-h264", parameters={"duration": 1})

    def refused() -> dict[str, object] | None:
        detail = master.job(job["id"])
        return detail if detail["unschedulable_reason"] else None

    detail = wait_until(refused, timeout=60, message=lambda: f"a refusal: {master.job(job['id'])}")
    assert detail["status"] == "pending" and detail["retry_count"] == 0
    assert detail["avoid_nodes"] == [small.node_id]
    assert "(--max-job-memory)" in detail["attempts"][0]["error"]
    assert f"{small.node_id[:8]}: This job needs about" in detail["unschedulable_reason"]
    assert not small.ffmpeg_pids()


def test_a_stopped_ffmpeg_is_killed_as_stalled_and_the_job_retried(fleet: Fleet) -> None:
    master = fleet.master(extra_args=["--backoff-base", "100ms", "--backoff-cap", "200ms"])
    agent = fleet.agent(master)
    job = master.submit(
        "160x90-h264", parameters={"duration": 600}, stall_timeout_s=1.5, max_attempts=2
    )

    def encoding() -> list[int] | None:
        progress = master.job(job["id"]).get("progress") or {}
        pids = agent.ffmpeg_pids()
        return pids if (progress.get("frame") or 0) > 0 and pids else None

    (ffmpeg,) = wait_until(
        encoding, timeout=60, message=lambda: f"progress: {master.job(job['id'])}"
    )
    os.kill(ffmpeg, signal.SIGSTOP)  # as a hung driver or a dead network input would leave it

    def retried() -> dict[str, object] | None:
        detail = master.job(job["id"])
        return detail if detail["attempt"] == 2 and detail["status"] == "running" else None

    detail = wait_until(retried, timeout=60, message=lambda: f"a retry: {master.job(job['id'])}")
    first = detail["attempts"][0]
    assert first["outcome"] == "failed"
    assert re.fullmatch(r"stalled at frame \d+ \(\d+ s without progress\)", first["error"])
    assert ffmpeg not in agent.ffmpeg_pids()  # the stopped one was killed
    assert master.api.post(f"/jobs/{job['id']}/cancel").status_code == 200
    assert master.wait_job(job["id"], ["canceled"])["status"] == "canceled"
