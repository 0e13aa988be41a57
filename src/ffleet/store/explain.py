"""The store's side of "why is my job pending?": every node's answer, from the claim's own code.

One read transaction. For each registered node, in the order of `ffleet.pending`: what the
claim walk's `Walk.passes_over` says of the job for that node (a requirement it lacks, its
refusal), whether the node can claim at all, the job's backoff, the walk's deferral, and last,
for a node that passes all of it, which job its claim would get — `placement.pick` itself, run
without taking the claim's row locks. So "would claim it next" is exactly what a claim does.
"""

from __future__ import annotations

from dataclasses import dataclass

from ffleet import pending
from ffleet.models import Explanation, NodeVerdict
from ffleet.scheduling import NodeTraits
from ffleet.states import JobStatus
from ffleet.store import placement
from ffleet.store.db import Row, Tx
from ffleet.store.rows import group_running, traits_from_row


def explain(tx: Tx, row: Row, now: float, node_timeout_s: float) -> Explanation:
    """Explain the job in `row`; only a pending job is judged node by node."""
    if row["status"] != JobStatus.PENDING:
        where = f" on node {row['node_id']}" if row["status"] == JobStatus.RUNNING else ""
        return Explanation(
            job_id=row["id"], status=row["status"], summary=f"not pending: {row['status']}{where}"
        )
    nodes = tx.all("nodes_all")
    fleet = _Fleet(
        tx,
        now,
        node_timeout_s,
        idle=placement.idle_traits(tx, now, node_timeout_s),
        hostnames={node["id"]: node["hostname"] for node in nodes if node["hostname"]},
        refusals=placement.refusals(tx, row),
    )
    running = group_running(tx.all("running_all"))
    since = now - node_timeout_s
    verdicts = []
    for node in nodes:
        state = pending.NodeState(
            node_id=node["id"],
            hostname=node["hostname"],
            online=bool(node["online"]) and node["last_heartbeat"] >= since,
            problem=node["problem"],
            draining=bool(node["draining"]),
            slots=node["slots"],
            running=len(running.get(node["id"], [])),
        )
        verdicts.append(fleet.judge(row, node, state))
    ahead = int(
        tx.scalar("jobs_ahead", {"now": now, "priority": row["priority"], "seq": row["seq"]})
    )
    return Explanation(
        job_id=row["id"],
        status=row["status"],
        summary=pending.summarise(verdicts, ahead),
        ahead=ahead,
        nodes=verdicts,
    )


@dataclass(frozen=True)
class _Fleet:
    """What every node's judgement shares, read once per explanation."""

    tx: Tx
    now: float
    node_timeout_s: float
    idle: list[NodeTraits]  # the nodes a preference may wait for
    hostnames: dict[str, str]
    refusals: dict[str, str]  # node id -> the error its agent refused the job with

    def judge(self, job: Row, node: Row, state: pending.NodeState) -> NodeVerdict:
        me = traits_from_row(node)
        walk = placement.Walk(self.tx, me, self.now, self.node_timeout_s, self.idle)
        skip = walk.passes_over(job)
        found = pending.permanent(state, skip, self.refusals.get(state.node_id))
        if found is None:
            found = pending.passing(state)
        if found is not None:
            return found
        if job["not_before"] > self.now:
            return pending.backoff(state, job["not_before"], job["retry_count"])
        if skip is not None:
            return pending.deferred(state, skip, job["placement"], self.hostnames)
        first = placement.pick(
            self.tx, me, self.now, self.node_timeout_s, lock=False, idle=self.idle
        )
        chosen = None if first is None else first["id"]
        return pending.claims(state, job["id"], chosen, job["unschedulable_reason"])
