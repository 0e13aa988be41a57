"""The store's credentials and audit log: tokens as hashes, enrollment, revocation, the trail.

A mixin of SqlStore (it runs on the same database and transactions); kept apart because who may
act is a concept of its own, beside the queue. Enrollment and revocation touch nodes and jobs
too, each in one transaction: an enrolled node always has its credential, and a revoked node's
attempts end in the same commit that revokes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import msgspec

from ffleet.audit import AuditEntry
from ffleet.models import Node, NodeRegistration, Timestamp, as_timestamp
from ffleet.states import JobStatus
from ffleet.store import attempts
from ffleet.store.base import NotFound, SchedulingPolicy
from ffleet.store.db import Database, Row, Tx
from ffleet.store.rows import dumps, loads
from ffleet.tokens import Credential, Role, digest, new_id, new_secret


class _Registers(Protocol):
    db: Database
    policy: SchedulingPolicy

    def _register(self, tx: Tx, registration: NodeRegistration, now: float) -> Node: ...


def credential_from_row(row: Row) -> Credential:
    return Credential(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        node_id=row["node_id"],
        labels=loads(row["labels"]),
        one_time=bool(row["one_time"]),
        created_at=Timestamp(row["created_at"]),
        expires_at=as_timestamp(row["expires_at"]),
        revoked_at=as_timestamp(row["revoked_at"]),
    )


def _insert(
    tx: Tx,
    role: str,
    name: str,
    now: float,
    *,
    expires_at: float | None = None,
    node_id: str | None = None,
    labels: Mapping[str, str] | None = None,
    one_time: bool = False,
) -> tuple[Credential, str]:
    secret = new_secret()
    credential_id = new_id()
    row = tx.one(
        "credential_insert",
        {
            "id": credential_id,
            "name": name or f"{role}-{credential_id}",
            "role": role,
            "secret_hash": digest(secret),
            "node_id": node_id,
            "labels": dumps(dict(labels)) if labels is not None else None,
            "one_time": one_time,
            "created_at": now,
            "expires_at": expires_at,
        },
    )
    assert row is not None
    return credential_from_row(row), secret


class CredentialStore:
    """Credentials and the audit log on the SQL store."""

    def create_credential(
        self: _Registers,
        role: str,
        name: str,
        now: float,
        *,
        expires_at: float | None = None,
        labels: Mapping[str, str] | None = None,
        one_time: bool = False,
    ) -> tuple[Credential, str]:
        """A new credential and its secret, which is returned this once and stored only as
        a hash."""
        with self.db.transaction() as tx:
            return _insert(
                tx, role, name, now, expires_at=expires_at, labels=labels, one_time=one_time
            )

    def find_credential(self: _Registers, secret: str) -> Credential | None:
        """The credential whose secret this is, usable or not (the caller checks)."""
        with self.db.transaction() as tx:
            row = tx.one("credential_by_hash", {"secret_hash": digest(secret)})
            return None if row is None else credential_from_row(row)

    def list_credentials(self: _Registers) -> list[Credential]:
        with self.db.transaction() as tx:
            return [credential_from_row(row) for row in tx.all("credentials_all")]

    def count_credentials(self: _Registers, now: float, role: str | None = None) -> int:
        """Usable credentials (of `role`, or of any)."""
        with self.db.transaction() as tx:
            return int(tx.scalar("credentials_active_count", {"now": now, "role": role}))

    def revoke_credential(
        self: _Registers, credential_id: str, now: float
    ) -> tuple[Credential, list[float]]:
        """Revoke at once. A node's credential takes the node out of the fleet: it goes
        offline and its running attempts end as for a dead node (retried with backoff).
        Returns the credential and when each requeued job becomes claimable."""
        with self.db.transaction() as tx:
            row = tx.one("credential_revoke", {"id": credential_id, "now": now})
            if row is None:
                row = tx.one("credential_get", {"id": credential_id})
                if row is None:
                    raise NotFound(f"credential {credential_id} not found")
                return credential_from_row(row), []  # already revoked: nothing more to end
            credential = credential_from_row(row)
            retry_at: list[float] = []
            if credential.node_id is not None:
                tx.run("node_take_offline", {"id": credential.node_id})
                for job in tx.all("running_of_node_locked", {"node": credential.node_id}):
                    ended = attempts.fail(
                        tx,
                        job,
                        now,
                        f"node {credential.node_id} lost its credential",
                        retryable=True,
                        policy=self.policy,
                    )
                    if ended.status == JobStatus.PENDING and ended.not_before is not None:
                        retry_at.append(ended.not_before)
            return credential, retry_at

    def enroll_node(
        self: _Registers, registration: NodeRegistration, enrollment: Credential, now: float
    ) -> tuple[Node, Credential, str]:
        """Register a new node under an enrollment credential and issue its own node
        credential, in one transaction (a one-time enrollment is used up by it).

        The node gets a new id unless the one it asks for is free: enrolling can never take
        over a known node. Its labels are the enrollment's when that names any, else the
        ones it declares now; either way they are fixed from here on.
        """
        with self.db.transaction(alone=True) as tx:
            if registration.id is not None and tx.one("node_get", {"id": registration.id}):
                registration = msgspec.structs.replace(registration, id=None)
            labels = enrollment.labels if enrollment.labels is not None else registration.labels
            registration = msgspec.structs.replace(registration, labels=dict(labels))
            node = self._register(tx, registration, now)
            if enrollment.one_time:
                tx.run("credential_revoke", {"id": enrollment.id, "now": now})
            credential, secret = _insert(
                tx, Role.NODE.value, node.id, now, node_id=node.id, labels=node.labels
            )
            return node, credential, secret

    def job_submitter(self: _Registers, job_id: str) -> str | None:
        """The credential id that created the job (None: created on an open master)."""
        with self.db.transaction() as tx:
            row = tx.one("job_submitter", {"id": job_id})
            if row is None:
                raise NotFound(f"job {job_id} not found")
            return None if row["submitted_by"] is None else str(row["submitted_by"])

    # ------------------------------------------------------------------ audit

    def append_audit(self: _Registers, entries: Sequence[AuditEntry]) -> None:
        if not entries:
            return
        with self.db.transaction() as tx:
            tx.many("audit_insert", map(_audit_row, entries))

    def list_audit(
        self: _Registers, since: float, actor: str | None, action: str | None, limit: int
    ) -> list[AuditEntry]:
        """Newest first."""
        params = {"since": since, "actor": actor, "action": action, "limit": limit}
        with self.db.transaction() as tx:
            return [
                AuditEntry(
                    at=Timestamp(row["at"]),
                    actor_id=row["actor_id"],
                    actor_name=row["actor_name"],
                    role=row["role"],
                    action=row["action"],
                    target=row["target"],
                    outcome=row["outcome"],
                    remote=row["remote"],
                )
                for row in tx.all("audit_page", params)
            ]

    def prune_audit(self: _Registers, before: float) -> int:
        with self.db.transaction(alone=True) as tx:
            return tx.run("audit_prune", {"cut": before})


def _audit_row(entry: AuditEntry) -> dict[str, object]:
    """An entry's insert parameters, its time as a plain float (what the drivers bind),
    without asdict's dict and a second one merged from it."""
    return {
        "at": float(entry.at),
        "actor_id": entry.actor_id,
        "actor_name": entry.actor_name,
        "role": entry.role,
        "action": entry.action,
        "target": entry.target,
        "outcome": entry.outcome,
        "remote": entry.remote,
    }
