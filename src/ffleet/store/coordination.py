"""What several masters on one database agree on through it: who leads, and which job
submissions they have already answered.

The leader lease is one row: taken when absent or expired, renewed only by its holder, deleted by
a holder that resigns. Its times are the database's clock, so masters with different clocks
still agree on when it expires. Every duty the leader runs is safe twice over (the reaper locks
each row it ends), so the moment two masters both believe they lead costs nothing.

An idempotency key is claimed in the transaction that creates its jobs: a repeat, on any master,
either waits for that transaction (PostgreSQL's unique index) or finds its reply.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgspec

from ffleet.models import Job, JobRequest, decode_hook, encode_hook
from ffleet.store.base import Conflict, InvalidRequest
from ffleet.store.db import Tx

IDEMPOTENCY_KEY_TTL_S = 86_400.0  # a client retrying later than a day is sending a new request
MAX_KEY_LENGTH = 200

_encoder = msgspec.json.Encoder(enc_hook=encode_hook)


def take_lease(tx: Tx, holder: str, now: float, lease_s: float) -> str | None:
    """Take or renew the lease for `holder`; the master that leads now (None: nobody)."""
    if tx.one("lease_take", {"holder": holder, "now": now, "expires": now + lease_s}):
        return holder
    leader = tx.scalar("lease_holder", {"now": now})
    return None if leader is None else str(leader)


def fingerprint(requests: Sequence[JobRequest], submitted_by: str | None) -> str:
    """What a key was first used for: a repeat must ask for the same jobs, as the same
    submitter (another credential reusing a key learns nothing of the first one's jobs)."""
    return hashlib.sha256(_encoder.encode([submitted_by, list(requests)])).hexdigest()


def replayed(
    tx: Tx, key: str, requests: Sequence[JobRequest], submitted_by: str | None, now: float
) -> list[Job] | None:
    """Claim `key` for this submission; the jobs of the first reply when it was used before."""
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidRequest(f"Idempotency-Key must be printable and at most {MAX_KEY_LENGTH} long")
    mark = fingerprint(requests, submitted_by)
    if tx.run("idempotency_claim", {"key": key, "fingerprint": mark, "now": now}) == 1:
        return None
    row = tx.one("idempotency_get", {"key": key})
    assert row is not None  # the claim found it, and keys are only removed a day later
    if row["fingerprint"] != mark:
        raise Conflict(f"Idempotency-Key {key!r} was already used for other jobs")
    return msgspec.json.decode(row["reply"], type=list[Job], dec_hook=decode_hook)


def remember(tx: Tx, key: str, jobs: Sequence[Job]) -> None:
    tx.run("idempotency_reply", {"key": key, "reply": _encoder.encode(list(jobs)).decode()})
