"""Split jobs in the store: a parent that no node claims, and the ordinary child jobs that
encode its segments.

The parent is `running` from submission on (the `split` event), with no node, no lease and no
deadline: the master's splitter (ffleet.master.splitter) plans it, watches its children and
joins their outputs. Children are linked to the attempt of the parent that planned them, so a
retried parent plans afresh and never mixes in the segments of an earlier try.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ffleet.models import Job, JobRequest, Progress, StoredResult
from ffleet.states import Event, JobStatus
from ffleet.store import attempts, submission
from ffleet.store.base import Conflict, NotFound
from ffleet.store.db import Database, Row, Tx
from ffleet.store.rows import dumps, job_from_row, loads, result_from_row
from ffleet.store.transitions import transition

MASTER_NODE = "master"  # the node a parent's result names: the master joined it
FINISH_EVENTS = {"completed": Event.COMPLETE, "failed": Event.FAIL, "canceled": Event.ABORT}


@dataclass
class SplitChild:
    segment: int
    job: Job
    result: StoredResult | None


@dataclass
class SplitState:
    """A running parent as the splitter sees it: its plan (None until planned) and the
    children of its current attempt, in segment order."""

    parent: Job
    segment_s: float
    plan: dict[str, Any] | None
    children: list[SplitChild] = field(default_factory=list)


class _Host(Protocol):
    db: Database

    def _prepare(
        self, requests: Sequence[JobRequest], now: float, submitted_by: str | None = None
    ) -> list[submission.Pending]: ...


def start(tx: Tx, row: Row, now: float) -> Job:
    """The `split` event: the pending parent runs, on no node, until the splitter ends it."""
    started = transition(
        tx,
        row,
        Event.SPLIT,
        node_id=None,
        attempt=row["attempt"] + 1,
        now=now,
        lease=None,
        deadline=None,
    )
    return job_from_row(started)


def restart_if_parent(tx: Tx, job: Job, now: float) -> Job:
    """A parent a user retried runs again at once (a pending parent would go to an agent)."""
    if tx.one("split_get", {"job_id": job.id}) is None:
        return job
    tx.run("split_plan_store", {"job_id": job.id, "plan": None})
    row = tx.one("job_locked", {"id": job.id})
    assert row is not None
    return start(tx, row, now)


class SplitMethods:
    """The store's split-job methods (mixed into SqlStore: one transaction each)."""

    def create_split(
        self: _Host,
        request: JobRequest,
        segment_s: float,
        now: float,
        submitted_by: str | None = None,
    ) -> Job:
        """Queue a parent and start it in one transaction: no agent ever sees it pending."""
        values = self._prepare([request], now, submitted_by)[0].values
        with self.db.transaction() as tx:
            tx.run("job_insert", values)
            tx.run("split_insert", {"job_id": values["id"], "segment_s": segment_s})
            row = tx.one("job_locked", {"id": values["id"]})
            assert row is not None
            return start(tx, row, now)

    def running_splits(self: _Host) -> list[SplitState]:
        with self.db.transaction() as tx:
            states = []
            for row in tx.all("splits_running"):
                state = SplitState(
                    job_from_row(row), row["split_segment_s"], loads(row["split_plan"])
                )
                for child in tx.all(
                    "split_children_of", {"parent_id": row["id"], "attempt": row["attempt"]}
                ):
                    stored = tx.one("result_latest", {"job_id": child["id"]})
                    state.children.append(
                        SplitChild(
                            child["segment"],
                            job_from_row(child),
                            None if stored is None else result_from_row(stored),
                        )
                    )
                states.append(state)
            return states

    def plan_split(
        self: _Host,
        parent_id: str,
        attempt: int,
        plan: dict[str, Any],
        children: Sequence[JobRequest],
        now: float,
    ) -> list[Job]:
        """Record the plan and queue one child per segment, all or nothing; Conflict when the
        parent's attempt ended or was planned meanwhile (by another master)."""
        prepared = self._prepare(children, now)
        with self.db.transaction() as tx:
            row = _running_parent(tx, parent_id, attempt)
            split = tx.one("split_get", {"job_id": parent_id})
            if split is None or split["plan"] is not None:
                raise Conflict(f"split job {parent_id} attempt {attempt} is already planned")
            tx.run("split_plan_store", {"job_id": parent_id, "plan": dumps(plan)})
            tx.many("job_insert", (job.values for job in prepared))
            tx.many(
                "split_child_insert",
                [
                    {
                        "child_id": job.id,
                        "parent_id": parent_id,
                        "parent_attempt": row["attempt"],
                        "segment": index,
                    }
                    for index, job in enumerate(prepared)
                ],
            )
            return submission.created(prepared)

    def record_split_progress(self: _Host, parent_id: str, progress: Progress) -> None:
        with self.db.transaction() as tx:
            tx.run("split_progress_store", {"id": parent_id, "progress": dumps(progress)})

    def finish_split(
        self: _Host,
        parent_id: str,
        attempt: int,
        status: str,
        metrics: dict[str, Any],
        error: str | None,
        now: float,
    ) -> Job:
        """End the parent's attempt `completed`, `failed` or `canceled`, with its result."""
        with self.db.transaction() as tx:
            row = _running_parent(tx, parent_id, attempt)
            tx.run(
                "result_insert",
                {
                    "job_id": parent_id,
                    "attempt": attempt,
                    "node_id": MASTER_NODE,
                    "status": status,
                    "metrics": dumps(metrics),
                    "analyzer_output": dumps({}),
                    "error": error,
                    "completed_at": now,
                    "received_at": now,
                },
            )
            return attempts.finish(tx, row, FINISH_EVENTS[status], now, error)

    def split_links(self: _Host, job_id: str) -> dict[str, Any]:
        """What GET /jobs/{id} adds: a parent's segment length and plan, or a child's parent
        and segment; empty for other jobs."""
        with self.db.transaction() as tx:
            split = tx.one("split_get", {"job_id": job_id})
            if split is not None:
                return {"split": {"segment_s": split["segment_s"], "plan": loads(split["plan"])}}
            link = tx.one("split_parent_of", {"child_id": job_id})
            if link is not None:
                return {"parent_id": link["parent_id"], "segment": link["segment"]}
            return {}


def _running_parent(tx: Tx, parent_id: str, attempt: int) -> Row:
    row = tx.one("job_locked", {"id": parent_id})
    if row is None:
        raise NotFound(f"job {parent_id} not found")
    if row["status"] != JobStatus.RUNNING or row["attempt"] != attempt:
        raise Conflict(
            f"split job {parent_id} attempt {attempt} is not running "
            f"(job is {row['status']}, attempt {row['attempt']})"
        )
    return row
