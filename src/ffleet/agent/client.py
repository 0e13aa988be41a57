"""A small synchronous client for the master's HTTP API, shared by the agent's threads.

One `httpx.Client` keeps connections alive across heartbeats, polls and results. Failures are
split in two so callers know what to do: `MasterUnavailable` (no connection, a timeout, a 5xx,
a reply that is not the API's) means "try again later"; `MasterRejected` (a 4xx) means the
master understood and refused, and sending the same request again will not help.

A kept-alive connection the master closes just as the client reuses it (its keep-alive timer
ran out at that moment) fails the request once; idempotent requests are sent again at once, the
others surface as `MasterUnavailable` (see `MasterClient._request`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypedDict, TypeVar, Unpack

import httpx
import msgspec

from ffleet import transfers
from ffleet.agent.failover import MasterChoice, master_urls
from ffleet.models import (
    HeartbeatReply,
    Job,
    Node,
    NodeRegistration,
    ProgressReport,
    ResultSubmission,
    decode_hook,
    encode_hook,
)
from ffleet.transport import Transport

T = TypeVar("T")

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 30.0
# A long-poll reply (or a result's that waits for the next job) may come `wait` seconds late
# on purpose; allow that plus this much.
LONG_POLL_SLACK_S = 15.0
# How a kept-alive connection that the master closed under a request fails: it hung up without
# a reply, or reset the socket while the request was written or its reply awaited. A failed
# connect is not among them: the master is down, and an immediate second try would not help.
RESET_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
# A 503 whose Retry-After is at most this is sent again once after the pause; a longer one is
# the caller's to wait for.
RESEND_AFTER_MAX_S = 5.0


class SendOptions(TypedDict, total=False):
    """What a request carries besides its method, path and body (see `_send_once`): one
    declaration for the overrides of `_send` that pass it on."""

    params: Mapping[str, str] | None
    timeout: httpx.Timeout | None
    idempotent: bool
    headers: Mapping[str, str] | None


class MasterUnavailable(Exception):
    """The master could not be reached or failed (5xx): the request may be retried later.

    `status_code` is the HTTP status of a reply that came but was of no use (a 5xx, or not
    the API's JSON); None when no reply came at all (the master is unreachable).
    `retry_after` is the master's Retry-After in seconds (a 503: its store is unavailable, and
    nothing was done).
    """

    def __init__(
        self, message: str, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class MasterRejected(Exception):
    """The master refused the request (4xx); `status_code` and the master's own message."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"{status_code}: {message}")
        self.status_code = status_code
        self.message = message


class ResultReply(msgspec.Struct, kw_only=True):
    """Reply to POST /results. `job` is the next job when `claim_next` was asked for."""

    status: str = "success"
    duplicate: bool = False
    job: Job | None = None


class Enrolled(Node, kw_only=True):
    """A registration's reply: the node, and its credential if it was just enrolled."""

    token: str | None = None


_encoder = msgspec.json.Encoder(enc_hook=encode_hook)


def _held(wait: float) -> httpx.Timeout:
    """The timeout of a reply the master may hold `wait` s on purpose."""
    return httpx.Timeout(wait + LONG_POLL_SLACK_S, connect=CONNECT_TIMEOUT_S)


class MasterClient:
    """Typed calls to a master at `base_url` (e.g. `http://10.0.0.5:8080`), or to one of
    several sharing a database (`URL1,URL2,...`, see failover.py)."""

    def __init__(self, base_url: str, transport: Transport | None = None) -> None:
        self._choice = MasterChoice(master_urls(base_url))
        transport = transport or Transport()
        self._clients = [
            httpx.Client(
                base_url=url,
                timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                headers={
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                    **transport.headers(),
                },
                verify=transport.ssl_context() if url.startswith("https:") else True,
            )
            for url in self._choice.urls
        ]

    @property
    def base_url(self) -> str:
        """The master requests go to now."""
        return self._choice.urls[self._choice.current]

    def use_token(self, token: str) -> None:
        """Send `token` from the next request on (a node credential after enrollment)."""
        for http in self._clients:
            http.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        for http in self._clients:
            http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ calls

    def register(self, registration: NodeRegistration) -> Enrolled:
        """POST /nodes/register; the reply is the node as the master stored it, with its own
        credential in `token` when this client registered with an enrollment token.

        Not repeated on a reset connection: a node registering without an id gets a new one.
        """
        return self._decode(self._send("POST", "/nodes/register", registration), Enrolled)

    def heartbeat(
        self, node_id: str, jobs: Sequence[ProgressReport], problem: str | None = None
    ) -> HeartbeatReply:
        """POST /nodes/{id}/heartbeat listing every running job, and what keeps this node from
        taking work (`problem`); the reply carries directives.

        Idempotent: a repeated beat renews the same leases and reports the same jobs.
        """
        body = {"jobs": list(jobs), "problem": problem}
        response = self._send("POST", f"/nodes/{node_id}/heartbeat", body, idempotent=True)
        return self._decode(response, HeartbeatReply)

    def next_job(self, node_id: str, wait: float) -> Job | None:
        """GET /jobs/next, held by the master up to `wait` s until a job is assigned.

        The reply is the job object itself, or `{"job": null}` when none is assigned. Repeated
        on a reset connection like every GET: a claim whose reply was lost is handed back by
        the master when the next heartbeat does not list it.
        """
        response = self._send(
            "GET",
            "/jobs/next",
            params={"node_id": node_id, "wait": f"{wait:g}"},
            timeout=_held(wait),
        )
        body = self._decode(response, dict[str, Any])
        if "id" in body:
            return self._convert(response, body, Job)
        wrapped = body.get("job")  # `{"job": {...}}`: what the v1.0 Go agent expected
        return None if wrapped is None else self._convert(response, wrapped, Job)

    def post_result(self, result: ResultSubmission) -> ResultReply:
        """POST /results. A 409 means the attempt is no longer current; 404, the job is unknown.
        With `claim_next` and `claim_wait`, the master may hold the reply that long for the
        next job (the result is stored before it waits).

        Idempotent: the master stores a result once and answers a repeat with `duplicate`; a
        `claim_next` job in a lost reply is handed back as `next_job` explains.
        """
        timeout = _held(result.claim_wait) if result.claim_next and result.claim_wait > 0 else None
        response = self._send("POST", "/results", result, timeout=timeout, idempotent=True)
        return self._decode(response, ResultReply)

    def release(self, job_id: str, node_id: str, attempt: int, reason: str) -> Job:
        """POST /jobs/{id}/release: hand a running attempt back without counting a failure.

        Not repeated on a reset connection: a repeat of a release that landed is refused (409).
        """
        body = {"node_id": node_id, "attempt": attempt, "reason": reason}
        return self._decode(self._send("POST", f"/jobs/{job_id}/release", body), Job)

    def upload_blob(self, path: Path) -> str:
        """Upload a file as a blob (resumed if interrupted); its `blob:sha256:...` reference.
        BlobError when the master refuses it or cannot be reached. Blobs live on the master
        that received them: with several masters, they share `--blob-dir`."""
        return transfers.upload(self._clients[self._choice.pick()], path)

    def download_blob(self, digest: str, target: Path) -> Path:
        """Fetch a blob into `target`, hash-verified (fetched again if it arrived corrupt)."""
        return transfers.download(self._clients[self._choice.pick()], digest, target)

    # ------------------------------------------------------------------ plumbing

    def _send(
        self, method: str, path: str, body: object = None, **options: Unpack[SendOptions]
    ) -> httpx.Response:
        """`_send_once`, and once more after a 503 with a short Retry-After: the master did
        nothing with the request (it holds as many connections as it may, or its store is
        unavailable), so even one that must not run twice may go again. A heartbeat is thus
        not lost for a whole interval to a moment's refusal."""
        try:
            return self._send_once(method, path, body, **options)
        except MasterUnavailable as exc:
            pause = exc.retry_after
            if exc.status_code != 503 or pause is None or pause > RESEND_AFTER_MAX_S:
                raise
            log.debug("%s; sending it again in %g s", exc, pause)
            # refused together, not back together (the master's reap hold waits out the longest)
            time.sleep(pause * random.uniform(1.0, 1.5))
        return self._send_once(method, path, body, **options)

    def _send_once(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        params: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
        idempotent: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """`body` as JSON; `idempotent` marks a POST that may be sent twice (a GET always may).

        A master that fails (no connection, a 5xx) is left for the next one; the request goes
        there at once when it may be sent twice, or when it never left (no connection)."""
        repeatable = idempotent or method == "GET"
        options: dict[str, Any] = {
            "content": None if body is None else _encoder.encode(body),
            "params": params,
            "headers": headers,
            "timeout": timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        }
        several = len(self._clients) > 1
        for left in range(len(self._clients) - 1, -1, -1):  # each master once at most
            index = self._choice.pick()
            where = f" at {self._choice.urls[index]}" if several else ""
            try:
                response = self._request(
                    self._clients[index], method, path, repeatable=repeatable, **options
                )
            except httpx.HTTPError as exc:
                unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if self._choice.failed(index) and (repeatable or unsent) and left:
                    continue
                raise MasterUnavailable(f"{method} {path}{where}: {_describe(exc)}") from exc
            if response.status_code >= 500:
                if self._choice.failed(index) and repeatable and left:
                    continue
                raise MasterUnavailable(
                    f"{method} {path}{where}: HTTP {response.status_code} {_message(response)}",
                    response.status_code,
                    _retry_after(response),
                )
            self._choice.succeeded(index)
            if response.status_code >= 400:
                raise MasterRejected(response.status_code, _message(response))
            return response
        raise AssertionError("unreachable: the last try returns or raises")

    def _request(
        self, http: httpx.Client, method: str, path: str, *, repeatable: bool, **options: Any
    ) -> httpx.Response:
        """Send a `repeatable` request once more, on another connection, when its connection
        was reset under it. Never a request that must not run twice (POST /jobs): the master
        may have acted on it before the connection went."""
        try:
            return http.request(method, path, **options)
        except RESET_ERRORS as exc:
            if not repeatable:
                raise
            log.debug("%s %s: connection reset (%s); sending it again", method, path, exc)
        return http.request(method, path, **options)

    @staticmethod
    def _decode(response: httpx.Response, model: type[T]) -> T:
        try:
            return msgspec.json.decode(response.content, type=model, dec_hook=decode_hook)
        except msgspec.DecodeError as exc:
            # A proxy's HTML page or a different service: not an answer from the master.
            raise MasterUnavailable(
                f"{response.request.url.path}: unexpected reply: {exc}", response.status_code
            ) from exc

    @staticmethod
    def _convert(response: httpx.Response, value: object, model: type[T]) -> T:
        try:
            return msgspec.convert(value, model, dec_hook=decode_hook)
        except msgspec.ValidationError as exc:
            raise MasterUnavailable(
                f"{response.request.url.path}: unexpected reply: {exc}", response.status_code
            ) from exc


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (the master sends seconds, never a date); None if absent."""
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


def _describe(exc: httpx.HTTPError) -> str:
    return str(exc) or type(exc).__name__


def _message(response: httpx.Response) -> str:
    """The master's `{"error": ...}` text, or the start of whatever else came back."""
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return response.text[:200]
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.text[:200]
