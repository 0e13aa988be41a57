"""What a killed agent left behind, found and cleaned by the next agent on the same work dir.

An agent that is `kill -9`ed (or OOM-killed) cannot stop its FFmpeg or remove its job dirs.
FFmpeg dies with it on Linux (see child_process.py), but a leftover encode would run beside the
retry and spoil its measurements, and its files fill the disk. So each job dir in use holds a
record of the process groups started in it; a job dir that still has its record when an agent
starts belongs to a previous run: its groups are killed (if still the same processes) and the
dir is removed, before the agent registers. A dir without the record is a finished job's kept
output (`output=file`) and is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

RECORD = ".ffleet-running"


class RunRecord:
    """The record of one job dir in use: one `<pid> <start time>` line per FFmpeg started."""

    def __init__(self, job_dir: Path) -> None:
        self.job_dir = job_dir
        self.path = job_dir / RECORD

    @classmethod
    def begin(cls, job_dir: Path) -> RunRecord:
        record = cls(job_dir)
        job_dir.mkdir(parents=True, exist_ok=True)
        record.path.touch()
        return record

    def child_started(self, pid: int) -> None:
        """Record a child that leads its own process group; its start time tells it apart from
        a later process that reuses the pid."""
        try:
            started = psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            return  # it is gone already: nothing to clean later
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(f"{pid} {started!r}\n")

    def end(self) -> None:
        self.path.unlink(missing_ok=True)


def clean_leftovers(work_dir: Path) -> list[str]:
    """Kill the recorded process groups of a previous run and remove its job dirs; what was
    cleaned, one description each, for the log."""
    cleaned: list[str] = []
    for record in sorted((work_dir / "jobs").glob(f"*/{RECORD}")):
        for pid in _live_groups(record):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
                cleaned.append(f"killed FFmpeg process group {pid}")
        shutil.rmtree(record.parent, ignore_errors=True)
        cleaned.append(f"removed job dir {record.parent.name}")
    for line in cleaned:
        log.warning("left by the previous run: %s", line)
    return cleaned


def _live_groups(record: Path) -> list[int]:
    """The recorded group leaders still running as the same processes."""
    found = []
    with contextlib.suppress(OSError):
        for line in record.read_text(encoding="utf-8").splitlines():
            pid_text, _, started_text = line.partition(" ")
            try:
                pid, started = int(pid_text), float(started_text)
                same = abs(psutil.Process(pid).create_time() - started) < 0.01
            except (ValueError, psutil.Error):
                continue
            if same:
                found.append(pid)
    return found
