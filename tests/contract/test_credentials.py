"""Credentials and the audit trail, on every backend: hashes only, enrollment in one
transaction, revocation ending a node's work, the trail's filters and retention."""

from __future__ import annotations

from ffleet.audit import AuditEntry
from ffleet.models import JobRequest, NodeRegistration, Timestamp
from ffleet.store import Store
from ffleet.tokens import digest

NOW = 1_900_000_000.0


def test_a_credential_is_stored_as_a_hash_and_found_by_its_secret(store: Store) -> None:
    credential, secret = store.create_credential("reader", "dash", NOW, expires_at=NOW + 60)
    assert secret.startswith("ffleet_") and len(secret) == len("ffleet_") + 43
    assert store.find_credential(secret) == credential
    assert store.find_credential(secret + "x") is None
    assert credential.usable(NOW) and not credential.usable(NOW + 61)
    assert store.count_credentials(NOW) == 1 and store.count_credentials(NOW + 61) == 0
    assert store.count_credentials(NOW, "admin") == 0
    listed = store.list_credentials()
    assert listed == [credential] and secret not in repr(listed)
    assert digest(secret) not in repr(listed)  # not even the hash leaves the store


def test_enrollment_issues_a_node_credential_and_uses_up_a_one_time_token(store: Store) -> None:
    enroll, _ = store.create_credential("enroll", "", NOW, labels={"pool": "gpu"}, one_time=True)
    node, credential, secret = store.enroll_node(
        NodeRegistration(cpu_threads=4, labels={"pool": "cpu"}), enroll, NOW
    )
    assert node.labels == {"pool": "gpu"}
    assert (credential.role, credential.node_id, credential.labels) == (
        "node",
        node.id,
        {"pool": "gpu"},
    )
    assert store.find_credential(secret) == credential
    (stored_enroll,) = [c for c in store.list_credentials() if c.id == enroll.id]
    assert stored_enroll.revoked_at == NOW
    again, _, _ = store.enroll_node(NodeRegistration(id=node.id), enroll, NOW)
    assert again.id != node.id  # enrolling never takes over a known node


def test_revoking_a_node_credential_ends_its_attempts(store: Store) -> None:
    enroll, _ = store.create_credential("enroll", "", NOW)
    node, credential, _ = store.enroll_node(NodeRegistration(cpu_threads=4), enroll, NOW)
    (job,) = store.create_jobs([JobRequest(scenario="720p-h264")], NOW, submitted_by="sub-1")
    assert store.job_submitter(job.id) == "sub-1"
    claimed = store.claim(node.id, NOW)
    assert claimed is not None and claimed.id == job.id
    revoked, retry_at = store.revoke_credential(credential.id, NOW + 1)
    assert revoked.revoked_at == NOW + 1 and len(retry_at) == 1
    detail = store.get_job(job.id)
    assert detail.job.status == "pending" and detail.attempts[0].outcome == "failed"
    assert store.get_node(node.id).status == "offline"
    assert store.revoke_credential(credential.id, NOW + 2) == (revoked, [])  # once is enough


def test_the_audit_trail_filters_newest_first_and_prunes(store: Store) -> None:
    def entry(at: float, actor: str, action: str, outcome: int) -> AuditEntry:
        return AuditEntry(
            at=Timestamp(at),
            actor_id=actor,
            actor_name=f"{actor}-name",
            role="admin",
            action=action,
            target="t",
            outcome=outcome,
            remote="127.0.0.1",
        )

    store.append_audit(
        [
            entry(NOW, "a", "POST /jobs", 201),
            entry(NOW + 1, "b", "POST /jobs", 403),
            entry(NOW + 2, "a", "POST /jobs/{job_id}/cancel", 200),
        ]
    )
    newest = store.list_audit(0.0, None, None, 10)
    assert [e.at for e in newest] == [NOW + 2, NOW + 1, NOW]
    assert [e.outcome for e in store.list_audit(0.0, "a", None, 10)] == [200, 201]
    assert [e.actor_id for e in store.list_audit(0.0, "b-name", None, 10)] == ["b"]
    assert [e.outcome for e in store.list_audit(0.0, None, "POST /jobs", 10)] == [403, 201]
    assert len(store.list_audit(NOW + 1, None, None, 10)) == 2
    assert len(store.list_audit(0.0, None, None, 1)) == 1
    assert store.prune_audit(NOW + 1) == 1
    assert [e.at for e in store.list_audit(0.0, None, None, 10)] == [NOW + 2, NOW + 1]
