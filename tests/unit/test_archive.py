"""The VictoriaMetrics archive's samples and its bounded queue (the push itself is tested
against a real server in tests/integration/test_archive.py)."""

from __future__ import annotations

import pytest

from ffleet.master import archive
from ffleet.master.archive import RESULT_METRICS, ResultArchive, figures, sample_lines
from ffleet.models import ResultSubmission
from ffleet.store import JobAfterResult

METRICS = {
    "fps": 120.0,
    "frames": 240,
    "cpu_user_seconds": 3.0,
    "cpu_system_seconds": 1.0,
    "energy_joules": 48.0,
    "quality_metric": "psnr",
    "quality_score": 41.5,
    "bitrate_bps": 800_000,
    "wall_seconds": 2.0,
    "encoder": "libx264",
    "ffmpeg_version": 'n7.1 "quoted"',
}


def job(scenario: str = "720p-h264") -> JobAfterResult:
    return JobAfterResult(
        id="j1",
        scenario=scenario,
        status="completed",
        started_at=None,
        completed_at=None,
        retry_count=0,
        error=None,
        not_before=None,
    )


def result(**metrics: object) -> ResultSubmission:
    return ResultSubmission(job_id="j1", node_id="n1", status="completed", metrics=metrics)


def test_figures_are_per_frame_where_the_dashboards_compare_them() -> None:
    assert figures(METRICS) == {
        "ffleet_result_fps": 120.0,
        "ffleet_result_cpu_seconds_per_frame": 4.0 / 240,
        "ffleet_result_energy_joules_per_frame": 0.2,
        "ffleet_result_quality_score": 41.5,
        "ffleet_result_bitrate_bps": 800_000.0,
        "ffleet_result_wall_seconds": 2.0,
    }
    assert set(figures(METRICS)) == set(RESULT_METRICS)
    # what was not measured is not sent (no energy without RAPL, nothing per frame of 0 frames)
    assert figures({"fps": 0.0, "frames": 0, "energy_joules": None}) == {"ffleet_result_fps": 0.0}


def test_a_sample_line_carries_escaped_labels_and_the_completion_time_in_ms() -> None:
    lines = sample_lines(result(**METRICS), job(), 1_800_000_000.25)
    assert lines[0] == (
        'ffleet_result_fps{codec="h264",encoder="libx264",ffmpeg="n7.1 \\"quoted\\"",'
        'node="n1",quality_metric="psnr",resolution="1280x720",scenario="720p-h264"}'
        " 120.0 1800000000250"
    )


def test_a_full_queue_drops_new_samples_and_counts_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "QUEUE_LIMIT", 8)
    queue = ResultArchive("http://127.0.0.1:1")
    queue.add(result(**METRICS), job(), 1.0)
    queue.add(result(**METRICS), job(), 2.0)
    assert len(queue.queue) == 8 and queue.dropped == 4
    assert queue.queue[0].endswith(" 1000")
