"""The metrics dict: every key present, every missing value explained, figures never guessed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from ffleet.agent.child_process import ChildExit
from ffleet.agent.metrics import (
    Metrics,
    quality_score,
    ratio,
    record_child,
    record_energy,
    record_progress,
)
from ffleet.agent.progress import ProgressParser
from ffleet.scenarios import build_job_spec

SPEC = build_job_spec("320x240", {"duration": 2})  # 30 fps
FINISHED = ChildExit(
    exit_code=0,
    wall_s=2.0,
    user_s=3.0,
    system_s=1.0,
    peak_rss_bytes=50_000_000,
    stderr_tail="",
    stopped=None,
    permanent=False,
)


def child(**overrides: Any) -> ChildExit:
    return dataclasses.replace(FINISHED, **overrides)


def test_ratio_is_none_when_it_cannot_be_computed() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(3.0, None) is None
    assert ratio(3.0, 0.0) is None
    assert ratio(3.0, -1.0) is None


def test_finish_explains_every_missing_measurement_and_fills_the_legacy_keys() -> None:
    metrics = Metrics()
    metrics.set("energy_joules", None, "no RAPL here")
    record_child(metrics, child())

    final = metrics.finish("FFmpeg did not run")

    unavailable = final.pop("unavailable")
    assert isinstance(unavailable, dict)
    assert unavailable["energy_joules"] == "no RAPL here"
    assert unavailable["frames"] == "FFmpeg did not run"
    assert {key for key, value in final.items() if value is None} >= set(unavailable)
    assert "wall_seconds" not in unavailable and "encoder" not in unavailable
    assert final["duration"] == final["wall_seconds"] == 2.0
    assert final["memory_usage"] == final["peak_rss_bytes"] == 50_000_000
    assert final["cpu_usage"] == final["cpu_utilization_percent"] == 200.0
    assert final["cpu_utilization_cores"] == 2.0


def test_a_value_set_later_clears_its_reason() -> None:
    metrics = Metrics()
    metrics.set("frames", None, "not yet")
    metrics.set("frames", 10)

    final = metrics.finish("default")

    unavailable = final["unavailable"]
    assert isinstance(unavailable, dict) and "frames" not in unavailable


def test_missing_rusage_is_explained() -> None:
    metrics = Metrics()
    record_child(metrics, child(user_s=None, system_s=None, peak_rss_bytes=None))

    unavailable = metrics.finish("default")["unavailable"]

    assert isinstance(unavailable, dict)
    for key in ("cpu_user_seconds", "cpu_utilization_percent", "peak_rss_bytes"):
        assert "rusage" in unavailable[key]


def test_file_output_gives_size_fps_and_bitrate(tmp_path: Path) -> None:
    encoded = tmp_path / "out.mp4"
    encoded.write_bytes(b"x" * 25_000)
    parser = ProgressParser(SPEC, None)
    for line in ("frame=60", "speed=4x", "total_size=1"):
        parser.feed(line)
    metrics = Metrics()
    record_child(metrics, child(wall_s=0.5))

    record_progress(metrics, SPEC, parser, encoded)

    values = metrics.values
    assert values["frames"] == 60 and values["fps"] == 120.0 and values["speed"] == 4.0
    assert values["output_bytes"] == 25_000  # the file, not FFmpeg's total_size
    assert values["bitrate_bps"] == 100_000  # 200 kbit over 2 s of media


def test_stream_output_takes_ffmpegs_byte_count_and_a_lost_file_is_explained(
    tmp_path: Path,
) -> None:
    parser = ProgressParser(SPEC, None)
    parser.feed("total_size=5000")
    stream = Metrics()
    record_child(stream, child())
    record_progress(stream, SPEC, parser, None)
    assert stream.values["output_bytes"] == 5000
    assert stream.values["bitrate_bps"] is None  # no frame count: no media duration

    missing = Metrics()
    record_child(missing, child())
    record_progress(missing, SPEC, parser, tmp_path / "never-written.mp4")
    assert missing.values["output_bytes"] is None
    assert missing.reasons["output_bytes"] == "FFmpeg wrote no output file"


def test_energy_gives_average_power() -> None:
    metrics = Metrics()
    record_child(metrics, child(wall_s=4.0))
    record_energy(metrics, 100.0, None)
    assert metrics.values["avg_power_watts"] == 25.0

    unmeasured = Metrics()
    record_child(unmeasured, child())
    record_energy(unmeasured, None, "RAPL is not readable")
    assert unmeasured.reasons["avg_power_watts"] == "RAPL is not readable"


@pytest.mark.parametrize(
    ("metric", "stderr", "score"),
    [
        ("psnr", "[Parsed_psnr_0] PSNR y:40.1 u:42 v:43 average:41.25 min:39 max:44\n", 41.25),
        ("ssim", "[Parsed_ssim_0] SSIM Y:0.97 (15) U:0.98 V:0.98 All:0.975 (16.0)\n", 0.975),
        ("vmaf", "[libvmaf] VMAF score: 93.5\n", 93.5),
    ],
)
def test_quality_score_is_read_from_the_pass_output(metric: str, stderr: str, score: float) -> None:
    assert quality_score(metric, "noise\n" + stderr) == (score, None)


def test_quality_score_says_why_it_is_missing() -> None:
    assert quality_score("vmaf", "no score here") == (None, "the vmaf pass printed no score")
    infinite = "PSNR y:inf u:inf v:inf average:inf min:inf max:inf"
    value, why = quality_score("psnr", infinite)
    assert value is None and why is not None and "infinite" in why
