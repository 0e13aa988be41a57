"""The shapes of the master's replies that are not a bare model: pages, wrappers, status objects.

They exist so that /openapi.json describes every reply exactly; the handlers build the same
shapes, and the schema-driven fuzz test checks that the two never disagree.
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct

from ffleet.audit import AuditEntry
from ffleet.models import Attempt, Job, Node, StoredResult
from ffleet.tokens import Credential


class StatusReply(Struct, kw_only=True):
    status: str


class ReadyReply(Struct, kw_only=True):
    """GET /ready: 200 when ready; 503 with the same shape and the reason when not."""

    status: Literal["ready", "unavailable", "stopping"]
    store: Literal["ok", "unavailable"]
    reason: str | None


class NodeList(Struct, kw_only=True):
    nodes: list[Node]
    count: int


class JobPage(Struct, kw_only=True):
    jobs: list[Job]
    count: int
    total: int  # every job matching the filter, not only this page


class JobList(Struct, kw_only=True):
    jobs: list[Job]
    count: int


class JobView(Job, kw_only=True):
    """GET /jobs/{id}: the job's own fields plus its attempt history and stored result."""

    attempts: list[Attempt]
    result: StoredResult | None


class NoJob(Struct, kw_only=True):
    """GET /jobs/next when nothing is claimable: `{"job": null}` (v1.0)."""

    job: None


class ResultList(Struct, kw_only=True):
    results: list[StoredResult]
    count: int


class ResultReply(Struct, kw_only=True, omit_defaults=True):
    """POST /results: `{"status": "success"}`, `duplicate` for a repeat, and with `claim_next`
    the next job (or null) under `job`; with `claim_wait`, the job that became claimable
    within that wait, or null at its end."""

    status: str
    duplicate: bool = False
    job: Job | None = None


class ExportPage(Struct, kw_only=True):
    """GET /results/export: finished jobs, each as GET /jobs/{id} shows it."""

    jobs: list[JobView]
    count: int


class Purged(Struct, kw_only=True):
    deleted: int


class IssuedCredential(Credential, kw_only=True):
    """POST /tokens: the credential and its secret, shown this once."""

    token: str


class CredentialList(Struct, kw_only=True):
    tokens: list[Credential]
    count: int


class AuditPage(Struct, kw_only=True):
    entries: list[AuditEntry]
    count: int


class UploadState(Struct, kw_only=True):
    """Where an upload continues: `received` bytes so far, or `complete`."""

    digest: str
    complete: bool
    received: int


class BlobStored(Struct, kw_only=True):
    ref: str
    size: int


class UploadCut(Struct, kw_only=True):
    """An upload whose body ended early: send the rest from `received`."""

    received: int
