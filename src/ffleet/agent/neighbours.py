"""Other FFmpeg processes on this machine: a measurement taken beside them is not clean.

An encode that shares the CPU with another (an orphan of a killed agent, another agent, a
second slot) runs slower, and its fps would be stored as if it ran alone. The child's
supervisor looks now and then; the result says how many it saw.
"""

from __future__ import annotations

from collections.abc import Collection

import psutil


def other_ffmpeg(exclude: Collection[int]) -> set[int]:
    """Pids of live FFmpeg processes other than `exclude`."""
    found = set()
    for proc in psutil.process_iter(["name", "status"]):
        info = proc.info
        if proc.pid in exclude or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if (info["name"] or "").startswith("ffmpeg"):
            found.add(proc.pid)
    return found
