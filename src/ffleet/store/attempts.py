"""Attempts: how one starts, and how it ends (completed, failed and maybe retried, refused by
its node, requeued).

The job's row holds its current attempt (`attempt`, `node_id`, `started_at`, and once it
completed `completed_at`), so an attempt that runs or completed is read from there
(`attempts_of_job`) and written nowhere else: a claim and a completed result write no attempt
row. Only an attempt that ends otherwise (failed, refused, released, canceled) is stored, at its
end, in the caller's transaction with the job's transition that takes it off the job's row, so a
job's status and its attempt history always agree.
"""

from __future__ import annotations

import logging

import msgspec

from ffleet import retry
from ffleet.models import Job
from ffleet.states import Event
from ffleet.store import placement
from ffleet.store.base import SchedulingPolicy
from ffleet.store.db import Row, Tx
from ffleet.store.rows import dumps, job_from_row, loads
from ffleet.store.transitions import transition, transition_if_claimed

log = logging.getLogger(__name__)

# The agent enforces a job's timeout itself, from when it receives the job; the master's bound
# is the backstop for an agent that hangs, so it allows for dispatch and the result's trip back.
DEADLINE_SLACK_S = 10.0


def start(tx: Tx, row: Row, node_id: str, now: float, policy: SchedulingPolicy) -> Row:
    """Give the pending job `row` to `node_id` as its next attempt; the row as written."""
    attempt = row["attempt"] + 1
    return transition(
        tx,
        row,
        Event.CLAIM,
        node_id=node_id,
        attempt=attempt,
        now=now,
        lease=now + policy.node_timeout_s,
        deadline=now + row["timeout_s"] + DEADLINE_SLACK_S,
    )


def close(tx: Tx, row: Row, now: float, outcome: str, error: str | None) -> None:
    """Store the running job `row`'s current attempt, ended with `outcome` (failed, canceled,
    released), before a transition takes it off the job's row. Its node and start come from
    the row; an older version stored the attempt at its claim, open: that row is ended."""
    tx.run(
        "attempt_close",
        {
            "job_id": row["id"],
            "attempt": row["attempt"],
            "node_id": row["node_id"],
            "started_at": row["started_at"],
            "now": now,
            "outcome": outcome,
            "error": error,
        },
    )


def reported(tx: Tx, row: Row, event: Event, outcome: str, now: float, error: str | None) -> Row:
    """The agent reported its attempt `outcome` (completed, canceled): move the job to the final
    status of `event` (complete, abort), storing a canceled attempt (a completed one stays on
    the job's row). The row as written, not a Job: a result reads only the columns its check
    and these writes need."""
    if event is not Event.COMPLETE:
        close(tx, row, now, outcome, error)
    return transition(tx, row, event, now=now, error=error, retry_count=row["retry_count"])


def completed_as_claimed(tx: Tx, claimed: Row, now: float) -> Row | None:
    """The agent completed the attempt whose claim wrote `claimed` (handed_out.py): `reported`
    without reading the job, if that attempt is still current; None, changing nothing, if not."""
    return transition_if_claimed(
        tx, claimed, Event.COMPLETE, now=now, error=None, retry_count=claimed["retry_count"]
    )


def finish(
    tx: Tx, row: Row, event: Event, now: float, error: str | None, retry_count: int | None = None
) -> Job:
    """Move the job to the final status of `event` (complete, fail, cancel, abort)."""
    count = row["retry_count"] if retry_count is None else retry_count
    return job_from_row(transition(tx, row, event, now=now, error=error, retry_count=count))


def requeue(
    tx: Tx,
    row: Row,
    event: Event,
    now: float,
    *,
    not_before: float,
    retry_count: int,
    error: str | None = None,
) -> Job:
    """Queue the job again (`requeue` an ended attempt, or a user's `retry`) at its own
    priority, claimable from `not_before`."""
    return job_from_row(
        transition(
            tx, row, event, now=now, not_before=not_before, retry_count=retry_count, error=error
        )
    )


def fail(
    tx: Tx, row: Row, now: float, reason: str, *, retryable: bool, policy: SchedulingPolicy
) -> Job:
    """A running attempt failed or was lost: retry with backoff, or fail the job for good."""
    failures = row["retry_count"] + 1
    decision = retry.decide(
        failures, row["max_attempts"], retryable, now, policy.backoff_base_s, policy.backoff_cap_s
    )
    close(tx, row, now, "failed", reason)
    if decision.not_before is not None:
        log.info("job %s attempt %s ended (%s); retrying", row["id"], row["attempt"], reason)
        return requeue(
            tx,
            row,
            Event.REQUEUE,
            now,
            not_before=decision.not_before,
            retry_count=failures,
            error=reason,
        )
    summary = "; ".join(
        f"attempt {a['attempt']}: {a['error']}"
        for a in tx.all("attempts_failed", {"job_id": row["id"]})
    )
    log.info("job %s failed: %s", row["id"], reason)
    return finish(tx, row, Event.FAIL, now, summary or reason, failures)


def refused(tx: Tx, row: Row, now: float, error: str, node_id: str) -> Job:
    """The node's agent refused the job (its input file differs, say): never that node again,
    queued at once for the others, no failure counted since it never ran; unschedulable, saying
    why, once every node that can run it has refused it."""
    avoided = dumps([*loads(row["avoid_nodes"]), node_id])
    tx.run("job_avoid_node", {"avoid_nodes": avoided, "seq": row["seq"]})
    row = {**row, "avoid_nodes": avoided}  # the row as it now is, for the transition below
    close(tx, row, now, "failed", error)
    job = requeue(
        tx, row, Event.REQUEUE, now, not_before=now, retry_count=row["retry_count"], error=error
    )
    reason = placement.refused_everywhere(tx, row)
    if reason is None:
        return job
    tx.run("job_unschedulable", {"reason": reason, "seq": row["seq"]})
    return msgspec.structs.replace(job, unschedulable_reason=reason)
