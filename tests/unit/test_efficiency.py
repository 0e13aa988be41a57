"""Efficiency figures from a result, the energy path through a fake powercap tree included."""

from __future__ import annotations

from pathlib import Path

import pytest

from ffleet import efficiency
from ffleet.agent.meters import EnergyMeter
from ffleet.agent.metrics import Metrics, record_energy
from ffleet.scenarios import build_job_spec


def _metered(root: Path, frames: int) -> dict[str, object]:
    """A finished run's metrics, its energy read by the real meter from `root`."""
    meter = EnergyMeter(root)
    meter.start()
    counter = root / "intel-rapl:0" / "energy_uj"
    if counter.exists():
        counter.write_text("31000000\n")  # +30 J
    joules, reason = meter.stop()
    metrics = Metrics()
    metrics.set("frames", frames)
    metrics.set("wall_seconds", 3.0)
    metrics.set("cpu_seconds", 6.0)
    metrics.set("fps", frames / 3.0)
    record_energy(metrics, joules, reason)
    return metrics.finish("not measured")


def test_joules_per_frame_from_a_fake_powercap_tree(tmp_path: Path) -> None:
    package = tmp_path / "intel-rapl:0"
    package.mkdir()
    (package / "name").write_text("package-0\n")
    (package / "energy_uj").write_text("1000000\n")
    (package / "max_energy_range_uj").write_text(f"{10**12}\n")
    figures = efficiency.figures_of(_metered(tmp_path, 150))
    assert figures == efficiency.Figures(
        fps=50.0, cpu_seconds_per_frame=pytest.approx(0.04), joules_per_frame=pytest.approx(0.2)
    )
    assert efficiency.score("energy", [figures]) == pytest.approx(-0.2)


def test_without_rapl_energy_is_unavailable_and_cpu_time_ranks(tmp_path: Path) -> None:
    metrics = _metered(tmp_path / "no-powercap", 150)
    unavailable = metrics["unavailable"]
    assert isinstance(unavailable, dict) and "RAPL unavailable" in unavailable["energy_joules"]
    figures = efficiency.figures_of(metrics)
    assert figures is not None and figures.joules_per_frame is None
    assert efficiency.score("energy", [figures]) == pytest.approx(-0.04)


def test_families_and_resolution_classes() -> None:
    assert efficiency.resolution_class(2160) == "2160p"
    assert efficiency.resolution_class(1079) == "720p"
    assert efficiency.resolution_class(90) == "360p"
    spec = build_job_spec("1080p-hevc", {"engine": "auto"})
    assert efficiency.families(spec) == [
        "hevc/hevc_nvenc/1080p",
        "hevc/hevc_qsv/1080p",
        "hevc/hevc_vaapi/1080p",
        "hevc/libx265/1080p",
    ]
    assert efficiency.figures_of({"frames": 10, "fps": 5.0, "disturbed": True}) is None
