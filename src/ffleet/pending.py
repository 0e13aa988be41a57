"""Why a pending job is still pending: for every node, the first thing that keeps it away.

The claim walk (store/placement.py) answers "which job does this node get"; this answers the
user's question from the other side, one job against every node, with the same rules
(`scheduling.unmet`, `scheduling.should_defer`) so that the explanation and the scheduler can
never disagree. Checks go from the permanent to the passing: a node that lacks a GPU is
reported as lacking it even while it is also offline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ffleet import scheduling
from ffleet.models import NodeVerdict, Requirements, rfc3339

# Verdicts, most hopeful last; a summary speaks of the most hopeful one any node reached.
LACKS, OFFLINE, DRAINING, BUSY, BACKOFF, DEFERRED, ELIGIBLE = (
    "lacks",
    "offline",
    "draining",
    "busy",
    "backoff",
    "deferred",
    "eligible",
)


@dataclass(frozen=True)
class WaitingJob:
    """What placement knows of a pending job."""

    requirements: Requirements | None
    affinity: Mapping[str, str]
    anti_affinity: Mapping[str, str]
    created_at: float
    not_before: float
    retry_count: int
    avoid_nodes: frozenset[str] = frozenset()  # nodes whose agent refused it (input differs)


@dataclass(frozen=True)
class NodeState:
    """A node as the claim sees it: what it has and whether it can claim now."""

    traits: scheduling.NodeTraits
    hostname: str | None
    online: bool
    draining: bool
    slots: int | None  # None: a v1.0 agent, never limited
    running: int

    @property
    def full(self) -> bool:
        return self.slots is not None and self.running >= self.slots


def verdict(
    job: WaitingJob, node: NodeState, idle: Sequence[scheduling.NodeTraits], now: float
) -> NodeVerdict:
    """The first requirement `node` fails for `job`, or that it is eligible."""

    def say(kind: str, reason: str) -> NodeVerdict:
        return NodeVerdict(
            node_id=node.traits.node_id, hostname=node.hostname, verdict=kind, reason=reason
        )

    missing = scheduling.unmet(job.requirements, node.traits)
    if missing:
        return say(LACKS, f"needs {missing[0]}")
    if node.traits.node_id in job.avoid_nodes:
        return say(LACKS, "refused it: its input file differs from the job's input_sha256")
    if not node.online:
        return say(OFFLINE, "offline: no heartbeat within the node timeout")
    if node.draining:
        return say(DRAINING, "draining: takes no new work")
    if node.full:
        return say(BUSY, f"busy: all {node.slots} slot(s) full")
    if job.not_before > now:
        kind = "backoff after a failed attempt" if job.retry_count else "not to start"
        return say(BACKOFF, f"{kind} until {rfc3339(job.not_before)}")
    queued_at = max(job.created_at, job.not_before)
    if scheduling.should_defer(
        job.requirements, job.affinity, job.anti_affinity, now - queued_at, node.traits, idle
    ):
        until = rfc3339(queued_at + scheduling.PREFERENCE_WINDOW_S)
        return say(DEFERRED, f"deferred for a better-suited idle node until {until}")
    return say(ELIGIBLE, "can take it at its next claim")


def summarise(verdicts: Sequence[NodeVerdict], ahead: int) -> str:
    """One line for the user: what the job waits for."""
    if not verdicts:
        return "no node is registered yet"
    order = [LACKS, OFFLINE, DRAINING, BUSY, BACKOFF, DEFERRED, ELIGIBLE]
    best = max(verdicts, key=lambda v: order.index(v.verdict))
    if best.verdict == ELIGIBLE:
        if ahead == 0:
            return "next in line: an eligible node takes it at its next claim"
        return f"behind {ahead} job(s) queued ahead of it (higher priority, or older)"
    if best.verdict == LACKS:
        return "no registered node can run it: each lacks a requirement"
    if best.verdict in (BACKOFF, DEFERRED):
        return best.reason
    states = sorted({v.verdict for v in verdicts if v.verdict != LACKS}, key=order.index)
    return "waiting: every node that could run it is " + " or ".join(states)
