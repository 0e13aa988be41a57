"""Which pending job a node gets (the claim walk), and why a job may fit no node at all.

The rules are ffleet.scheduling's; this module applies them to the queue in the database.
Hard limits that map to columns (GPU, RAM, threads) filter in SQL; the rest is checked in
Python on what SQL returns, walking the queue in batches, so a job this node cannot run never
blocks the jobs behind it. A node a job's agent refused (`avoid_nodes`) never gets it again; a
job with `placement` waits, within the same preference window, for an idle node measured better
for it (store/efficiency.py).
"""

from __future__ import annotations

from typing import Any

from ffleet import scheduling
from ffleet.models import Requirements
from ffleet.store import efficiency
from ffleet.store.db import Row, Tx
from ffleet.store.rows import group_running, loads, requirements, traits_from_row

# Candidates read per query: the best job usually fits, so the first read is small; if the head
# of the queue is work this node cannot take, later reads walk past it in larger steps.
CLAIM_FIRST_BATCH = 4
CLAIM_BATCH = 64
# Most candidates one claim reads per pass (about 90 ms): jobs no registered node can run are
# marked unschedulable and skipped in SQL, so only jobs that another node can run are walked
# past; past this many, this node gets nothing this time while those nodes drain them.
CLAIM_MAX_EXAMINED = 2048
# Most distinct requirement sets one submission may name: each is checked against up to 2,000
# nodes (~0.2 s with 2,000 distinct nodes), so this bounds the work of one request.
MAX_REQUIREMENT_SETS = 32


def pick(tx: Tx, node: Row, now: float, node_timeout_s: float) -> Row | None:
    """Best pending job this node may run: highest priority, then oldest. A GPU node looks
    at GPU work first. The row comes locked where the engine locks rows (PostgreSQL)."""
    me = traits_from_row(node)
    idle: list[scheduling.NodeTraits] | None = None
    passes = [True, False] if node["has_gpu"] else [False]
    params: dict[str, Any] = {"now": now, "ram": node["ram_bytes"], "threads": node["cpu_threads"]}
    for gpu in passes:
        statement = "claim_candidates"
        params.update(gpu=gpu, batch=CLAIM_FIRST_BATCH)
        examined = 0
        while examined < CLAIM_MAX_EXAMINED:
            batch = tx.all(statement, params)
            examined += len(batch)
            for row in batch:
                req = requirements(row["requirements"])
                if scheduling.unmet(req, me) or me.node_id in loads(row["avoid_nodes"]):
                    continue
                waited = now - max(row["created_at"], row["not_before"])
                if waited < scheduling.PREFERENCE_WINDOW_S and _has_preference(row, me):
                    if idle is None:
                        idle = idle_traits(tx, now, node_timeout_s)
                    affinity = loads(row["affinity"])
                    anti = loads(row["anti_affinity"])
                    if scheduling.should_defer(req, affinity, anti, waited, me, idle):
                        continue
                if waited < scheduling.PREFERENCE_WINDOW_S and row["placement"] is not None:
                    if idle is None:
                        idle = idle_traits(tx, now, node_timeout_s)
                    if efficiency.better_elsewhere(tx, row, me, idle):
                        continue
                return row
            if len(batch) < params["batch"]:
                break
            statement = "claim_candidates_after"
            params.update(
                batch=CLAIM_BATCH, last_priority=batch[-1]["priority"], last_seq=batch[-1]["seq"]
            )
    return None


def _has_preference(row: Row, node: scheduling.NodeTraits) -> bool:
    no_labels = row["affinity"] == "{}" and row["anti_affinity"] == "{}"
    return not no_labels or (node.has_gpu and not row["req_gpu"])


def idle_traits(tx: Tx, now: float, node_timeout_s: float) -> list[scheduling.NodeTraits]:
    """Online, undrained nodes with a free slot: the candidates a preference may wait for."""
    running = group_running(tx.all("running_all"))
    since = now - node_timeout_s
    return [
        traits_from_row(row)
        for row in tx.all("nodes_online", {"since": since})
        if len(running.get(row["id"], [])) < (row["slots"] or 1)
    ]


def unschedulable_reason(tx: Tx, req: Requirements) -> str | None:
    """Why no registered node could run a job with `req`, or None if one could.

    Claims skip marked jobs (a node that could run them clears the mark when it registers),
    and the check is bounded: SQL narrows the fleet to
    nodes with enough RAM, threads and a GPU if needed, and at most 2,000 of those are
    checked for encoders, labels and GPU model.
    """
    params = {
        "ram": req.min_ram_bytes,
        "threads": req.min_cpu_threads,
        "gpu": scheduling.needs_gpu(req),
    }
    capable = tx.all("nodes_capable", params)
    if any(not scheduling.unmet(req, traits_from_row(row)) for row in capable):
        return None  # stops at the first node that fits
    sample = capable[:5] or tx.all("nodes_sample")
    return scheduling.unschedulable_reason(req, [traits_from_row(row) for row in sample])


def refresh_unschedulable(tx: Tx, node: scheduling.NodeTraits) -> None:
    """A node joined or changed: jobs it can run are no longer unschedulable, and jobs queued
    before any node joined stop saying so, naming the nodes there are now instead.

    Only those are restated: other reasons already name up to five real nodes, and rebuilding
    them would read the fleet on every registration.
    """
    for kind in tx.all("unschedulable_kinds"):
        req = requirements(kind["requirements"])
        params = {"requirements": kind["requirements"], "old": scheduling.NO_NODE_YET}
        if req is None or not scheduling.unmet(req, node):
            tx.run("now_schedulable", params)
        elif tx.one("unschedulable_with_reason", params) is not None:
            tx.run("unschedulable_restate", {**params, "reason": unschedulable_reason(tx, req)})
