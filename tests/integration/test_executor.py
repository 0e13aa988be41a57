"""The executor against the real FFmpeg: tiny encodes (160x90 / 320x240, at most 1 s)."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import imageio_ffmpeg  # type: ignore[import-untyped]
import psutil
import pytest

from ffleet.agent.executor import Execution, execute
from ffleet.agent.hardware import usable_encoders
from ffleet.agent.meters import GpuSampler
from ffleet.local_run import run_local
from ffleet.models import Progress
from ffleet.scenarios import JobSpec, build_job_spec

FFMPEG: str = imageio_ffmpeg.get_ffmpeg_exe()
SOFTWARE = ("libx264", "libx265", "libvpx-vp9", "libsvtav1")


@pytest.fixture(scope="module")
def encoders() -> frozenset[str]:
    return frozenset(usable_encoders(FFMPEG))


def _run(
    spec: JobSpec,
    work_dir: Path,
    encoders: frozenset[str],
    *,
    timeout_s: float = 60,
    cancel: threading.Event | None = None,
    progress: list[Progress] | None = None,
    allowed: tuple[Path, ...] = (),
) -> Execution:
    return execute(
        spec,
        ffmpeg=FFMPEG,
        encoders=encoders,
        work_dir=work_dir,
        timeout_s=timeout_s,
        cancel=cancel or threading.Event(),
        on_progress=None if progress is None else progress.append,
        allowed_input_dirs=allowed,
    )


def _ffmpeg_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if "ffmpeg" in p.name()]


# --- real FFmpeg ------------------------------------------------------------------------


@pytest.mark.integration
def test_encode_is_measured(tmp_path: Path, encoders: frozenset[str]) -> None:
    spec = build_job_spec("it-160x90-h264", {"duration": 1})
    progress: list[Progress] = []
    result = _run(spec, tmp_path, encoders, progress=progress)
    assert result.status == "completed", result.error
    assert result.error is None
    m = result.metrics
    assert m["exit_code"] == 0 and m["encoder"] == "libx264"
    assert m["frames"] == 30
    wall, user, system = m["wall_seconds"], m["cpu_user_seconds"], m["cpu_system_seconds"]
    assert isinstance(wall, float) and isinstance(user, float) and isinstance(system, float)
    assert wall > 0 and user + system > 0
    assert m["cpu_utilization_percent"] == pytest.approx(100 * (user + system) / wall)
    assert isinstance(m["peak_rss_bytes"], int) and m["peak_rss_bytes"] > 1_000_000
    assert isinstance(m["output_bytes"], int) and m["output_bytes"] > 0
    assert m["bitrate_bps"] == round(m["output_bytes"] * 8 / 1.0)
    assert isinstance(m["speed"], float) and m["speed"] > 0
    assert m["fps"] == pytest.approx(30 / wall)
    assert m["cpu_usage"] == m["cpu_utilization_percent"]
    assert m["memory_usage"] == m["peak_rss_bytes"] and m["duration"] == wall
    assert isinstance(m["ffmpeg_version"], str) and m["ffmpeg_version"]
    argv = m["ffmpeg_argv"]
    assert isinstance(argv, list) and argv[0] == FFMPEG and "libx264" in argv
    unavailable = m["unavailable"]
    assert isinstance(unavailable, dict)
    assert set(unavailable) == {key for key, value in m.items() if value is None} - {
        "quality_metric",
        "quality_ffmpeg_argv",
        "stderr_tail",
        "output_path",
    }
    assert "quality=none" in unavailable["quality_score"]
    assert "libx264" in unavailable["gpu_power_watts"]
    if m["energy_joules"] is None:
        assert "RAPL" in unavailable["energy_joules"]
    assert list(tmp_path.iterdir()) == []  # output=null leaves nothing behind
    assert progress and progress[-1].frame == 30 and progress[-1].percent == 100
    efficiency = result.analyzer_output["efficiency"]
    assert isinstance(efficiency, dict) and efficiency["realtime_factor"] > 0


@pytest.mark.integration
@pytest.mark.parametrize(
    ("scenario", "extension", "quality"),
    [
        ("160x90-hevc", "mp4", "vmaf"),
        ("160x90-vp9", "webm", "ssim"),
        ("160x90-av1", "mp4", "psnr"),
    ],
)
def test_codecs_file_output_and_quality(
    tmp_path: Path, encoders: frozenset[str], scenario: str, extension: str, quality: str
) -> None:
    spec = build_job_spec(scenario, {"duration": 0.5, "output": "file", "quality": quality})
    result = _run(spec, tmp_path, encoders)
    assert result.status == "completed", result.error
    m = result.metrics
    kept = tmp_path / f"output.{extension}"
    assert m["output_path"] == str(kept)
    assert kept.stat().st_size == m["output_bytes"]
    assert m["frames"] == 15
    assert m["quality_metric"] == quality
    score = m["quality_score"]
    assert isinstance(score, float), m["unavailable"]
    low, high = {"psnr": (20, 99), "ssim": (0.5, 1.0), "vmaf": (20, 100)}[quality]
    assert low < score <= high
    assert isinstance(m["quality_ffmpeg_argv"], list)


@pytest.mark.integration
def test_file_input_is_scaled_and_checked(tmp_path: Path, encoders: frozenset[str]) -> None:
    media = tmp_path / "media"
    source = _run(build_job_spec("320x240", {"duration": 1, "output": "file"}), media, encoders)
    assert source.status == "completed", source.error
    spec = build_job_spec("160x90-h264", {"input": "output.mp4", "duration": 0.5})
    spec = dataclasses.replace(spec, quality="psnr")
    result = _run(spec, tmp_path / "work", encoders, allowed=(media,))
    assert result.status == "completed", result.error
    assert result.metrics["frames"] == 15
    argv = result.metrics["ffmpeg_argv"]
    assert isinstance(argv, list) and f"file:{media / 'output.mp4'}" in argv
    assert isinstance(result.metrics["quality_score"], float)

    outside = _run(
        dataclasses.replace(spec, input=str(tmp_path / "media" / ".." / "x.mp4")),
        tmp_path / "work",
        encoders,
        allowed=(media,),
    )
    assert outside.status == "failed" and not outside.retryable
    assert outside.error is not None and "outside" in outside.error
    assert outside.metrics["exit_code"] is None


@pytest.mark.integration
def test_unreadable_input_fails_for_good(tmp_path: Path, encoders: frozenset[str]) -> None:
    (tmp_path / "notes.mp4").write_text("not a video\n")
    spec = build_job_spec("160x90", {"duration": 0.5, "input": "notes.mp4"})
    result = _run(spec, tmp_path / "work", encoders, allowed=(tmp_path,))
    assert result.status == "failed"
    assert result.retryable is False
    tail = result.metrics["stderr_tail"]
    assert isinstance(tail, str) and "Invalid data found when processing input" in tail
    assert result.error is not None and "Invalid data found" in result.error
    assert result.metrics["exit_code"] not in (0, None)
    assert "did not complete" in str(result.analyzer_output["recommendation"])


@pytest.mark.integration
def test_encoder_that_cannot_open_fails_for_good(tmp_path: Path) -> None:
    """NVENC is compiled into this FFmpeg; without a usable NVIDIA GPU it refuses to open."""
    reading, _ = _gpu_present()
    if reading:
        pytest.skip("an NVIDIA GPU is present, so NVENC opens")
    spec = build_job_spec("160x90", {"duration": 0.5, "engine": "nvenc"})
    result = _run(spec, tmp_path, frozenset({"h264_nvenc"}))
    assert result.status == "failed"
    assert result.retryable is False
    tail = result.metrics["stderr_tail"]
    assert isinstance(tail, str) and "h264_nvenc" in tail
    assert result.metrics["encoder"] == "h264_nvenc"
    # The GPU sampler ran for the NVENC encoder and said why it has nothing.
    unavailable = result.metrics["unavailable"]
    assert isinstance(unavailable, dict) and "NVML" in unavailable["gpu_power_watts"]


def _gpu_present() -> tuple[bool, str | None]:
    sampler = GpuSampler()
    sampler.start()
    reading, reason = sampler.stop()
    return reading is not None, reason


@pytest.mark.integration
def test_unreachable_stream_is_retryable_and_key_redacted(
    tmp_path: Path, encoders: frozenset[str]
) -> None:
    spec = build_job_spec("160x90", {"duration": 0.5, "output": "rtmp://127.0.0.1:1/live/s3cret"})
    result = _run(spec, tmp_path, encoders)
    assert result.status == "failed"
    assert result.retryable is True  # connection refused: the server may come back
    assert "s3cret" not in repr(result.metrics) and "s3cret" not in str(result.error)
    assert "rtmp://127.0.0.1:1/live/<redacted>" in result.metrics["ffmpeg_argv"]  # type: ignore[operator]


@pytest.mark.integration
def test_endless_input_times_out(tmp_path: Path, encoders: frozenset[str]) -> None:
    spec = build_job_spec("320x240", {"duration": 3600})
    started = time.monotonic()
    result = _run(spec, tmp_path, encoders, timeout_s=2)
    elapsed = time.monotonic() - started
    assert result.status == "timeout"
    assert result.error == "timed out after 2 s"
    assert result.retryable is True  # as the master's reaper decides for its own timeouts
    assert elapsed < 10
    frames = result.metrics["frames"]
    assert isinstance(frames, int) and frames > 0
    assert _ffmpeg_children() == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_cancel_kills_ffmpeg(tmp_path: Path, encoders: frozenset[str]) -> None:
    spec = build_job_spec("320x240", {"duration": 3600})
    cancel = threading.Event()
    running = threading.Event()
    outcome: list[Execution] = []

    def work() -> None:
        outcome.append(
            execute(
                spec,
                ffmpeg=FFMPEG,
                encoders=encoders,
                work_dir=tmp_path,
                timeout_s=120,
                cancel=cancel,
                on_progress=lambda _: running.set(),
            )
        )

    worker = threading.Thread(target=work)
    worker.start()
    assert running.wait(30), "FFmpeg reported no progress"
    children = _ffmpeg_children()
    assert len(children) == 1
    pid = children[0].pid
    cancelled_at = time.monotonic()
    cancel.set()
    worker.join(30)
    assert not worker.is_alive()
    assert time.monotonic() - cancelled_at < 10
    assert outcome[0].status == "canceled" and outcome[0].error == "canceled"
    assert not psutil.pid_exists(pid)


@pytest.mark.integration
def test_run_local_returns_the_agent_result_shape(tmp_path: Path) -> None:
    result = run_local("local-160x90", {"duration": "0.5s"}, work_dir=tmp_path)
    assert set(result) == {
        "scenario",
        "parameters",
        "status",
        "metrics",
        "analyzer_output",
        "error",
    }
    assert result["status"] == "completed" and result["error"] is None
    assert result["parameters"] == {"duration": "0.5s"}
    metrics = result["metrics"]
    assert isinstance(metrics, dict) and metrics["frames"] == 15


def test_detected_software_encoders(encoders: frozenset[str]) -> None:
    assert set(SOFTWARE) <= encoders
    assert "h264_nvenc" not in encoders
