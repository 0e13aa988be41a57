"""The results table shows the spread over repeats, the flags and the FFmpeg build."""

from __future__ import annotations

from ffleet.report import row_for


def test_a_row_carries_spread_flags_and_build() -> None:
    detail = {
        "id": "j1",
        "scenario": "720p-h264",
        "status": "completed",
        "result": {
            "metrics": {
                "summary": {"wall_seconds": {"n": 8, "cv": 0.031}},
                "ffmpeg_sha256": "ab" * 32,
            },
            "analyzer_output": {"flags": ["disturbed", "master_as_worker"]},
        },
    }
    row = row_for(detail)
    assert (row["runs"], row["wall_cv"]) == (8, 0.031)
    assert row["flags"] == "disturbed,master_as_worker"
    assert row["ffmpeg_sha256"] == "ab" * 32
    plain = row_for({"id": "j2", "result": {"metrics": {}, "analyzer_output": {}}})
    assert plain["runs"] is None and plain["flags"] is None
