"""Measured efficiency per node and scenario family, and what `placement` makes of it.

A scenario family is `codec/encoder/resolution class` (`h264/libx264/720p`): results within
one family are comparable across nodes, across families they are not. Each completed,
undisturbed result moves its node's figures for its family EFFICIENCY_WEIGHT of the way
towards its own (an exponentially weighted mean: recent runs count most, one odd run cannot
flip a ranking); the store blends in SQL, in one statement (`efficiency_record`). A disturbed
run measured the neighbours, not the node, and is left out.

`placement: fastest` ranks nodes by fps, `energy` by joules per frame, or by CPU-seconds per
frame where no energy was measured (no RAPL): the CPU time an encode burns is what it costs
in energy on a node whose power cannot be read. Pure functions: the store applies them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ffleet.encoders import candidate_encoders
from ffleet.scenarios import JobSpec

EFFICIENCY_WEIGHT = 0.3
_CLASSES = ((2160, "2160p"), (1440, "1440p"), (1080, "1080p"), (720, "720p"), (480, "480p"))


def resolution_class(height: int) -> str:
    """The named class at or below `height` (`360p` and smaller share one class)."""
    return next((name for limit, name in _CLASSES if height >= limit), "360p")


def family(spec: JobSpec, encoder: str) -> str:
    return f"{spec.scenario.codec}/{encoder}/{resolution_class(spec.scenario.height)}"


def families(spec: JobSpec) -> list[str]:
    """The families a job may fall in on some node: one per encoder its engine allows."""
    return [
        family(spec, encoder) for encoder in candidate_encoders(spec.scenario.codec, spec.engine)
    ]


@dataclass(frozen=True)
class Figures:
    fps: float | None
    cpu_seconds_per_frame: float | None
    joules_per_frame: float | None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)


def _mean(metrics: Mapping[str, object], key: str) -> float | None:
    """The mean over repeated runs where there is one, else the run's own figure."""
    summary = metrics.get("summary")
    if isinstance(summary, Mapping):
        entry = summary.get(key)
        if isinstance(entry, Mapping):
            return _number(entry.get("mean"))
    return _number(metrics.get(key))


def figures_of(metrics: Mapping[str, object]) -> Figures | None:
    """A completed result's figures; None for a disturbed run or one without frames."""
    frames = _number(metrics.get("frames"))
    if metrics.get("disturbed") is True or frames is None:
        return None
    cpu, joules = _mean(metrics, "cpu_seconds"), _mean(metrics, "energy_joules")
    return Figures(
        fps=_mean(metrics, "fps"),
        cpu_seconds_per_frame=None if cpu is None else cpu / frames,
        joules_per_frame=None if joules is None else joules / frames,
    )


def score(placement: str, figures: Iterable[Figures]) -> float | None:
    """Higher is better; the best over the node's families; None when nothing is measured."""
    found: list[float] = []
    for entry in figures:
        if placement == "fastest" and entry.fps is not None:
            found.append(entry.fps)
        elif placement == "energy":
            per_frame = entry.joules_per_frame or entry.cpu_seconds_per_frame
            if per_frame is not None:
                found.append(-per_frame)
    return max(found) if found else None
