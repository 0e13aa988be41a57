"""Job and node states, and the one table of what moves a job from one status to another.

Every job status change in the store is one of these events, applied by
`ffleet.store.transitions.transition`, which checks it here first; the store's pre-checks
(can this job be canceled, retried, given a result?) ask `allows` too. So the rules live here
and nowhere else: a move the table lacks is refused, never written.
"""

from __future__ import annotations

from dataclasses import dataclass
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


class Event(StrEnum):
    CLAIM = "claim"
    CANCEL = "cancel"
    COMPLETE = "complete"
    FAIL = "fail"
    REQUEUE = "requeue"
    ABORT = "abort"
    RETRY = "retry"
    SPLIT = "split"


@dataclass(frozen=True)
class Move:
    sources: frozenset[JobStatus]
    target: JobStatus
    meaning: str


def _move(sources: set[JobStatus], target: JobStatus, meaning: str) -> Move:
    return Move(frozenset(sources), target, meaning)


MOVES: dict[Event, Move] = {
    Event.CLAIM: _move({JobStatus.PENDING}, JobStatus.RUNNING, "claimed by a node"),
    Event.CANCEL: _move({JobStatus.PENDING}, JobStatus.CANCELED, "canceled before it ran"),
    Event.COMPLETE: _move({JobStatus.RUNNING}, JobStatus.COMPLETED, "result accepted"),
    Event.FAIL: _move({JobStatus.RUNNING}, JobStatus.FAILED, "failed and not retried"),
    Event.REQUEUE: _move({JobStatus.RUNNING}, JobStatus.PENDING, "attempt ended; queued again"),
    Event.ABORT: _move({JobStatus.RUNNING}, JobStatus.CANCELED, "stopped by its agent on cancel"),
    Event.SPLIT: _move(
        {JobStatus.PENDING}, JobStatus.RUNNING, "split: its segments run as child jobs"
    ),
    Event.RETRY: _move(
        {JobStatus.FAILED, JobStatus.CANCELED}, JobStatus.PENDING, "retried by a user"
    ),
}


def allows(current: str, event: Event) -> bool:
    """Whether `event` may happen to a job in status `current`."""
    return current in MOVES[event].sources


# Statuses a job stays in until a user retries it: what "finished" means to users.
FINISHED = frozenset(
    status
    for status in JobStatus
    if not any(allows(status, event) for event in Event if event is not Event.RETRY)
)


def describe_sources(event: Event) -> str:
    """`failed or canceled`: the statuses `event` starts from, for messages."""
    return " or ".join(sorted(MOVES[event].sources))
