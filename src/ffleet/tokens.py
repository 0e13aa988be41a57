"""API credentials: what a token looks like, the roles it can carry, and its stored form.

A token is `ffleet_` followed by 43 URL-safe characters (256 random bits): the prefix makes a
leaked one recognisable in a log or to a secret scanner. Only its SHA-256 is stored; a token is
found by looking that digest up, so no comparison ever runs over the secret itself and its
timing tells an attacker nothing. A fast hash is enough: the secret has full entropy, so
there is nothing to brute-force that a slow hash would protect.
"""

from __future__ import annotations

import hashlib
import secrets
from enum import StrEnum

from msgspec import Struct

from ffleet.models import Labels, Name, Timestamp

PREFIX = "ffleet_"


class Role(StrEnum):
    ADMIN = "admin"  # everything: tokens, audit, drain, any node's calls
    SUBMITTER = "submitter"  # create jobs and batches, read, cancel and retry its own jobs
    READER = "reader"  # read-only
    NODE = "node"  # one node's own registration, heartbeats, claims, releases and results
    ENROLL = "enroll"  # registers new nodes, each of which receives its own node credential


# Node credentials come only from enrollment: each is bound to the node it was issued for.
ISSUABLE = tuple(role.value for role in Role if role is not Role.NODE)


class Credential(Struct, kw_only=True):
    """A credential as stored and listed; never its secret."""

    id: str
    name: str
    role: str
    node_id: str | None = None
    # enroll: the labels every node it enrolls gets; node: the labels it was enrolled with.
    labels: dict[str, str] | None = None
    one_time: bool = False
    created_at: Timestamp
    expires_at: Timestamp | None = None
    revoked_at: Timestamp | None = None

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class TokenRequest(Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /tokens: `expires_in_s` from now; `labels` and `one_time` for enroll tokens."""

    role: str
    name: Name = ""
    expires_in_s: float | None = None
    labels: Labels | None = None
    one_time: bool = False


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def new_id() -> str:
    """A credential's public id: shown in lists and the audit log, useless as a secret."""
    return secrets.token_hex(6)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
