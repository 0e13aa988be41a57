"""Which pending job a node gets (the claim walk), and why a job may fit no node at all.

The rules are ffleet.scheduling's; this module applies them to the queue in the database.
Hard limits that map to columns (GPU, RAM, threads) filter in SQL; the rest is checked in
Python on what SQL returns, walking the queue in batches, so a job this node cannot run never
blocks the jobs behind it. A node a job's agent refused (`avoid_nodes`) never gets it again; a
job with `placement` waits, within the same preference window, for an idle node measured better
for it (store/efficiency.py). `Walk.passes_over` is every such rule in one place: the claim and
`explain` (store/explain.py) both ask it.
"""

from __future__ import annotations

import functools
from typing import Any, cast

from ffleet import scheduling
from ffleet.models import Requirements
from ffleet.states import JobStatus
from ffleet.store import efficiency, queries
from ffleet.store.db import Row, Tx
from ffleet.store.rows import (
    TRAIT_COLUMNS,
    dumps,
    group_running,
    loads,
    requirements,
    traits_from_row,
)

# Candidates read per query: the best job usually fits, so the first read is that job alone
# (8 us against 18 us for four, each row a table lookup and a dict of its 21 columns; on
# PostgreSQL one row locked, not four); if the head of the queue is work this node cannot take,
# later reads walk past it in larger steps.
CLAIM_FIRST_BATCH = 1
CLAIM_BATCH = 64
# Most candidates one claim reads per pass (about 90 ms): jobs no registered node can run are
# marked unschedulable and skipped in SQL, so only jobs that another node can run are walked
# past; past this many, this node gets nothing this time while those nodes drain them.
CLAIM_MAX_EXAMINED = 2048
# Most distinct requirement sets one submission may name: each is checked against up to 2,000
# nodes (~0.2 s with 2,000 distinct nodes), so this bounds the work of one request.
MAX_REQUIREMENT_SETS = 32
# Nodes `unschedulable_reason` reads: a few first, then more, then at most 2,000.
CAPABLE_READS = (4, 64, 2_000)
PENDING = JobStatus.PENDING.value
GPU_FIRST, CPU_ONLY = (True, False), (False,)  # the passes of a GPU node, of any other


def pick(
    tx: Tx,
    me: scheduling.NodeTraits,
    now: float,
    node_timeout_s: float,
    *,
    lock: bool = True,
    idle: list[scheduling.NodeTraits] | None = None,
    first: list[Row] | None = None,
) -> Row | None:
    """Best pending job the node `me` may run: highest priority, then oldest. A GPU node looks
    at GPU work first. The row comes locked where the engine locks rows (PostgreSQL), unless
    `lock` is false: `explain` asks which job a claim would get without holding a claim's locks.
    `first`: the first pass's first read when the caller made it already (`claim_first`)."""
    walk = Walk(tx, me, now, node_timeout_s, idle)
    unlocked = "" if lock else queries.UNLOCKED
    params: dict[str, Any] = {"now": now, "ram": me.ram_bytes, "threads": me.cpu_threads}
    for gpu in GPU_FIRST if me.has_gpu else CPU_ONLY:
        params["gpu"] = gpu
        params["batch"] = CLAIM_FIRST_BATCH
        batch = tx.all("claim_candidates" + unlocked, params) if first is None else first
        first = None
        examined = 0
        while True:
            examined += len(batch)
            # Each a fresh dict (Tx): the columns its read leaves out, since its WHERE fixes them.
            for row in cast("list[dict[str, Any]]", batch):
                row["status"] = PENDING
                row["req_gpu"] = gpu
                if walk.passes_over(row) is None:
                    return row
            if len(batch) < params["batch"] or examined >= CLAIM_MAX_EXAMINED:
                break
            params["batch"] = CLAIM_BATCH
            params["last_priority"] = batch[-1]["priority"]
            params["last_seq"] = batch[-1]["seq"]
            batch = tx.all("claim_candidates_after" + unlocked, params)
    return None


def claimer(first: Row) -> scheduling.NodeTraits:
    """The claiming node's traits, from its `claim_first` row."""
    return _claimer(first["node_traits"])


@functools.lru_cache(maxsize=1024)  # a claiming fleet's nodes, as traits_from_row's
def _claimer(values: str) -> scheduling.NodeTraits:
    """Traits from `claim_first`'s `node_traits`: the node's TRAIT_COLUMNS as one JSON array,
    one column read where the ten columns cost ~25 K instructions on SQLite (BENCHMARKS.md);
    decoded once per distinct text, which changes only when the node registers again."""
    return traits_from_row(dict(zip(TRAIT_COLUMNS, loads(values), strict=True)))


class Walk:
    """One node's claim walk: the rules by which it passes over a due pending job. The claim
    and `explain` both ask `passes_over`, so an explanation can never state another rule."""

    __slots__ = ("_idle", "me", "node_timeout_s", "now", "tx")

    def __init__(
        self,
        tx: Tx,
        me: scheduling.NodeTraits,
        now: float,
        node_timeout_s: float,
        idle: list[scheduling.NodeTraits] | None = None,
    ) -> None:
        self.tx = tx
        self.me = me
        self.now = now
        self.node_timeout_s = node_timeout_s
        self._idle = idle

    def idle(self) -> list[scheduling.NodeTraits]:
        """The idle nodes a preference may wait for, read once per walk and only if needed."""
        if self._idle is None:
            self._idle = idle_traits(self.tx, self.now, self.node_timeout_s)
        return self._idle

    def passes_over(self, row: Row) -> scheduling.PassOver | None:
        """Why this node does not take the job `row` now, or None when it takes it. Most jobs
        have no requirements, refusals or labels: their columns are tested before decoding."""
        me = self.me
        raw = row["requirements"]
        req = None if raw is None else requirements(raw)
        if req is not None:
            missing = scheduling.unmet(req, me)
            if missing:
                return scheduling.PassOver(scheduling.LACKS, missing[0])
        avoided = row["avoid_nodes"]
        if avoided != "[]" and me.node_id in loads(avoided):
            return scheduling.PassOver(scheduling.REFUSED)
        created, not_before = row["created_at"], row["not_before"]
        queued_at = created if created >= not_before else not_before
        waited = self.now - queued_at
        if waited >= scheduling.PREFERENCE_WINDOW_S:
            return None
        until = queued_at + scheduling.PREFERENCE_WINDOW_S
        affinity, anti = row["affinity"], row["anti_affinity"]
        if affinity != "{}" or anti != "{}" or (me.has_gpu and not row["req_gpu"]):
            affinity, anti = loads(affinity), loads(anti)
            if scheduling.should_defer(req, affinity, anti, waited, me, self.idle()):
                return scheduling.PassOver(scheduling.PREFERS, until=until)
        if row["placement"] is not None:
            better = efficiency.better_measured(self.tx, row, me, self.idle())
            if better is not None:
                return scheduling.PassOver(scheduling.MEASURED, better, until)
        return None


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
    checked for encoders, labels and GPU model. The first few are read alone, then more, since
    in a fleet that can run the job one of the first usually can: a create then costs the same
    in a fleet of 10 or 10,000 nodes.
    """
    params = {
        "ram": req.min_ram_bytes,
        "threads": req.min_cpu_threads,
        "gpu": scheduling.needs_gpu(req),
    }
    capable: list[Row] = []
    for limit in CAPABLE_READS:
        capable = tx.all("nodes_capable", {**params, "limit": limit})
        if any(not scheduling.unmet(req, traits_from_row(row)) for row in capable):
            return None  # stops at the first node that fits
        if len(capable) < limit:
            break
    sample = capable[:5] or tx.all("nodes_sample")
    return scheduling.unschedulable_reason(req, [traits_from_row(row) for row in sample])


def refused_everywhere(tx: Tx, job: Row) -> str | None:
    """Why the job fits no node once agents refused it: every registered node that meets its
    requirements is in its `avoid_nodes` (named, with the error each gave), or None while one
    is not. A node that joins and can run it clears the reason (`refresh_unschedulable`)."""
    req = requirements(job["requirements"])
    params = {
        "ram": req.min_ram_bytes if req else 0,
        "threads": req.min_cpu_threads if req else 0,
        "gpu": scheduling.needs_gpu(req),
    }
    avoided = set(loads(job["avoid_nodes"]))
    fitting = [
        row["id"]
        for row in tx.all("nodes_capable", {**params, "limit": CAPABLE_READS[-1]})
        if not scheduling.unmet(req, traits_from_row(row))
    ]
    if not fitting or not avoided.issuperset(fitting):
        return None
    errors = refusals(tx, job)
    named = [f"{node[:8]}: {errors.get(node, 'refused')}" for node in fitting[:5]]
    return "every node that can run it refused it (" + " | ".join(named) + ")"


def refusals(tx: Tx, job: Row) -> dict[str, str]:
    """The error each node in the job's `avoid_nodes` gave when its agent refused the job."""
    avoided = set(loads(job["avoid_nodes"]))
    if not avoided:
        return {}
    return {
        attempt["node_id"]: attempt["error"] or "refused"
        for attempt in tx.all("attempts_of_job", {"job_id": job["id"]})
        if attempt["node_id"] in avoided and attempt["outcome"] == "failed"
    }


def refresh_unschedulable(tx: Tx, node: scheduling.NodeTraits) -> None:
    """A node joined or changed: jobs it can run (and did not refuse) are no longer
    unschedulable, and jobs queued before any node joined stop saying so, naming the nodes
    there are now instead.

    Only those are restated: other reasons already name up to five real nodes, and rebuilding
    them would read the fleet on every registration.
    """
    for kind in tx.all("unschedulable_kinds"):
        req = requirements(kind["requirements"])
        params = {"requirements": kind["requirements"], "old": scheduling.NO_NODE_YET}
        if req is None or not scheduling.unmet(req, node):
            tx.run("now_schedulable", {**params, "refused_by": _listed(node.node_id)})
        elif tx.one("unschedulable_with_reason", params) is not None:
            tx.run("unschedulable_restate", {**params, "reason": unschedulable_reason(tx, req)})


def _listed(node_id: str) -> str:
    """A LIKE pattern (backslash escapes) matching a JSON list of ids that holds `node_id`."""
    quoted = dumps(node_id) or ""
    return "%" + quoted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
