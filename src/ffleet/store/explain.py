"""The store's side of "why is my job pending?": the rows `ffleet.pending` judges.

One read transaction: the job, every registered node with its running count, the idle nodes a
preference may wait for, and how many due jobs a node would take before this one.
"""

from __future__ import annotations

from ffleet import pending
from ffleet.models import Explanation
from ffleet.states import JobStatus
from ffleet.store.db import Row, Tx
from ffleet.store.placement import idle_traits
from ffleet.store.rows import group_running, loads, requirements, traits_from_row


def explain(tx: Tx, row: Row, now: float, node_timeout_s: float) -> Explanation:
    """Explain the job in `row`; only a pending job is judged node by node."""
    if row["status"] != JobStatus.PENDING:
        where = f" on node {row['node_id']}" if row["status"] == JobStatus.RUNNING else ""
        return Explanation(
            job_id=row["id"], status=row["status"], summary=f"not pending: {row['status']}{where}"
        )
    job = pending.WaitingJob(
        requirements=requirements(row["requirements"]),
        affinity=loads(row["affinity"]),
        anti_affinity=loads(row["anti_affinity"]),
        created_at=row["created_at"],
        not_before=row["not_before"],
        retry_count=row["retry_count"],
        avoid_nodes=frozenset(loads(row["avoid_nodes"])),
    )
    running = group_running(tx.all("running_all"))
    idle = idle_traits(tx, now, node_timeout_s)
    since = now - node_timeout_s
    verdicts = [
        pending.verdict(
            job,
            pending.NodeState(
                traits=traits_from_row(node),
                hostname=node["hostname"],
                online=bool(node["online"]) and node["last_heartbeat"] >= since,
                draining=bool(node["draining"]),
                slots=node["slots"],
                running=len(running.get(node["id"], [])),
            ),
            idle,
            now,
        )
        for node in tx.all("nodes_all")
    ]
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
