"""What else the node was doing during a run, so a reader can judge whether a figure is clean.

A wall time is only the encoder's own figure when the encoder had the CPU it asked for. The
agent reads the node's load average, CPU frequency governor and the machine-wide busy CPU time
(/proc/stat) before and after each run; with the child's own CPU time (rusage) that gives the
job's share of all CPU time spent on the node meanwhile. A run on a saturated node where other
processes got more CPU than the job is `disturbed`: its wall time says more about the
neighbours than about the encoder, so the analyzer gives no advice from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
SATURATED_SHARE = 0.9  # of the node's cores busy: nobody could have had more
DISTURBED_SHARE = 0.5  # the job got less than this share of the CPU time spent meanwhile


@dataclass(frozen=True)
class Snapshot:
    """The node at one moment; None where the source is unreadable (not Linux, no cpufreq)."""

    load_average: tuple[float, float, float] | None
    governor: str | None
    busy_s: float | None  # machine-wide busy CPU seconds since boot, all cores


def parse_proc_stat(text: str, ticks_per_s: float) -> float | None:
    """Busy CPU seconds from /proc/stat's `cpu` line: everything but idle and iowait."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            values = [int(v) for v in fields[1:9]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            return (sum(values) - idle) / ticks_per_s
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def snapshot(proc_stat: Path = PROC_STAT, governor: Path = GOVERNOR) -> Snapshot:
    try:
        load = os.getloadavg()
    except OSError:
        load_average = None
    else:
        load_average = (round(load[0], 2), round(load[1], 2), round(load[2], 2))
    stat = _read(proc_stat)
    ticks = os.sysconf("SC_CLK_TCK")
    governor_text = (_read(governor) or "").strip()
    return Snapshot(
        load_average=load_average,
        governor=governor_text or None,
        busy_s=None if stat is None else parse_proc_stat(stat, float(ticks)),
    )


@dataclass(frozen=True)
class Conditions:
    """A run's surroundings, as they go into the result's metrics."""

    start: Snapshot
    end: Snapshot
    node_busy_cores: float | None  # all processes, averaged over the run
    cpu_time_share: float | None  # the job's CPU / all CPU spent on the node meanwhile
    disturbed: bool

    def metrics(self) -> dict[str, object]:
        return {
            "load_average_start": _list(self.start.load_average),
            "load_average_end": _list(self.end.load_average),
            "cpu_governor_start": self.start.governor,
            "cpu_governor_end": self.end.governor,
            "node_busy_cores": self.node_busy_cores,
            "cpu_time_share": self.cpu_time_share,
            "disturbed": self.disturbed,
        }


def _list(values: tuple[float, float, float] | None) -> list[float] | None:
    return None if values is None else list(values)


def judge(
    start: Snapshot, end: Snapshot, job_cpu_s: float | None, wall_s: float, cpu_count: int
) -> Conditions:
    """How disturbed the run between `start` and `end` was (see the module docstring)."""
    busy = None
    if start.busy_s is not None and end.busy_s is not None and wall_s > 0:
        busy = max(0.0, end.busy_s - start.busy_s)
    cores = None if busy is None else busy / wall_s
    share = None
    if busy is not None and job_cpu_s is not None and busy > 0:
        share = min(1.0, job_cpu_s / busy)
    disturbed = (
        cores is not None
        and share is not None
        and cores >= SATURATED_SHARE * cpu_count
        and share < DISTURBED_SHARE
    )
    return Conditions(start, end, cores, share, disturbed)
