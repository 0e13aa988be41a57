"""Why a pending job is still pending, in words: for every node, the first thing that keeps it
away, and one line for the user.

Nothing here decides: the claim walk's own `Walk.passes_over` (store/placement.py) says which
rule passes a job over, and the claim's own `pick` which job a node would take instead;
store/explain.py asks them and this module words their answers, so an explanation can never
state a rule the scheduler does not apply. Checks go from the permanent to the passing: a node
that lacks a GPU is reported as lacking it even while it is also offline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ffleet import scheduling
from ffleet.models import NodeVerdict, rfc3339

# Verdicts, most hopeful last; a summary speaks of the most hopeful one any node reached.
LACKS, REFUSED, OFFLINE, UNHEALTHY, DRAINING, BUSY, BACKOFF, DEFERRED, ELIGIBLE, NEXT = (
    "lacks",
    "refused",
    "offline",
    "unhealthy",
    "draining",
    "busy",
    "backoff",
    "deferred",
    "eligible",
    "next",
)
ORDER = [LACKS, REFUSED, OFFLINE, UNHEALTHY, DRAINING, BUSY, BACKOFF, DEFERRED, ELIGIBLE, NEXT]
WOULD_CLAIM_NEXT = "would claim it at its next claim"


@dataclass(frozen=True)
class NodeState:
    """A node as its next claim would find it."""

    node_id: str
    hostname: str | None
    online: bool
    problem: str | None  # its agent claims no work while it reports one
    draining: bool
    slots: int | None  # None: a v1.0 agent, never limited
    running: int

    @property
    def full(self) -> bool:
        return self.slots is not None and self.running >= self.slots


def say(node: NodeState, kind: str, reason: str) -> NodeVerdict:
    return NodeVerdict(node_id=node.node_id, hostname=node.hostname, verdict=kind, reason=reason)


def permanent(
    node: NodeState, skip: scheduling.PassOver | None, refusal: str | None
) -> NodeVerdict | None:
    """A rule that keeps the job off `node` for good: a requirement it lacks, or its refusal
    (`refusal`: the error its agent gave)."""
    if skip is None:
        return None
    if skip.rule == scheduling.LACKS:
        return say(node, LACKS, f"needs {skip.detail}")
    if skip.rule == scheduling.REFUSED:
        return say(node, REFUSED, f"refused it: {refusal or 'its agent cannot run it'}")
    return None


def passing(node: NodeState) -> NodeVerdict | None:
    """What keeps `node` from claiming anything now (the claim's own checks)."""
    if not node.online:
        return say(node, OFFLINE, "offline: no heartbeat within the node timeout")
    if node.problem:
        return say(node, UNHEALTHY, f"unhealthy: {node.problem}; its agent claims no work")
    if node.draining:
        return say(node, DRAINING, "draining: takes no new work")
    if node.full:
        return say(node, BUSY, f"busy: all {node.slots} slot(s) full")
    return None


def backoff(node: NodeState, not_before: float, retry_count: int) -> NodeVerdict:
    kind = "backoff after a failed attempt" if retry_count else "not to start"
    return say(node, BACKOFF, f"{kind} until {rfc3339(not_before)}")


def deferred(
    node: NodeState, skip: scheduling.PassOver, placement: str | None, hostnames: Mapping[str, str]
) -> NodeVerdict:
    """A preference that makes `node` leave the job to another idle node until `skip.until`."""
    until = rfc3339(skip.until)
    if skip.rule == scheduling.MEASURED:
        better = hostnames.get(skip.detail) or skip.detail[:8]
        measured = "faster" if placement == "fastest" else "more efficient"
        reason = (
            f"deferred for node {better}, idle and measured {measured} for this scenario "
            f"(placement: {placement}), until {until}"
        )
    else:
        reason = f"deferred for a better-suited idle node until {until}"
    return say(node, DEFERRED, reason)


def claims(node: NodeState, job_id: str, first: str | None, marked: str | None) -> NodeVerdict:
    """`node` passes every rule; `first` is the job its next claim would get. Claims skip a job
    marked unschedulable (`marked`) until a node that can run it registers."""
    if first == job_id:
        return say(node, NEXT, WOULD_CLAIM_NEXT)
    if marked:
        return say(node, ELIGIBLE, f"claims skip it while it is marked unschedulable: {marked}")
    if first is None:
        reason = "its claim stops before reaching it (a claim reads a bounded number of jobs)"
        return say(node, ELIGIBLE, reason)
    return say(node, ELIGIBLE, f"would claim job {first[:8]} first (ahead of it in its queue)")


def summarise(verdicts: Sequence[NodeVerdict], ahead: int) -> str:
    """One line for the user: what the job waits for."""
    if not verdicts:
        return scheduling.NO_NODE_YET
    best = max(verdicts, key=lambda v: ORDER.index(v.verdict))
    if best.verdict == NEXT:
        return "next in line: an eligible node takes it at its next claim"
    if best.verdict == ELIGIBLE:
        if ahead:
            return f"behind {ahead} job(s) queued ahead of it (higher priority, or older)"
        return f"every eligible node takes other work first: {best.reason}"
    if best.verdict == LACKS:
        return "no registered node can run it: each lacks a requirement"
    if best.verdict == REFUSED:
        refused = [
            f"{v.hostname or v.node_id[:8]} {v.reason}" for v in verdicts if v.verdict == REFUSED
        ]
        return "no registered node will run it: " + "; ".join(refused)
    if best.verdict in (BACKOFF, DEFERRED):
        return best.reason
    states = sorted(
        {v.verdict for v in verdicts if v.verdict not in (LACKS, REFUSED)}, key=ORDER.index
    )
    return "waiting: every node that could run it is " + " or ".join(states)
