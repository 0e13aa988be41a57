"""The master's HTTP API: thin handlers that decode, call the store, and shape the reply.

On SQLite handlers call the store inline: an operation costs 8-50 us, less than a thread-pool
hop (150-450 us measured here), and the store serialises writers anyway. On PostgreSQL a call
may wait on the network or on a row lock another master holds, so it runs on a thread pool
sized to the connection pool and the event loop (heartbeats included) never waits on it. The
long-poll waits on an asyncio event, never on the database.

Times come from the database's clock (clock.py); leader duties run where leadership.py says;
other masters' work arrives through wakeups.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

import msgspec
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from ffleet.audit import AuditEntry
from ffleet.blobs import BlobError, BlobStore, DirectoryBlobStore, is_ref, parse_ref
from ffleet.master import openapi, ui
from ffleet.master.access import ANONYMOUS, Access, Identity, allow
from ffleet.master.admin_api import AdminApi
from ffleet.master.archive import ArchiveCollector, ResultArchive
from ffleet.master.audit_log import AuditLog
from ffleet.master.blob_routes import BlobRoutes
from ffleet.master.clock import REMEASURE_S, DatabaseClock
from ffleet.master.dispatch import Dispatcher
from ffleet.master.exposure import INSECURE_WARNING, authentication_on, bootstrap_admin
from ffleet.master.http import (
    ApiError,
    JsonResponse,
    client_gone,
    decode,
    error_response,
    path_id,
    query_float,
    query_id,
    query_int,
    query_name,
)
from ffleet.master.leadership import Leadership
from ffleet.master.long_polls import LongPolls
from ffleet.master.metrics import (
    CONTENT_TYPE,
    HttpMetricsMiddleware,
    MasterMetrics,
    route_templates,
)
from ffleet.master.quotas import check_submission
from ffleet.master.rate_limit import RateLimiter, RateLimitMiddleware, Scope, client_address
from ffleet.master.reap_hold import ReapHold
from ffleet.master.routing import IndexedStarlette
from ffleet.master.settings import MasterSettings
from ffleet.master.single_master import hold_sqlite_file
from ffleet.master.slow_clients import BodyTimeoutMiddleware
from ffleet.master.splitter import SplitRefused, Splitter, check_request
from ffleet.master.store_health import RETRY_AFTER_S, StoreHealth
from ffleet.master.wakeups import WakeupListener
from ffleet.models import (
    INT32_MAX,
    DrainRequest,
    Heartbeat,
    Job,
    JobBatch,
    JobDetail,
    JobRequest,
    Node,
    NodeRegistration,
    PurgeRequest,
    Release,
    ResultSubmission,
    Timestamp,
    encode_hook,
)
from ffleet.redaction import without_stream_key
from ffleet.states import JobStatus
from ffleet.store import (
    Conflict,
    InvalidRequest,
    NotFound,
    Store,
    StoreError,
    StoreUnavailable,
    open_store,
)
from ffleet.store.db import POOL_SIZE
from ffleet.tokens import Role

log = logging.getLogger("ffleet.master")

Handler = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")

# Page sizes: a listing without `limit` is one bounded page, never the whole table. Results
# carry free-form metrics, so their pages are smaller.
JOBS_PAGE, JOBS_PAGE_MAX = 1000, 10_000
RESULTS_PAGE, RESULTS_PAGE_MAX = 100, 1000

RETENTION_INTERVAL_S = 60.0  # how often the leader forgets day-old idempotency keys
ADMIN = frozenset({Role.ADMIN.value})
READ = frozenset({Role.ADMIN.value, Role.SUBMITTER.value, Role.READER.value})
SUBMIT = frozenset({Role.ADMIN.value, Role.SUBMITTER.value})
NODE = frozenset({Role.ADMIN.value, Role.NODE.value})
REGISTER = frozenset({Role.ADMIN.value, Role.NODE.value, Role.ENROLL.value})


def detail_body(detail: JobDetail, shown: Callable[[Job], Job]) -> dict[str, Any]:
    """GET /jobs/{id}'s shape: the job's fields (as `shown` to the caller) plus its
    `attempts` and stored `result`."""
    body: dict[str, Any] = msgspec.to_builtins(shown(detail.job), enc_hook=encode_hook)
    body["attempts"] = msgspec.to_builtins(detail.attempts, enc_hook=encode_hook)
    body["result"] = msgspec.to_builtins(detail.result, enc_hook=encode_hook)
    return body


class MasterApp:
    """Routes bound to one store and one dispatcher."""

    def __init__(
        self, store: Store, settings: MasterSettings, blobs: BlobStore, *, enforced: bool
    ) -> None:
        self.store = store
        self.settings = settings
        self.dispatcher = Dispatcher()
        self.long_polls = LongPolls(settings.max_long_polls, settings.max_long_polls_per_node)
        self.metrics = MasterMetrics(store, lambda: self.dispatcher.waiting)
        self.archive: ResultArchive | None = None
        if settings.victoriametrics_url is not None:
            self.archive = ResultArchive(settings.victoriametrics_url)
            self.metrics.registry.register(ArchiveCollector(self.archive))
        self.limit = settings.max_body_bytes
        self.openapi = openapi.spec(settings.max_wait_s)
        self.docs_page = openapi.docs_html(settings.max_wait_s)
        self.id = f"{socket.gethostname()}:{settings.port}/{store.origin[:8]}"
        self.clock = DatabaseClock(None if store.inline else store.database_time)
        # PostgreSQL's store threads: made by start() and shut by stop(), so that an app served
        # again (a second lifespan) gets a live pool, never the one its last stop shut down.
        self._executor: ThreadPoolExecutor | None = None
        self.leadership = Leadership(
            store,
            self.clock,
            self.id,
            lease_s=settings.leader_lease_s,
            grace_s=settings.policy.node_timeout_s,
            call=self.call,
        )
        self.wakeups = (
            None
            if store.inline
            else WakeupListener(
                settings.store_url,
                store.origin,
                on_work=lambda count: self.dispatcher.notify(count),
                on_leader_free=self.leadership.poke,
                on_reconnect=self.dispatcher.notify_all,
            )
        )
        self.store_health = StoreHealth()
        self.hold = ReapHold(settings.policy.node_timeout_s, settings.reap_interval_s)
        self.stopping = False  # a planned stop began: no more reaping nor dispatching
        self._reaper: asyncio.Task[None] | None = None
        self.access = Access(store, enforced=enforced, now=self.clock.now)
        self.audit = AuditLog(store, settings.audit_retention_s, self.call, self.clock.now)
        self.admin = AdminApi(
            store, self.access, self.audit, self.limit, self._wake_at, self.call, self.clock.now
        )
        self.blobs = BlobRoutes(blobs, settings.max_blob_bytes)
        self.splitter = Splitter(store, blobs, None)

    async def call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store method: inline on SQLite, on the store's thread pool on PostgreSQL
        (inline there too when the app is not being served, e.g. before its lifespan)."""
        if self._executor is None:
            return method(*args, **kwargs)
        loop = asyncio.get_running_loop()
        bound = functools.partial(method, *args, **kwargs)
        return await loop.run_in_executor(self._executor, bound)

    # -------------------------------------------------------------- access

    def guarded(self, handler: Handler, roles: frozenset[str] | None) -> Handler:
        """`handler` behind authentication and the route's roles (None: public), audited:
        every state-changing request, and every refused one, leaves an entry."""
        if roles is None:
            return handler

        async def run(request: Request) -> Response:
            identity: Identity | None = None
            status = 500
            try:
                identity = self.access.identify_cached(request)
                if identity is None:
                    identity = await self.call(self.access.identify, request)
                if identity.role not in roles:  # the refusal names the path: built only then
                    allow(identity, roles, f"{request.method} {request.url.path}")
                request.state.identity = identity
                response = await handler(request)
                status = response.status_code
                return response
            except (ApiError, StoreError) as exc:
                status = exc.status_code
                raise
            finally:
                self._audit(request, identity, status)

        return run

    def _audit(self, request: Request, identity: Identity | None, status: int) -> None:
        target = getattr(request.state, "audit_target", None)
        if request.method == "GET" and target is None and status not in (401, 403):
            return  # a read, or a long-poll that handed nothing out
        route = request.scope.get("route")
        action = f"{request.method} {getattr(route, 'path', None) or request.url.path}"
        if target is None and request.path_params:
            target = ",".join(str(v) for v in request.path_params.values())
        who = identity or Identity("-", "unauthenticated", "-")
        self.audit.record(
            AuditEntry(
                at=Timestamp(self.clock.now()),
                actor_id=who.id,
                actor_name=who.name,
                role=who.role,
                action=action,
                target=target,
                outcome=status,
                remote=request.client.host if request.client else None,
            )
        )

    @staticmethod
    def identity(request: Request) -> Identity:
        return getattr(request.state, "identity", ANONYMOUS)

    def _submitted_by(self, request: Request) -> str | None:
        return self.identity(request).id if self.access.enforced else None

    def shown_to(self, request: Request) -> Callable[[Job], Job]:
        """How jobs look to the caller: a stream key is a secret of those who own it (an
        admin, the credential that submitted the job, the node running it). On an open
        master nobody proves who they are, so only the agent's claim carries it."""
        identity = self.identity(request)
        if not self.access.enforced:
            return without_stream_key
        if identity.role == Role.ADMIN:
            return lambda job: job

        def shown(job: Job) -> Job:
            redacted = without_stream_key(job)
            if redacted is job:
                return job  # nothing secret: no store lookup
            if identity.role == Role.NODE and job.node_id == identity.node_id:
                return job
            if self.store.job_submitter(job.id) == identity.id:
                return job
            return redacted

        return shown

    def rate_key(self, scope: Scope) -> str | None:
        """Whom a rate limit counts: the credential a request authenticates with, else its
        address (so clients behind one address do not share a budget); None: not limited.
        On PostgreSQL only a credential the cache holds counts as such, as a read of the
        database here would hold up the event loop: a credential's first request there, and
        its first after the cache let it go, count against its address."""
        address = client_address(scope)
        if address is None or not self.access.enforced:
            return address
        identify = self.access.identify if self.store.inline else self.access.identify_cached
        try:
            identity = identify(Request(scope))
        except ApiError:
            return address  # refused later, by the route's guard
        return address if identity is None else "credential " + identity.id

    def _require_own_job(self, request: Request, job_id: str) -> None:
        """A submitter may cancel and retry only the jobs it submitted (runs on the store's
        thread, inside the call that cancels or retries)."""
        identity = self.identity(request)
        if identity.role == Role.SUBMITTER and self.store.job_submitter(job_id) != identity.id:
            raise ApiError(403, f"job {job_id} was submitted by another credential")

    # -------------------------------------------------------------- nodes

    async def register(self, request: Request) -> Response:
        """An enrollment token registers a new node and gets it its own credential (in the
        reply, once); a node credential re-registers only its own node, with the labels it
        was enrolled with."""
        registration = await decode(request, NodeRegistration, self.limit)
        identity = self.identity(request)
        token: str | None = None
        if identity.role == Role.ENROLL:
            assert identity.credential is not None
            node, _, token = await self.call(
                self.store.enroll_node, registration, identity.credential, self.clock.now()
            )
            if identity.credential.one_time:
                self.access.forget(identity.id)
        else:
            if identity.role == Role.NODE:
                assert identity.node_id is not None and identity.credential is not None
                identity.require_node(registration.id or identity.node_id)
                registration = msgspec.structs.replace(
                    registration,
                    id=identity.node_id,
                    labels=dict(identity.credential.labels or {}),
                )
            node = await self.call(self.store.register_node, registration, self.clock.now())
        request.state.audit_target = node.id
        log.info(
            "node registered: %s (%s, %d threads, %s%s)",
            node.id,
            node.type,
            node.cpu_threads,
            node.cpu_model or "unknown CPU",
            f", GPU {node.gpu_type}" if node.has_gpu else "",
        )
        self.dispatcher.notify_all()  # a new node may make unschedulable work runnable
        if token is None:
            return JsonResponse(node, status_code=201)
        body = msgspec.to_builtins(node, enc_hook=encode_hook)
        body["token"] = token  # the node's own credential, shown this once
        return JsonResponse(body, status_code=201)

    async def list_nodes(self, request: Request) -> Response:
        found = await self.call(self.store.list_nodes)
        return JsonResponse({"nodes": found, "count": len(found)})

    def _by_id(self, kind: Literal["job", "node"], given: str, action: Callable[[str], T]) -> T:
        """`action` on the object `given` names: its full id, or a unique start of it (what a
        user copies from an 8-character table column). Exact ids cost nothing more."""
        try:
            return action(given)
        except NotFound:
            found = self.store.ids_with_prefix(kind, given, 2)
            if len(found) != 1:
                if found:
                    raise InvalidRequest(
                        f"{given!r} starts the ids of several {kind}s; give more of it"
                    ) from None
                raise
            return action(found[0])

    async def get_node(self, request: Request) -> Response:
        def with_efficiency(node_id: str) -> Node:
            node = self.store.get_node(node_id)
            node.efficiency = self.store.node_efficiency(node.id)
            return node

        node_id = path_id(request, "node_id")
        return JsonResponse(await self.call(self._by_id, "node", node_id, with_efficiency))

    async def heartbeat(self, request: Request) -> Response:
        node_id = path_id(request, "node_id")
        self.identity(request).require_node(node_id)
        beat = await decode(request, Heartbeat, self.limit, optional=True)
        return JsonResponse(await self.call(self.store.heartbeat, node_id, beat, self.clock.now()))

    async def drain(self, request: Request) -> Response:
        body = await decode(request, DrainRequest, self.limit, optional=True)
        node = await self.call(
            self._by_id,
            "node",
            path_id(request, "node_id"),
            lambda node_id: self.store.set_draining(node_id, body.drain),
        )
        log.info("node %s %s", node.id, "draining" if body.drain else "accepting work again")
        if not body.drain:  # its waiting job request looks again (nothing else would wake it)
            self.dispatcher.notify_node(node.id)
        return JsonResponse(node)

    # -------------------------------------------------------------- jobs

    def _check_inputs(self, requests: list[JobRequest]) -> None:
        """A job naming a blob the master does not hold could never run: refuse it now."""
        for job_request in requests:
            source = job_request.parameters.get("input")
            if not is_ref(source):
                continue
            try:
                digest = parse_ref(source)
            except BlobError as exc:
                raise ApiError(400, f"parameter 'input': {exc}") from None
            if self.blobs.store.size(digest) is None:
                raise ApiError(400, f"parameter 'input': no blob {source}; upload it first")

    async def create_job(self, request: Request) -> Response:
        job_request = await decode(request, JobRequest, self.limit)
        await self.call(check_submission, [job_request], self.settings, self.store)
        self._check_inputs([job_request])
        if job_request.split_s is not None:
            return await self._create_split(
                job_request, job_request.split_s, self._submitted_by(request)
            )
        (job,) = await self._create(request, [job_request])
        request.state.audit_target = job.id
        log.info("job created: %s (%s)", job.id, job.scenario)
        return JsonResponse(job, status_code=201)

    async def _create_split(
        self, job_request: JobRequest, split_s: float, submitted_by: str | None
    ) -> Response:
        source = job_request.parameters.get("input")
        held = is_ref(source) and self.blobs.store.size(parse_ref(source)) is not None
        try:
            check_request(job_request, held)
        except SplitRefused as exc:
            raise ApiError(400, str(exc)) from None
        job = await self.call(
            self.store.create_split, job_request, split_s, self.clock.now(), submitted_by
        )
        self.splitter.wake()
        log.info("split job created: %s (%s, %g s segments)", job.id, job.scenario, split_s)
        return JsonResponse(job, status_code=201)

    async def create_batch(self, request: Request) -> Response:
        batch = await decode(request, JobBatch, self.limit)
        if len(batch.jobs) > self.settings.max_batch:
            raise ApiError(
                413,
                f"a batch holds at most {self.settings.max_batch} jobs (the master's --max-batch)",
            )
        if any(job_request.split_s is not None for job_request in batch.jobs):
            raise ApiError(400, "submit split jobs one at a time (POST /jobs)")
        await self.call(check_submission, batch.jobs, self.settings, self.store)
        self._check_inputs(batch.jobs)
        created = await self._create(request, batch.jobs, heavy=True)
        request.state.audit_target = f"{len(created)} jobs"
        log.info("batch of %d jobs created", len(created))
        return JsonResponse({"jobs": created, "count": len(created)}, status_code=201)

    async def _create(
        self, request: Request, jobs: list[JobRequest], heavy: bool = False
    ) -> list[Job]:
        """Create, or with an `Idempotency-Key` already used, return what the first did.
        `heavy` (a batch: checking thousands of jobs against the fleet takes a while) runs
        off the event loop on SQLite too, so /health and the long-polls need not wait."""
        call = self.call if self._executor is not None or not heavy else asyncio.to_thread
        created = await call(
            self.store.create_jobs,
            jobs,
            self.clock.now(),
            submitted_by=self._submitted_by(request),
            idempotency_key=request.headers.get("idempotency-key"),
        )
        self.dispatcher.notify(len(created))  # a replay wakes a waiter in vain, harmlessly
        return created

    async def list_jobs(self, request: Request) -> Response:
        status = request.query_params.get("status") or None
        if status is not None and status not in JobStatus.__members__.values():
            allowed = ", ".join(s.value for s in JobStatus)
            raise ApiError(400, f"unknown status {status!r}; use one of {allowed}")
        limit = query_int(request, "limit", JOBS_PAGE, low=1, high=JOBS_PAGE_MAX)
        offset = query_int(request, "offset", 0, low=0, high=INT32_MAX) or 0
        found, total = await self.call(
            self.store.list_jobs,
            status,
            limit,
            offset,
            scenario=query_name(request, "scenario"),
            node_id=query_id(request, "node_id"),
        )
        shown = list(map(self.shown_to(request), found))
        return JsonResponse({"jobs": shown, "count": len(shown), "total": total})

    async def get_job(self, request: Request) -> Response:
        job_id = path_id(request, "job_id")
        detail = await self.call(self._by_id, "job", job_id, self.store.get_job)
        body = detail_body(detail, self.shown_to(request))
        body.update(await self.call(self.store.split_links, detail.job.id))
        return JsonResponse(body)

    async def purge_jobs(self, request: Request) -> Response:
        """Remove finished jobs with their attempts and results (after an export)."""
        body = await decode(request, PurgeRequest, self.limit)
        deleted = await self.call(self.store.delete_finished, body.job_ids)
        log.info("%d finished job(s) removed", deleted)
        return JsonResponse({"deleted": deleted})

    async def explain(self, request: Request) -> Response:
        now = self.clock.now()
        return JsonResponse(
            await self.call(
                self._by_id,
                "job",
                path_id(request, "job_id"),
                lambda job_id: self.store.explain(job_id, now),
            )
        )

    async def next_job(self, request: Request) -> Response:
        """Claim the next job; with `wait=S`, hold the request until one exists or S pass."""
        node_id = query_id(request, "node_id")
        if node_id is None:
            raise ApiError(400, "query parameter node_id is required")
        self.identity(request).require_node(node_id)
        wait = query_float(request, "wait", 0.0, high=self.settings.max_wait_s)
        if self.stopping:
            job = None
        elif wait > 0:
            with self.long_polls.slot(node_id):
                job = await self._claim_waiting(request, node_id, wait)
        else:
            job = await self._claim_waiting(request, node_id, wait)
        if job is None:
            return JsonResponse({"job": None})
        request.state.audit_target = job.id
        return JsonResponse(job)

    async def _claim_waiting(self, request: Request, node_id: str, wait: float) -> Job | None:
        async def claim() -> Job | None:
            started = time.perf_counter()
            job = await self.call(self.store.claim, node_id, self.clock.now())
            if job is not None:
                self._dispatched(job, node_id, time.perf_counter() - started)
            return job

        return await self.dispatcher.long_poll(
            claim,
            wait,
            node_id=node_id,
            # On SQLite this is the only master: every change that makes work claimable
            # passes through it and wakes a waiter. Other masters' hints can be lost.
            recheck_s=None if self.store.inline else self.settings.recheck_s,
            client_gone=lambda: client_gone(request),
            stopping=lambda: self.stopping,
        )

    def _dispatched(self, job: Job, node_id: str, claim_seconds: float) -> None:
        self.dispatcher.taken()
        log.info("job %s (attempt %d) dispatched to node %s", job.id, job.attempt, node_id)
        self.metrics.dispatched(job, claim_seconds)

    def _wake_when_due(self, job: Job) -> None:
        """A job queued again with a backoff becomes claimable later: wake a waiter then."""
        if job.status == JobStatus.PENDING and job.not_before is not None:
            self._wake_at(job.not_before)

    def _wake_at(self, when: float) -> None:
        """Wake a waiter here, and tell the other masters, when a backoff ends."""
        delay = max(0.0, when - self.clock.now())
        asyncio.get_running_loop().call_later(delay, self._backoff_ended)

    def _backoff_ended(self) -> None:
        self.dispatcher.notify()
        if self.wakeups is not None:
            task = asyncio.ensure_future(self.call(self.store.announce_work))
            task.add_done_callback(_log_failure)

    async def cancel(self, request: Request) -> Response:
        def cancel(job_id: str) -> Job:
            self._require_own_job(request, job_id)
            return self.store.cancel(job_id, now)

        now = self.clock.now()
        job = await self.call(self._by_id, "job", path_id(request, "job_id"), cancel)
        log.info("job %s cancel requested (now %s)", job.id, job.status)
        self.splitter.wake()
        return JsonResponse(job)

    async def retry(self, request: Request) -> Response:
        def retry(job_id: str) -> Job:
            self._require_own_job(request, job_id)
            return self.store.retry(job_id, now)

        now = self.clock.now()
        job = await self.call(self._by_id, "job", path_id(request, "job_id"), retry)
        log.info("job %s queued again by a user", job.id)
        self.splitter.wake()
        self.metrics.user_retried()
        self.dispatcher.notify()
        return JsonResponse(job)

    async def release(self, request: Request) -> Response:
        body = await decode(request, Release, self.limit)
        self.identity(request).require_node(body.node_id)
        job = await self.call(
            self.store.release,
            path_id(request, "job_id"),
            body.node_id,
            body.attempt,
            body.reason,
            self.clock.now(),
        )
        log.info("job %s released by node %s: %s", job.id, body.node_id, body.reason)
        self.dispatcher.notify()
        return JsonResponse(job)

    # -------------------------------------------------------------- results

    async def post_result(self, request: Request) -> Response:
        result = await decode(request, ResultSubmission, self.limit)
        self.identity(request).require_node(result.node_id)
        asked_next = result.claim_next
        if self.stopping:  # a stopping master hands out no more work
            result = msgspec.structs.replace(result, claim_next=False)
        started = time.perf_counter()
        try:
            outcome = await self.call(self.store.submit_result, result, self.clock.now())
        except Conflict:
            self.metrics.stale_result()
            raise
        store_seconds = time.perf_counter() - started
        job = outcome.job
        if outcome.duplicate:
            log.info("duplicate result for job %s ignored", job.id)
        else:
            log.info(
                "result for job %s from node %s: %s -> job %s%s",
                job.id,
                result.node_id,
                result.status,
                job.status,
                f" ({result.error})" if result.error else "",
            )
            now = self.clock.now()
            self.metrics.result_stored(result, job, now)
            if self.archive is not None and result.status == "completed":
                self.archive.add(result, job, job.completed_at or now)
            self._wake_when_due(job)
            self.splitter.wake()  # the job may be a split job's child
        reply: dict[str, Any] = {"status": "success"}
        if outcome.duplicate:
            reply["duplicate"] = True
        if asked_next:
            reply["job"] = outcome.next_job
            if outcome.next_job is not None:
                # the claim shared the result's transaction: its time is the dispatch's
                self._dispatched(outcome.next_job, result.node_id, store_seconds)
        return JsonResponse(reply)

    async def list_results(self, request: Request) -> Response:
        limit = query_int(request, "limit", RESULTS_PAGE, low=1, high=RESULTS_PAGE_MAX)
        offset = query_int(request, "offset", 0, low=0, high=INT32_MAX) or 0
        found = await self.call(self.store.list_results, query_id(request, "job_id"), limit, offset)
        return JsonResponse({"results": found, "count": len(found)})

    async def export_results(self, request: Request) -> Response:
        """Finished jobs completed in [since, until) (epoch seconds), with attempts and result."""
        since = query_float(request, "since", 0.0, high=float(2**40))
        until = query_float(request, "until", float(2**40), high=float(2**40))
        limit = query_int(request, "limit", 1000, low=1, high=10_000) or 1000
        offset = query_int(request, "offset", 0, low=0, high=INT32_MAX) or 0
        found = await self.call(self.store.finished_between, since, until, limit, offset)
        shown = self.shown_to(request)
        return JsonResponse({"jobs": [detail_body(d, shown) for d in found], "count": len(found)})

    # -------------------------------------------------------------- misc

    async def health(self, request: Request) -> Response:
        """Liveness, plus which master this is, which one leads, and how other masters'
        work reaches it ("local": an SQLite store has no other masters)."""
        return JsonResponse(
            {
                "status": "healthy",
                "master": self.id,
                "leader": self.leadership.leader,
                "wakeups": "local" if self.wakeups is None else self.wakeups.mode,
            }
        )

    async def ready(self, request: Request) -> Response:
        """Whether this master can serve: its store answers and takes writes, and it is not
        stopping. 503 otherwise, so a load balancer routes elsewhere."""
        try:
            await self.call(self.store.check)
        except StoreUnavailable as exc:
            self.store_unavailable(exc.cause)
            return _unready("unavailable", "unavailable", exc.cause)
        self.store_health.ok()
        if self.stopping:
            return _unready("stopping", "ok", "the master is shutting down")
        return JsonResponse({"status": "ready", "store": "ok", "reason": None})

    def store_unavailable(self, cause: str) -> None:
        """A store call failed for a cause outside ffleet: log the change, and do not count the
        time against nodes (heartbeats fail too)."""
        self.store_health.failed(cause)
        self.hold.blind()

    async def metrics_text(self, request: Request) -> Response:
        """Prometheus text format; the fleet's gauges are read from the store now."""
        return Response(await self.call(self.metrics.render), media_type=CONTENT_TYPE)

    async def openapi_json(self, request: Request) -> Response:
        return JsonResponse(self.openapi)

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(self.docs_page)

    def begin_stop(self) -> None:
        """A planned stop: stop reaping and dispatching first, then answer every waiting job
        request at once with no job, so the process can exit within moments."""
        if self.stopping:
            return
        self.stopping = True
        if self._reaper is not None:
            self._reaper.cancel()
        waiting = self.dispatcher.waiting
        self.dispatcher.notify_all()
        log.info("master stopping: reaper stopped, %d waiting job request(s) answered", waiting)

    async def reaper(self) -> None:
        """The leader's duties, every `reap_interval_s`: end what outlived its time, age the
        queue, and now and then forget day-old idempotency keys. Each pass runs only while
        this master holds the lead (see leadership.py: also why it starts late), and never
        while the master could not see its fleet (see reap_hold.py): one node timeout after
        its start, after a stall of its own or a clock step, after a store failure. While
        held it only checks the store, so that it knows when the store is back.
        """
        forgotten_at = 0.0
        while True:
            await asyncio.sleep(self.settings.reap_interval_s)
            gap = self.hold.tick()
            if gap is not None:
                log.warning(
                    "%s; no node is judged for %g s (heartbeats went unheard meanwhile)",
                    gap,
                    self.hold.hold_s,
                )
            if not self.leadership.is_leader:
                continue
            now = self.clock.now()
            try:
                if not self.hold.may_reap():
                    await self.call(self.store.check)
                    self.store_health.ok()
                    continue
                await self._reap(now)
                if now - forgotten_at >= RETENTION_INTERVAL_S:
                    await self.call(self.store.expire_idempotency_keys, now)
                    forgotten_at = now
            except StoreUnavailable as exc:
                self.store_unavailable(exc.cause)
                continue
            except Exception:
                log.exception("reaper pass failed; will try again")
                continue
            self.store_health.ok()

    async def _reap(self, now: float) -> None:
        """One pass, in the store's bounded batches: the event loop serves requests (heartbeats
        among them) between them, so a vanished fleet's 20,000 leases never hold it for long."""
        while True:
            report = await self.call(self.store.reap, now)
            for node_id in report.offline_nodes:
                log.warning("node %s missed its heartbeats: offline", node_id)
            self.metrics.reaped(report)
            for job_id in report.requeued_jobs:
                log.warning("job %s lost its attempt; queued again with backoff", job_id)
            for job_id in report.failed_jobs:
                log.warning("job %s failed: out of attempts", job_id)
            for when in report.retry_at:
                self._wake_at(when)
            if not report.more:
                break
            await asyncio.sleep(0)
        self.hold.worked()

    def endpoints(self) -> dict[str, dict[str, tuple[Handler, frozenset[str] | None]]]:
        """Path -> method -> (handler, roles that may call it; None: public). One route per
        path, so a 405 names every allowed method."""
        admin = self.admin
        return {
            "/health": {"GET": (self.health, None)},
            "/ready": {"GET": (self.ready, None)},
            "/nodes/register": {"POST": (self.register, REGISTER)},
            "/nodes": {"GET": (self.list_nodes, READ)},
            "/nodes/{node_id}": {"GET": (self.get_node, READ)},
            "/nodes/{node_id}/heartbeat": {"POST": (self.heartbeat, NODE)},
            "/nodes/{node_id}/drain": {"POST": (self.drain, ADMIN)},
            "/jobs": {"GET": (self.list_jobs, READ), "POST": (self.create_job, SUBMIT)},
            "/jobs/batch": {"POST": (self.create_batch, SUBMIT)},
            "/jobs/purge": {"POST": (self.purge_jobs, ADMIN)},
            "/jobs/next": {"GET": (self.next_job, NODE), "POST": (self.next_job, NODE)},
            "/jobs/{job_id}": {"GET": (self.get_job, READ)},
            "/jobs/{job_id}/explain": {"GET": (self.explain, READ)},
            "/jobs/{job_id}/cancel": {"POST": (self.cancel, SUBMIT)},
            "/jobs/{job_id}/retry": {"POST": (self.retry, SUBMIT)},
            "/jobs/{job_id}/release": {"POST": (self.release, NODE)},
            "/results": {"GET": (self.list_results, READ), "POST": (self.post_result, NODE)},
            "/results/export": {"GET": (self.export_results, READ)},
            # Public like /health: Prometheus scrapes it, and it holds counts and node ids,
            # never a parameter, result or secret.
            "/metrics": {"GET": (self.metrics_text, None)},
            "/tokens": {"GET": (admin.list_tokens, ADMIN), "POST": (admin.create_token, ADMIN)},
            "/tokens/{token_id}/revoke": {"POST": (admin.revoke_token, ADMIN)},
            "/audit": {"GET": (admin.list_audit, ADMIN)},
            "/blobs/{digest}": {
                "GET": (self.blobs.download, READ | NODE),
                "PUT": (self.blobs.upload, SUBMIT | NODE),
            },
            "/blobs/{digest}/upload": {"GET": (self.blobs.upload_state, SUBMIT | NODE)},
            "/openapi.json": {"GET": (self.openapi_json, None)},
            "/docs": {"GET": (self.docs, None)},
        }

    async def remeasure_clock(self) -> None:
        while True:
            await asyncio.sleep(REMEASURE_S)
            try:
                await self.call(self.clock.measure)
            except Exception as exc:
                log.warning("could not measure the clock offset to the database: %s", exc)

    async def start(self) -> list[asyncio.Task[None]]:
        """Open the store's threads, measure the clock, then start the background duties."""
        if not self.store.inline:
            self._executor = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="store")
        self.stopping = False  # served again after a stop
        await self.call(self.clock.measure)
        self.clock.check(self.settings.policy.node_timeout_s)
        # The start grace counts from when the app begins to serve, not from its creation.
        self.hold = ReapHold(self.settings.policy.node_timeout_s, self.settings.reap_interval_s)
        self._reaper = asyncio.create_task(self.reaper())
        duties = [self.leadership.run(), self.audit.run()]
        if self.settings.insecure:
            duties.append(self.warn_insecure())
        if self.archive is not None:
            duties.append(self.archive.run())
        if self.wakeups is not None:
            duties += [self.wakeups.run(), self.remeasure_clock()]
        return [self._reaper, *(asyncio.create_task(duty) for duty in duties)]

    async def stop(self, tasks: list[asyncio.Task[None]]) -> None:
        self.begin_stop()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.call(self.audit.flush)
        await self.leadership.resign()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def warn_insecure(self) -> None:
        """An open master on a reachable address keeps saying so."""
        while True:
            await asyncio.sleep(self.settings.insecure_warn_s)
            log.warning(INSECURE_WARNING)

    def routes(self) -> list[BaseRoute]:
        return [
            *ui.routes(self.store, self.access, lambda handler: self.guarded(handler, READ)),
            *(
                Route(
                    path,
                    _by_method(
                        {method: self.guarded(*guard) for method, guard in handlers.items()}
                    ),
                    methods=list(handlers),
                )
                for path, handlers in self.endpoints().items()
            ),
        ]


def _by_method(handlers: dict[str, Handler]) -> Handler:
    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return dispatch


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not tell the other masters: %s", task.exception())


def _refused(request: Request, status_code: int, message: str) -> Response:
    log.warning("%s %s refused (%d): %s", request.method, request.url.path, status_code, message)
    return error_response(status_code, message)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    reply = _refused(request, exc.status_code, exc.message)
    reply.headers.update(exc.headers)
    return reply


async def _store_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreError)
    return _refused(request, exc.status_code, str(exc))


def _unready(status: str, store: str, reason: str) -> Response:
    return JsonResponse(
        {"status": status, "store": store, "reason": reason},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    """503 with the cause; logged once per change of condition, not once per request."""
    assert isinstance(exc, StoreUnavailable)
    request.app.state.master.store_unavailable(exc.cause)
    return JsonResponse(
        {"error": str(exc)}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    code = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", "error")
    reply = _refused(request, code, str(detail))
    reply.headers.update(getattr(exc, "headers", None) or {})  # a 405's Allow
    return reply


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s %s: %r", request.method, request.url.path, exc, exc_info=exc)
    return error_response(500, "internal error; see the master log")


def create_app(settings: MasterSettings, store: Store | None = None) -> Starlette:
    """Build the ASGI app; the store is opened here unless one is given (tests)."""
    from starlette.exceptions import HTTPException

    owned = store is None
    lock = hold_sqlite_file(settings.store_url) if owned else None
    try:
        opened = store if store is not None else open_store(settings.store_url, settings.policy)
    except BaseException:
        if lock is not None:
            lock.close()
        raise
    try:
        enforced = authentication_on(settings, opened)
        if enforced:
            bootstrap_admin(opened, settings.admin_token_file)
        master = MasterApp(
            opened, settings, DirectoryBlobStore(settings.blob_root), enforced=enforced
        )
    except BaseException:
        if owned:
            opened.close()
        if lock is not None:
            lock.close()
        raise

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sweep_every = min(3600.0, settings.blob_retention_s / 2)
        tasks = await master.start()
        tasks += [
            asyncio.create_task(master.blobs.sweeper(settings.blob_retention_s, sweep_every)),
            asyncio.create_task(master.splitter.run(master.dispatcher.notify)),
        ]
        try:
            yield
        finally:
            await master.stop(tasks)
            if master.archive is not None:
                await master.archive.close()
            if owned:
                master.store.close()
            if lock is not None:
                lock.close()

    routes = master.routes()
    app = IndexedStarlette(
        routes=routes,
        middleware=[
            Middleware(
                HttpMetricsMiddleware, metrics=master.metrics, templates=route_templates(routes)
            )
        ],
        lifespan=lifespan,
        exception_handlers={
            ApiError: _api_error,
            StoreUnavailable: _store_unavailable,
            StoreError: _store_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
    app.state.master = master
    if settings.rate_limit > 0:
        app.add_middleware(
            RateLimitMiddleware,
            limiter=RateLimiter(settings.rate_limit, settings.rate_burst),
            key=master.rate_key,
        )
    app.add_middleware(BodyTimeoutMiddleware, timeout_s=settings.body_timeout_s)
    return app
