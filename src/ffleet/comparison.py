"""Results compared: one row per node x scenario, each figure as mean and spread over repeats.

A single run says little on a shared machine, so every figure is the mean of the repeats with
their sample standard deviation beside it (0 for one run); the dashboard's table and charts are
drawn from these rows only.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Each compared figure and its unit; `figures_of` says how one result's metrics give it.
FIGURES: dict[str, str] = {
    "fps": "frames/s",
    "cpu_s_per_frame": "CPU-s/frame",
    "energy_j_per_frame": "J/frame",
    "kbps": "kbit/s",
    "quality": "score",
}


@dataclass(frozen=True)
class Spread:
    mean: float
    spread: float  # sample standard deviation; 0 for a single value
    count: int


@dataclass(frozen=True)
class ComparisonRow:
    node_id: str
    scenario: str
    runs: int
    quality_metric: str | None
    figures: dict[str, Spread | None]


def figures_of(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """The compared figures of one result; None where it was not measured."""
    frames = metrics.get("frames") or 0
    user, system = metrics.get("cpu_user_seconds"), metrics.get("cpu_system_seconds")
    energy = metrics.get("energy_joules")
    rate = metrics.get("bitrate_bps")
    return {
        "fps": metrics.get("fps"),
        "cpu_s_per_frame": (user + system) / frames
        if frames and user is not None and system is not None
        else None,
        "energy_j_per_frame": energy / frames if frames and energy is not None else None,
        "kbps": rate / 1000 if rate is not None else None,
        "quality": metrics.get("quality_score"),
    }


def spread(values: list[float]) -> Spread | None:
    if not values:
        return None
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return Spread(statistics.fmean(values), deviation, len(values))


def measured(per_run: list[dict[str, float | None]], name: str) -> list[float]:
    return [value for run in per_run if (value := run[name]) is not None]


def compare(results: Iterable[tuple[str, str, Mapping[str, Any]]]) -> list[ComparisonRow]:
    """`(node_id, scenario, metrics)` of completed results -> rows by scenario, then node."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for node_id, scenario, metrics in results:
        groups.setdefault((scenario, node_id), []).append(metrics)
    rows = []
    for (scenario, node_id), runs in sorted(groups.items()):
        per_run = [figures_of(metrics) for metrics in runs]
        rows.append(
            ComparisonRow(
                node_id=node_id,
                scenario=scenario,
                runs=len(runs),
                quality_metric=next(
                    (m["quality_metric"] for m in runs if m.get("quality_metric")), None
                ),
                figures={name: spread(measured(per_run, name)) for name in FIGURES},
            )
        )
    return rows
