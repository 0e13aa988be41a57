"""The user's side of the API: submit, inspect and control jobs and nodes.

Built on the agent's MasterClient so both speak to the master through one transport, one error
split (MasterUnavailable: retry later; MasterRejected: the master said no, and why).
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Sequence
from typing import Any, Unpack

import httpx
import msgspec

from ffleet.agent.client import MasterClient, MasterRejected, MasterUnavailable, SendOptions
from ffleet.audit import AuditEntry
from ffleet.models import Explanation, Job, JobRequest, Node
from ffleet.tokens import Credential, TokenRequest

__all__ = ["FleetClient", "MasterRejected", "MasterUnavailable"]

log = logging.getLogger(__name__)

# A 503 with Retry-After (the master's store is unavailable, nothing was done) is sent again
# for up to this long before the command gives up: a database restart should not fail it.
UNAVAILABLE_PATIENCE_S = 30.0


SUBMIT_TRIES = 4
SUBMIT_BACKOFF_S = 0.5


class _JobPage(msgspec.Struct):
    jobs: list[Job]
    count: int
    total: int = 0


class _NodeList(msgspec.Struct):
    nodes: list[Node]
    count: int


class _TokenList(msgspec.Struct):
    tokens: list[Credential]
    count: int


class _AuditPage(msgspec.Struct):
    entries: list[AuditEntry]
    count: int


class IssuedCredential(Credential, kw_only=True):
    token: str


class FleetClient(MasterClient):
    """The CLI's calls. On a reset connection the GETs and `drain` (it sets a flag) are sent
    again; `submit` only with an idempotency key (else it would create the jobs twice); never
    `cancel` and `retry`, whose repeat after one that landed is refused (409) and would report
    a false failure. Every call is sent again after a 503 with Retry-After: the master did
    nothing with it."""

    def _send(
        self, method: str, path: str, body: object = None, **options: Unpack[SendOptions]
    ) -> httpx.Response:
        deadline = time.monotonic() + UNAVAILABLE_PATIENCE_S
        while True:
            try:
                # its own patience, not the agent's single resend
                return self._send_once(method, path, body, **options)
            except MasterUnavailable as exc:
                pause = exc.retry_after
                if pause is None or time.monotonic() + pause > deadline:
                    raise
                log.warning("%s; trying again in %g s", exc, pause)
                time.sleep(pause)

    def submit(
        self, requests: Sequence[JobRequest], idempotency_key: str | None = None
    ) -> list[Job]:
        """One job through POST /jobs (the v1.0 call); many atomically through /jobs/batch.

        With `idempotency_key` the submission may be sent again, since the master (any master
        of the database) creates its jobs once: it is, after a connection error or a 5xx, a
        few times with a jittered backoff, and on every master given."""
        for attempt in range(SUBMIT_TRIES):
            try:
                return self._submit_once(requests, idempotency_key)
            except MasterUnavailable:
                if idempotency_key is None or attempt == SUBMIT_TRIES - 1:
                    raise
            time.sleep(SUBMIT_BACKOFF_S * 2**attempt * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable: the last try returns or raises")

    def _submit_once(self, requests: Sequence[JobRequest], key: str | None) -> list[Job]:
        send = functools.partial(
            self._send,
            idempotent=key is not None,
            headers=None if key is None else {"Idempotency-Key": key},
        )
        if len(requests) == 1:
            return [self._decode(send("POST", "/jobs", requests[0]), Job)]
        reply = send("POST", "/jobs/batch", {"jobs": list(requests)})
        return self._decode(reply, _JobPage).jobs

    def jobs(
        self, status: str | None = None, limit: int | None = None, offset: int = 0
    ) -> tuple[list[Job], int]:
        params = {"offset": str(offset)}
        if status:
            params["status"] = status
        if limit is not None:
            params["limit"] = str(limit)
        page = self._decode(self._send("GET", "/jobs", params=params), _JobPage)
        return page.jobs, page.total

    def job(self, job_id: str) -> dict[str, Any]:
        """The job with its `attempts` and stored `result`, as plain JSON."""
        return self._decode(self._send("GET", f"/jobs/{job_id}"), dict[str, Any])

    def explain(self, job_id: str) -> Explanation:
        return self._decode(self._send("GET", f"/jobs/{job_id}/explain"), Explanation)

    def nodes(self) -> list[Node]:
        return self._decode(self._send("GET", "/nodes"), _NodeList).nodes

    def cancel(self, job_id: str) -> Job:
        return self._decode(self._send("POST", f"/jobs/{job_id}/cancel"), Job)

    def retry(self, job_id: str) -> Job:
        return self._decode(self._send("POST", f"/jobs/{job_id}/retry"), Job)

    def finished(self, since: float, until: float, limit: int, offset: int) -> list[dict[str, Any]]:
        """Finished jobs completed in [since, until), as `job` shows each."""
        params = {"since": repr(since), "until": repr(until), "limit": str(limit)}
        params["offset"] = str(offset)
        reply = self._send("GET", "/results/export", params=params)
        jobs: list[dict[str, Any]] = self._decode(reply, dict[str, Any])["jobs"]
        return jobs

    def purge(self, job_ids: Sequence[str]) -> int:
        """Remove finished jobs with their attempts and results; how many were removed."""
        reply = self._send("POST", "/jobs/purge", {"job_ids": list(job_ids)}, idempotent=True)
        deleted: int = self._decode(reply, dict[str, Any])["deleted"]
        return deleted

    def drain(self, node_id: str, drain: bool = True) -> Node:
        reply = self._send("POST", f"/nodes/{node_id}/drain", {"drain": drain}, idempotent=True)
        return self._decode(reply, Node)

    def create_token(self, request: TokenRequest) -> IssuedCredential:
        """Never sent twice: a repeat would issue a second credential."""
        return self._decode(self._send("POST", "/tokens", request), IssuedCredential)

    def tokens(self) -> list[Credential]:
        return self._decode(self._send("GET", "/tokens"), _TokenList).tokens

    def revoke_token(self, credential_id: str) -> Credential:
        reply = self._send("POST", f"/tokens/{credential_id}/revoke", idempotent=True)
        return self._decode(reply, Credential)

    def audit(
        self, since: str | None, actor: str | None, action: str | None, limit: int
    ) -> list[AuditEntry]:
        params = {"limit": str(limit)}
        for name, value in (("since", since), ("actor", actor), ("action", action)):
            if value:
                params[name] = value
        return self._decode(self._send("GET", "/audit", params=params), _AuditPage).entries
