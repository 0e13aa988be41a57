"""Warm-up and repeated runs: every measured run's figures and their spread per metric.

One run says little about a machine shared with anything else; the spread of several says
how far a figure can be trusted. `summarize` gives, per metric, the count, mean, sample
standard deviation, coefficient of variation (stdev / mean), min, median and max; a result
whose CV exceeds the job's `noise_threshold` on any timing metric is `noisy`, with the
figures that made it so, and is never hidden or averaged away.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

# Figures kept for every run (each is also a top-level metric of the last run).
RUN_FIGURES = (
    "wall_seconds",
    "cpu_seconds",
    "fps",
    "speed",
    "output_bytes",
    "bitrate_bps",
    "peak_rss_bytes",
    "energy_joules",
    "node_busy_cores",
    "cpu_time_share",
    "load_average_start",
    "load_average_end",
    "disturbed",
)
# Figures summarised over the runs; the timing ones decide `noisy`.
SUMMARISED = ("wall_seconds", "cpu_seconds", "fps", "speed", "bitrate_bps", "energy_joules")
TIMING = ("wall_seconds", "cpu_seconds", "fps", "energy_joules")


def run_figures(values: Mapping[str, object]) -> dict[str, object]:
    """One run's figures out of the metrics it filled."""
    return {key: values.get(key) for key in RUN_FIGURES}


def _numbers(runs: Sequence[Mapping[str, object]], key: str) -> list[float]:
    found = [run.get(key) for run in runs]
    return [float(v) for v in found if isinstance(v, int | float) and not isinstance(v, bool)]


def summary_of(values: Sequence[float]) -> dict[str, float | int | None]:
    mean = statistics.fmean(values)
    stdev = statistics.stdev(values) if len(values) > 1 else 0.0
    return {
        "n": len(values),
        "mean": mean,
        "stdev": stdev,
        "cv": stdev / mean if mean > 0 else None,
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
    }


def summarize(runs: Sequence[Mapping[str, object]]) -> dict[str, dict[str, float | int | None]]:
    """Per metric of SUMMARISED that every run measured: its summary over the runs."""
    summaries = {}
    for key in SUMMARISED:
        values = _numbers(runs, key)
        if values and len(values) == len(runs):
            summaries[key] = summary_of(values)
    return summaries


def noisy_metrics(
    summaries: Mapping[str, Mapping[str, float | int | None]], threshold: float
) -> dict[str, float]:
    """The timing metrics whose CV exceeds `threshold`, with their CV."""
    found = {}
    for key in TIMING:
        cv = summaries.get(key, {}).get("cv")
        if cv is not None and cv > threshold:
            found[key] = float(cv)
    return found
