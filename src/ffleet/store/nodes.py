"""The store's node registry: registration, heartbeats and the leases they renew, draining.

A mixin of SqlStore (it runs on the same database and transactions), like credentials.py and
splits.py; kept apart because the fleet's nodes are a concept of their own, beside the queue.
A heartbeat is one transaction: it renews the leases of the node's attempts, hands back those
the agent does not know it has, and answers with what the agent must stop.
"""

from __future__ import annotations

import logging
import uuid
from typing import Protocol

import msgspec

from ffleet.models import (
    Directive,
    Efficiency,
    Heartbeat,
    HeartbeatReply,
    Node,
    NodeRegistration,
    Timestamp,
)
from ffleet.states import Event
from ffleet.store import attempts, efficiency, placement
from ffleet.store.base import NotFound, SchedulingPolicy
from ffleet.store.db import Database, Row, Tx
from ffleet.store.group_commit import redoable
from ffleet.store.rows import dumps, group_running, node_from_row, node_status, traits_from_row

log = logging.getLogger(__name__)

LOST_CLAIM_GRACE_S = 10.0  # a claim reply older than this has reached its agent, or never will


class _Host(Protocol):
    db: Database
    policy: SchedulingPolicy

    def _register(self, tx: Tx, registration: NodeRegistration, now: float) -> Node: ...


class NodeRegistry:
    """The store's node methods (mixed into SqlStore: one transaction each)."""

    def register_node(self: _Host, registration: NodeRegistration, now: float) -> Node:
        with self.db.transaction(alone=True) as tx:
            return self._register(tx, registration, now)

    def _register(self: _Host, tx: Tx, registration: NodeRegistration, now: float) -> Node:
        values = {
            "address": registration.address,
            "type": registration.type,
            "cpu_threads": registration.cpu_threads,
            "cpu_model": registration.cpu_model,
            "has_gpu": registration.has_gpu or any(gpu.is_nvidia for gpu in registration.gpus),
            "gpu_type": registration.gpu_type
            or next((gpu.name for gpu in registration.gpus if gpu.is_nvidia), None),
            "ram_bytes": registration.ram_bytes,
            "labels": dumps(registration.labels),
            "hostname": registration.hostname,
            "ffmpeg_version": registration.ffmpeg_version,
            "encoders": dumps(registration.encoders),
            "gpus": dumps(registration.gpus),
            "slots": registration.slots,
            "ffmpeg_sha256": registration.ffmpeg_sha256,
            "ffmpeg_configuration": registration.ffmpeg_configuration,
            "online": True,
            "last_heartbeat": now,
        }
        row = None
        if registration.id is not None:
            row = tx.one("node_update", {**values, "id": registration.id})
        if row is not None:
            # A known node re-registers: its agent restarted, and whatever it was running
            # died with it.
            for job in tx.all("running_of_node_locked", {"node": row["id"]}):
                attempts.fail(tx, job, now, "agent restarted", retryable=True, policy=self.policy)
        else:
            node_id = registration.id or str(uuid.uuid4())
            row = tx.one("node_insert", {**values, "id": node_id, "registered_at": now})
            assert row is not None
        placement.refresh_unschedulable(tx, traits_from_row(row))
        return node_from_row(row, [])

    def get_node(self: _Host, node_id: str) -> Node:
        with self.db.transaction() as tx:
            return _node(tx, node_id)

    def node_efficiency(self: _Host, node_id: str) -> list[Efficiency]:
        with self.db.transaction() as tx:
            return efficiency.of_node(tx, node_id)

    def list_nodes(self: _Host) -> list[Node]:
        with self.db.transaction() as tx:
            running = group_running(tx.all("running_all"))
            return [node_from_row(row, running.get(row["id"], [])) for row in tx.all("nodes_all")]

    def set_draining(self: _Host, node_id: str, draining: bool) -> Node:
        with self.db.transaction() as tx:
            if tx.run("node_drain", {"draining": draining, "id": node_id}) == 0:
                raise NotFound(f"node {node_id} not found")
            return _node(tx, node_id)

    @redoable
    def heartbeat(self: _Host, node_id: str, beat: Heartbeat, now: float) -> HeartbeatReply:
        with self.db.transaction() as tx:
            beat_values = {"now": now, "id": node_id, "problem": beat.problem}
            lease = {"lease": now + self.policy.node_timeout_s, "node": node_id}
            node, renewed = _beat(tx, self.db.is_sqlite, beat_values, lease)
            mine = {row["id"]: row for row in renewed}
            directives: list[Directive] = []
            reports = beat.jobs or []
            if beat.jobs is not None:
                _hand_back_unreported(tx, mine, {r.job_id for r in reports}, now)
            for report in reports:
                row = mine.get(report.job_id)
                if row is None or (report.attempt is not None and report.attempt != row["attempt"]):
                    directives.append(
                        Directive(
                            action="abandon",
                            job_id=report.job_id,
                            attempt=report.attempt,
                            reason="this attempt is no longer yours (it ended or was reassigned)",
                        )
                    )
                elif report.progress is not None:
                    progress = msgspec.structs.replace(report.progress, updated_at=Timestamp(now))
                    tx.run("progress_store", {"progress": dumps(progress), "id": report.job_id})
            directives.extend(
                Directive(
                    action="cancel",
                    job_id=row["id"],
                    attempt=row["attempt"],
                    reason="canceled by a user",
                )
                for row in mine.values()
                if row["cancel_requested"]
            )
            status = node_status(
                True, bool(node["draining"]), node["slots"], len(mine), beat.problem
            )
            return HeartbeatReply(node_status=status, directives=directives)


def _beat(
    tx: Tx, on_sqlite: bool, beat_values: dict[str, object], lease: dict[str, object]
) -> tuple[Row, list[Row]]:
    """Record a heartbeat and renew the leases of the node's running attempts: the node's
    row (`draining`, `slots`) and those attempts. PostgreSQL: UPDATE ... RETURNING, one round
    trip each. SQLite: a RETURNING builds a temporary table, even for no row; one read of the
    node with its attempts, then plain UPDATEs, the leases' only for a node that runs
    something, cost ~half the instructions (BENCHMARKS.md)."""
    if not on_sqlite:
        node = tx.one("node_beat", beat_values)
        if node is None:
            raise NotFound(f"node {beat_values['id']} not found")
        return node, tx.all("leases_renew", lease)
    rows = tx.all("node_with_running", beat_values)
    if not rows:
        raise NotFound(f"node {beat_values['id']} not found")
    tx.run("node_beat_plain", beat_values)
    running = [row for row in rows if row["id"] is not None]
    if running:
        tx.run("leases_renew_plain", lease)
    return rows[0], running


def _node(tx: Tx, node_id: str) -> Node:
    row = tx.one("node_get", {"id": node_id})
    if row is None:
        raise NotFound(f"node {node_id} not found")
    running = group_running(tx.all("running_of_node", {"node": node_id}))
    return node_from_row(row, running.get(node_id, []))


def _hand_back_unreported(tx: Tx, mine: dict[str, Row], reported: set[str], now: float) -> None:
    """Requeue attempts the agent does not know it has, once they are older than the grace
    that covers a claim reply still on its way to the agent."""
    for job_id, row in list(mine.items()):
        if job_id in reported or row["started_at"] > now - LOST_CLAIM_GRACE_S:
            continue
        full = tx.one("job_get", {"id": job_id})
        assert full is not None
        log.warning("job %s: node %s does not run it; queued again", job_id, full["node_id"])
        attempts.close(tx, full, now, "released", "the agent never received the job")
        attempts.requeue(
            tx, full, Event.REQUEUE, now, not_before=now, retry_count=full["retry_count"]
        )
        del mine[job_id]
