"""Job and node states, and the one table of allowed job transitions.

Every job status change in every store goes through `check_transition`, so the rules live here and
nowhere else: a store that tries an illegal move raises instead of corrupting the queue.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


class NodeStatus(StrEnum):
    AVAILABLE = "available"
    BUSY = "busy"
    OFFLINE = "offline"
    DRAINING = "draining"


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})

# (from, to) -> the event that causes it.
TRANSITIONS: dict[tuple[JobStatus, JobStatus], str] = {
    (JobStatus.PENDING, JobStatus.RUNNING): "claimed by a node",
    (JobStatus.PENDING, JobStatus.CANCELED): "canceled before it ran",
    (JobStatus.RUNNING, JobStatus.COMPLETED): "result accepted",
    (JobStatus.RUNNING, JobStatus.FAILED): "failed and not retried",
    (JobStatus.RUNNING, JobStatus.PENDING): "attempt ended; queued again",
    (JobStatus.RUNNING, JobStatus.CANCELED): "canceled while running",
    (JobStatus.FAILED, JobStatus.PENDING): "retried by a user",
    (JobStatus.CANCELED, JobStatus.PENDING): "retried by a user",
}


class IllegalTransition(Exception):
    """A store was asked for a status change the state machine forbids."""


def check_transition(current: str, target: str) -> None:
    """Raise IllegalTransition unless `current -> target` is in TRANSITIONS."""
    if (JobStatus(current), JobStatus(target)) not in TRANSITIONS:
        raise IllegalTransition(f"job cannot go from {current} to {target}")


def sources_of(target: JobStatus) -> tuple[str, ...]:
    """The statuses from which `target` may be reached (used in guarded UPDATE ... WHERE)."""
    return tuple(src.value for (src, dst) in TRANSITIONS if dst is target)
