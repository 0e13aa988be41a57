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

# The statement (queries.sql) each event runs; every one of them sets `status`.
STATEMENTS: dict[Event, str] = {
    Event.CLAIM: "transition_claim",
    Event.SPLIT: "transition_claim",  # claimed by no node: the master runs it over its children
    Event.REQUEUE: "transition_requeue",
    Event.RETRY: "transition_requeue",
    Event.CANCEL: "transition_finish",
    Event.COMPLETE: "transition_finish",
    Event.FAIL: "transition_finish",
    Event.ABORT: "transition_finish",
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
