"""What a result says about how it was measured, with the real FFmpeg: repeats and their
spread, build and input identity, CPU pinning and nice, and stalls told apart from slowness."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import imageio_ffmpeg  # type: ignore[import-untyped]
import msgspec
import psutil
import pytest

from ffleet.agent.child_process import run_child
from ffleet.agent.executor import Execution, execute
from ffleet.agent.file_hashes import FileHashes
from ffleet.agent.progress import ProgressParser
from ffleet.models import Progress
from ffleet.result_schema import AnalyzerOutput, ResultMetrics
from ffleet.scenarios import JobSpec, build_job_spec

FFMPEG: str = imageio_ffmpeg.get_ffmpeg_exe()
ENCODERS = frozenset({"libx264"})
H264_OUT = ["-pix_fmt", "yuv420p", "-c:v", "libx264"]


def _execute(spec: JobSpec, work_dir: Path, **kwargs: object) -> Execution:
    return execute(
        spec,
        ffmpeg=FFMPEG,
        encoders=ENCODERS,
        work_dir=work_dir,
        timeout_s=120,
        cancel=threading.Event(),
        **kwargs,  # type: ignore[arg-type]
    )


def _ffmpeg_child() -> psutil.Process:
    return next(p for p in psutil.Process().children() if "ffmpeg" in p.name())


@pytest.mark.integration
def test_warmup_and_repeats_keep_every_run_and_their_spread(tmp_path: Path) -> None:
    spec = build_job_spec("160x90-h264", {"duration": 1, "warmup": 1, "repeats": 3})
    result = _execute(spec, tmp_path)
    assert result.status == "completed", result.error
    m = result.metrics
    runs = m["runs"]
    assert isinstance(runs, list) and len(runs) == 3 and m["warmup_runs"] == 1
    assert all(run["disturbed"] in (True, False) for run in runs)
    summary = m["summary"]
    assert isinstance(summary, dict)
    wall = summary["wall_seconds"]
    assert wall["n"] == 3 and wall["min"] <= wall["median"] <= wall["max"]
    assert wall["max"] == max(run["wall_seconds"] for run in runs)
    assert summary["bitrate_bps"]["cv"] == 0.0  # the same bytes every run
    assert m["noisy"] is bool(m["noisy_metrics"])
    assert m["wall_seconds"] == runs[-1]["wall_seconds"]  # top level: the last measured run
    # The OpenAPI document describes exactly what an agent sends.
    assert set(m) == set(ResultMetrics.__struct_fields__)
    msgspec.convert(m, ResultMetrics)
    assert set(result.analyzer_output) == set(AnalyzerOutput.__struct_fields__)
    msgspec.convert(result.analyzer_output, AnalyzerOutput)


@pytest.mark.integration
def test_a_result_names_the_build_the_input_and_the_node_conditions(tmp_path: Path) -> None:
    result = _execute(build_job_spec("160x90-h264", {"duration": 1}), tmp_path)
    m = result.metrics
    sha = m["ffmpeg_sha256"]
    assert isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)
    assert isinstance(m["ffmpeg_configuration"], str) and "--enable" in m["ffmpeg_configuration"]
    assert m["input"] == {
        "kind": "generated",
        "source": "testsrc2",
        "size": "160x90",
        "rate": 30,
        "duration_s": 1.0,
        "pixel_format": "yuv420p",
    }
    assert m["master_as_worker"] is False
    assert isinstance(m["load_average_start"], list) and len(m["load_average_start"]) == 3
    share = m["cpu_time_share"]
    assert share is None or 0 < share <= 1
    assert "cpu_governor_start" in m  # None where cpufreq is not exposed (VMs, containers)


@pytest.mark.integration
def test_a_pinned_input_hash_refuses_a_different_file_and_hashes_once(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    clip = inputs / "clip.mp4"
    subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=64x64:duration=1",
            *H264_OUT,
            str(clip),
        ],
        check=True,
        timeout=60,
    )
    hashes = FileHashes()
    digest, _ = hashes.sha256(clip)
    good = build_job_spec("64x64", {"duration": 1, "input": str(clip), "input_sha256": digest})
    done = _execute(good, tmp_path / "a", allowed_input_dirs=(inputs,), hashes=hashes)
    assert done.status == "completed", done.error
    assert done.metrics["input"] == {
        "kind": "file",
        "path": str(clip.resolve()),
        "bytes": clip.stat().st_size,
        "sha256": digest,
    }
    wrong = build_job_spec("64x64", {"duration": 1, "input": str(clip), "input_sha256": "0" * 64})
    refused = _execute(wrong, tmp_path / "b", allowed_input_dirs=(inputs,), hashes=hashes)
    assert refused.status == "failed" and refused.wrong_node and not refused.retryable
    assert refused.error is not None and f"has SHA-256 {digest}, not the pinned" in refused.error
    assert refused.metrics["exit_code"] is None  # FFmpeg never ran
    assert hashes.computed == 1  # the test's own call; both jobs found it cached


@pytest.mark.integration
def test_a_stopped_ffmpeg_is_killed_as_stalled_and_may_retry(tmp_path: Path) -> None:
    spec = build_job_spec("160x90-h264", {"duration": 600})
    stopped: list[int] = []

    def stop_once(progress: Progress) -> None:
        if not stopped:  # as a hung driver or a dead network input would leave it
            child = _ffmpeg_child()
            stopped.append(child.pid)
            os.kill(child.pid, signal.SIGSTOP)

    began = time.monotonic()
    result = _execute(spec, tmp_path, on_progress=stop_once, stall_timeout_s=1.5)
    assert stopped, "FFmpeg never reported progress"
    assert result.status == "failed" and result.retryable
    assert result.error is not None
    assert re.fullmatch(r"stalled at frame \d+ \(\d+ s without progress\)", result.error)
    assert time.monotonic() - began < 30  # found in seconds, not at the hard timeout
    assert not psutil.pid_exists(stopped[0]) or psutil.Process(stopped[0]).status() == "zombie"


@pytest.mark.integration
def test_a_slow_but_advancing_ffmpeg_is_not_stalled() -> None:
    spec = build_job_spec("64x64@4", {"duration": 3})
    parser = ProgressParser(spec, None)
    argv = [FFMPEG, "-hide_banner", "-nostats", "-progress", "pipe:1", "-re"]
    argv += ["-f", "lavfi", "-i", "testsrc2=size=64x64:rate=4:duration=3", "-f", "null", "-"]
    child = run_child(
        argv,
        deadline=time.monotonic() + 60,
        cancel=threading.Event(),
        on_line=parser.feed,
        stalled=lambda: parser.stalled_for() >= 1.5,
    )
    assert child.stopped is None and child.exit_code == 0
    assert child.wall_s >= 2.0  # paced: 4 frames a second for 3 s, after a 0.5 s burst
    assert parser.frame == 12


@pytest.mark.integration
def test_cpu_pinning_and_nice_reach_ffmpeg_and_are_recorded(tmp_path: Path) -> None:
    cpu = min(os.sched_getaffinity(0))
    seen: list[tuple[set[int], int]] = []

    def look(progress: Progress) -> None:
        if not seen:
            child = _ffmpeg_child()
            seen.append((os.sched_getaffinity(child.pid), child.nice()))

    spec = build_job_spec("160x90-h264", {"duration": 60, "cpu_affinity": [cpu], "nice": 7})
    result = _execute(spec, tmp_path, on_progress=look)
    assert result.status == "completed", result.error
    assert seen == [({cpu}, 7)]
    assert result.metrics["cpu_affinity"] == [cpu] and result.metrics["nice"] == 7
    outside = build_job_spec("160x90", {"duration": 1, "cpu_affinity": [4095]})
    refused = _execute(outside, tmp_path / "x")
    assert refused.status == "failed" and not refused.retryable
    assert refused.error is not None and "4095" in refused.error
