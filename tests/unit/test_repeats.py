"""The spread of repeated runs and what the node did meanwhile, on recorded figures."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from ffleet.agent import conditions, repeats


def test_summary_has_every_statistic_and_noise_is_judged_on_timings() -> None:
    walls = [10.0, 10.2, 9.9, 10.4, 9.5, 10.1, 10.0, 9.9]
    runs = [
        {"wall_seconds": w, "cpu_seconds": 19.0, "bitrate_bps": 1000, "fps": None} for w in walls
    ]
    summary = repeats.summarize(runs)
    assert set(summary) == {"wall_seconds", "cpu_seconds", "bitrate_bps"}  # fps never measured
    wall = summary["wall_seconds"]
    assert wall["n"] == 8 and wall["min"] == 9.5 and wall["max"] == 10.4
    assert wall["mean"] == pytest.approx(statistics.fmean(walls))
    assert wall["median"] == pytest.approx(10.0)
    assert wall["stdev"] == pytest.approx(statistics.stdev(walls))
    assert wall["cv"] == pytest.approx(statistics.stdev(walls) / statistics.fmean(walls))
    assert summary["cpu_seconds"]["cv"] == 0.0
    assert repeats.noisy_metrics(summary, 0.05) == {}
    assert repeats.noisy_metrics(summary, 0.02) == {"wall_seconds": pytest.approx(wall["cv"])}


def test_one_run_has_no_spread() -> None:
    summary = repeats.summarize([{"wall_seconds": 3.0}])
    assert summary["wall_seconds"]["stdev"] == 0.0 and summary["wall_seconds"]["n"] == 1


def test_proc_stat_busy_time_excludes_idle_and_iowait() -> None:
    text = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n"
    assert conditions.parse_proc_stat(text, 100.0) == pytest.approx((100 + 5 + 50 + 3 + 2) / 100)


def _at(busy_s: float) -> conditions.Snapshot:
    return conditions.Snapshot(load_average=(2.0, 1.5, 1.0), governor="performance", busy_s=busy_s)


def test_a_run_that_got_little_of_a_saturated_node_is_disturbed() -> None:
    # 10 s wall on 2 cores, all busy (20 CPU-s), the job had 4 of them.
    found = conditions.judge(_at(100.0), _at(120.0), job_cpu_s=4.0, wall_s=10.0, cpu_count=2)
    assert found.node_busy_cores == pytest.approx(2.0)
    assert found.cpu_time_share == pytest.approx(0.2)
    assert found.disturbed
    assert found.metrics()["load_average_start"] == [2.0, 1.5, 1.0]
    # The same job alone on the node: not disturbed, however few cores it used.
    alone = conditions.judge(_at(100.0), _at(104.2), job_cpu_s=4.0, wall_s=10.0, cpu_count=2)
    assert not alone.disturbed and alone.cpu_time_share == pytest.approx(4 / 4.2)
    # A job that had most of a saturated node is the load itself.
    busy = conditions.judge(_at(100.0), _at(120.0), job_cpu_s=18.0, wall_s=10.0, cpu_count=2)
    assert not busy.disturbed


def test_unreadable_sources_judge_nothing() -> None:
    blank = conditions.Snapshot(load_average=None, governor=None, busy_s=None)
    found = conditions.judge(blank, blank, job_cpu_s=1.0, wall_s=1.0, cpu_count=2)
    assert found.node_busy_cores is None and found.cpu_time_share is None
    assert not found.disturbed


def test_a_snapshot_reads_the_governor_and_proc_stat(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 500 0 0 0 0 0 0\n")
    governor = tmp_path / "scaling_governor"
    governor.write_text("schedutil\n")
    found = conditions.snapshot(stat, governor)
    assert found.governor == "schedutil" and found.busy_s is not None and found.busy_s > 0
    assert found.load_average is not None and len(found.load_average) == 3
    missing = conditions.snapshot(tmp_path / "none", tmp_path / "none")
    assert missing.governor is None and missing.busy_s is None
