"""The one way a job's status changes: `transition(tx, row, event, **values)`.

It asks the state machine (ffleet.states) whether `event` may happen to the job in the status
it was read in, then runs the event's statement, guarded by that status (`WHERE status =
:from`, one of the event's allowed sources), so a concurrent change can never be overwritten:
the guard fails and the caller is told to try again.

The row as written is the row as read with the statement's assignments applied, read here from
the statement's own SET clause: that costs nothing, where `RETURNING *` made SQLite build and
return all 29 columns again (~8 us of the hot path's two transitions per job).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ffleet.states import MOVES, Event, allows, describe_sources
from ffleet.store.base import Conflict, IllegalTransition
from ffleet.store.db import Row, Tx
from ffleet.store.queries import CATALOGS

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

# The same moves for a row known from its claim, not read (handed_out.py): guarded also by the
# attempt, its node and its start, so a claim since lost and made again never matches.
CLAIMED_STATEMENTS: dict[Event, str] = {Event.COMPLETE: "transition_finish_claimed"}

# One `column = source` of a SET clause: a parameter, a literal or another column of the row.
_ASSIGNMENT = re.compile(r"(\w+) = (?::(\w+)|(NULL|TRUE|FALSE)|(\w+))")
_LITERALS = {"NULL": None, "TRUE": True, "FALSE": False}
_SET_CLAUSE = re.compile(r"^UPDATE jobs SET\s+(.*?)\s+WHERE seq = :seq AND status = :from$", re.S)
# A claimed statement's guard, after that one.
_CLAIMED_GUARD = " AND attempt = :attempt AND node_id = :node_id AND started_at = :started_at"


@dataclass(frozen=True)
class Writes:
    """What one statement's SET clause writes: columns from parameters, literals, and other
    columns of the row as read (SQL evaluates every assignment against the old row)."""

    from_params: tuple[tuple[str, str], ...]
    literals: dict[str, Any]
    from_columns: tuple[tuple[str, str], ...]

    def applied(self, row: Row, params: dict[str, Any]) -> Row:
        written = dict(row)
        for column, param in self.from_params:
            written[column] = params[param]
        written.update(self.literals)
        for column, source in self.from_columns:
            written[column] = row[source]
        return written


def _writes(name: str) -> Writes:
    """What statement `name` writes, parsed once; anything but the forms above is a bug here."""
    statement = " ".join(CATALOGS["sqlite"][name].split())
    if name in CLAIMED_STATEMENTS.values():
        if not statement.endswith(_CLAIMED_GUARD):
            raise ValueError(f"{name}: not guarded by the claim's attempt, node and start")
        statement = statement.removesuffix(_CLAIMED_GUARD)
    found = _SET_CLAUSE.match(statement)
    if found is None:
        raise ValueError(f"{name}: not a guarded UPDATE of one job")
    parts = [part.strip() for part in found.group(1).split(",")]
    parsed = [_ASSIGNMENT.fullmatch(part) for part in parts]
    if not all(parsed):
        raise ValueError(f"{name}: an assignment this module cannot follow: {parts}")
    matches = [m for m in parsed if m is not None]
    return Writes(
        from_params=tuple((m.group(1), m.group(2)) for m in matches if m.group(2)),
        literals={m.group(1): _LITERALS[m.group(3)] for m in matches if m.group(3)},
        from_columns=tuple((m.group(1), m.group(4)) for m in matches if m.group(4)),
    )


WRITES = {name: _writes(name) for name in {*STATEMENTS.values(), *CLAIMED_STATEMENTS.values()}}
# Each event's target status as stored (an enum's `.value` is a property lookup per call).
TARGETS = {event: move.target.value for event, move in MOVES.items()}


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
    written = _run(tx, STATEMENTS[event], row, event, values)
    if written is None:
        raise Conflict(f"job {row['id']} changed concurrently; try again")
    return written


def transition_if_claimed(tx: Tx, row: Row, event: Event, **values: Any) -> Row | None:
    """Apply `event` to the job whose claim wrote `row`, if that attempt is still its current
    one, and return the row as written; None, changing nothing, if it is not."""
    claim = {"attempt": row["attempt"], "node_id": row["node_id"], "started_at": row["started_at"]}
    return _run(tx, CLAIMED_STATEMENTS[event], row, event, {**values, **claim})


def _run(tx: Tx, name: str, row: Row, event: Event, values: dict[str, Any]) -> Row | None:
    """Run `event`'s statement `name` on the job `row`, guarded by its status: the row as
    written, or None when no row matched the guard."""
    params = {**values, "status": TARGETS[event], "seq": row["seq"], "from": row["status"]}
    if tx.run(name, params) != 1:
        return None
    return WRITES[name].applied(row, params)
