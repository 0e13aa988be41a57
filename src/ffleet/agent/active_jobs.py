"""The jobs this agent's slots are running, as the heartbeat, the master's directives and a
stop see them.

Three kinds of thread share them: a slot adds its job before running it and removes it once
the result is delivered or spooled, the heartbeat reports each one and hands it the master's
directives, and a stop waits for them. A job is admitted only while the agent is not
stopping, checked under the table's lock, so the list a stop takes misses none.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ffleet.models import Job, Progress, ProgressReport


@dataclass
class ActiveJob:
    """A job a slot is executing, and what the other threads have told it."""

    job: Job
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)  # result posted or released
    timeout_s: float = 0.0
    progress: Progress | None = None
    cancel_reason: str | None = None  # a user's cancel, told by the master
    abandoned: bool = False  # the master gave this attempt away: never post its result
    released: bool = False  # shutdown outlasted the grace period: hand the job back

    def set_progress(self, progress: Progress) -> None:
        self.progress = progress

    def report(self) -> ProgressReport:
        return ProgressReport(
            job_id=self.job.id, attempt=self.job.attempt or None, progress=self.progress
        )


class ActiveJobs:
    """The running jobs by id; `stopping` set means no job is admitted any more."""

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping
        self._jobs: dict[str, ActiveJob] = {}
        self._lock = threading.Lock()

    def admit(self, entry: ActiveJob) -> bool:
        """Add `entry`, unless the agent is stopping (its job is then to be handed back)."""
        with self._lock:
            if self._stopping.is_set():
                return False
            self._jobs[entry.job.id] = entry
            return True

    def end(self, entry: ActiveJob) -> None:
        """The job's run is over, and its result delivered or spooled."""
        with self._lock:
            self._jobs.pop(entry.job.id, None)
        entry.done.set()

    def find(self, job_id: str) -> ActiveJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def listed(self) -> list[ActiveJob]:
        with self._lock:
            return list(self._jobs.values())

    def busy(self) -> bool:
        with self._lock:
            return bool(self._jobs)
