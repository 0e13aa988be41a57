"""The one way a job's status changes: `transition(tx, row, event, **values)`.

It asks the state machine (ffleet.states) whether `event` may happen to the job in the status
it was read in, then runs the event's statement, guarded by that status (`WHERE status =
:from`, one of the event's allowed sources), so a concurrent change can never be overwritten:
the guard fails and the caller is told to try again.
"""

from __future__ import annotations

from typing import Any

from ffleet.states import MOVES, Event, allows, describe_sources
from ffleet.store.base import Conflict, IllegalTransition
from ffleet.store.db import Row, Tx

_GUARD = " WHERE seq = :seq AND status = :from RETURNING *"
_CLAIM = (
    "UPDATE jobs SET status = :status, node_id = :node_id, attempt = :attempt, "
    "started_at = :now, completed_at = NULL, lease_expires_at = :lease, deadline_at = :deadline, "
    "progress = NULL, cancel_requested = FALSE, unschedulable_reason = NULL" + _GUARD
)
_REQUEUE = (
    "UPDATE jobs SET status = :status, node_id = NULL, not_before = :not_before, "
    "retry_count = :retry_count, error = :error, completed_at = NULL, lease_expires_at = NULL, "
    "deadline_at = NULL, cancel_requested = FALSE, aged_at = :now, priority = base_priority"
    + _GUARD
)
_FINISH = (
    "UPDATE jobs SET status = :status, completed_at = :now, error = :error, "
    "retry_count = :retry_count" + _GUARD
)
# The statement each event runs; these are the only statements that write `status`.
STATEMENTS: dict[Event, str] = {
    Event.CLAIM: _CLAIM,
    Event.REQUEUE: _REQUEUE,
    Event.RETRY: _REQUEUE,
    Event.CANCEL: _FINISH,
    Event.COMPLETE: _FINISH,
    Event.FAIL: _FINISH,
    Event.ABORT: _FINISH,
}


def transition(tx: Tx, row: Row, event: Event, **values: Any) -> Row:
    """Apply `event` to the job `row` and return the row as written.

    IllegalTransition (409) when the state machine does not allow it from the row's status;
    Conflict when another transaction changed the job since it was read.
    """
    status = row["status"]
    if not allows(status, event):
        raise IllegalTransition(
            f"job {row['id']} is {status}: '{event}' applies only to {describe_sources(event)} jobs"
        )
    params = {**values, "status": MOVES[event].target.value, "seq": row["seq"], "from": status}
    changed = tx.one(STATEMENTS[event], params)
    if changed is None:
        raise Conflict(f"job {row['id']} changed concurrently; try again")
    return changed
