"""`ffleet report`: repeats of a scenario on a node become one cell with mean and spread, the
page reads offline with its charts embedded, and everything it shows is escaped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ffleet.comparison_report import cells, write_report


def detail(scenario: str, node: str, fps: float, **parameters: object) -> dict[str, Any]:
    metrics = {
        "fps": fps,
        "frames": 100,
        "cpu_user_seconds": 0.3,
        "cpu_system_seconds": 0.1,
        "encoder": "libx264",
        "ffmpeg_version": "n7.1",
    }
    return {
        "id": f"{scenario}-{node}-{fps}",
        "scenario": scenario,
        "status": "completed",
        "node_id": node,
        "parameters": parameters,
        "result": {"status": "completed", "node_id": node, "metrics": metrics},
    }


DETAILS = [
    detail("720p-h264", "node-a", 100.0, duration=2),
    detail("720p-h264", "node-a", 110.0, duration=2),
    detail("720p-h264", "node-b", 50.0, duration=2),
    detail("360p-vp9", "node-a", 300.0, input="<b>clip</b>.mp4"),
    {**detail("360p-vp9", "node-b", 1.0), "status": "failed"},
]


def test_repeats_of_a_scenario_on_a_node_are_one_cell_with_mean_and_spread() -> None:
    found = {(cell.scenario, cell.node): cell for cell in cells(DETAILS)}
    assert set(found) == {("720p-h264", "node-a"), ("720p-h264", "node-b"), ("360p-vp9", "node-a")}
    repeated = found[("720p-h264", "node-a")]
    assert repeated.runs == 2
    assert repeated.mean("fps") == 105.0
    assert repeated.spread("fps") == pytest.approx(7.0711, abs=1e-4)
    assert repeated.mean("cpu_per_frame") == pytest.approx(4.0)  # ms: 0.4 s / 100 frames
    assert found[("720p-h264", "node-b")].spread("fps") is None  # one run has no spread
    assert repeated.mean("energy_per_frame") is None  # not measured: not invented


def test_the_page_embeds_its_charts_and_escapes_what_it_shows(tmp_path: Path) -> None:
    page = write_report(DETAILS, tmp_path / "report")
    text = page.read_text()
    assert "data:image/png;base64," in text and "<script" not in text
    assert "&lt;b&gt;clip&lt;/b&gt;.mp4" in text and "<b>clip" not in text
    assert "105 ± 7.07" in text and "n7.1" in text and "libx264" in text
    assert (tmp_path / "report" / "fps.png").read_bytes().startswith(b"\x89PNG")
    assert not (tmp_path / "report" / "energy_per_frame.png").exists()


def test_no_completed_result_is_said_plainly(tmp_path: Path) -> None:
    page = write_report([], tmp_path)
    assert "No completed result matches." in page.read_text()
