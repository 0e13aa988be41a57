"""The job endpoints: submission (single, batch, split), listing, the claim long-poll, and
what users and agents do to one job (explain, cancel, retry, release)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ffleet.blobs import BlobError, is_ref, parse_ref
from ffleet.master.http import (
    ApiError,
    JsonResponse,
    client_gone,
    decode,
    path_id,
    query_float,
    query_id,
    query_int,
    query_name,
)
from ffleet.master.id_prefixes import by_id
from ffleet.master.quotas import check_submission
from ffleet.master.splitter import SplitRefused, check_request
from ffleet.models import (
    INT32_MAX,
    Job,
    JobBatch,
    JobDetail,
    JobRequest,
    PurgeRequest,
    Release,
    encode_hook,
)
from ffleet.states import JobStatus
from ffleet.store import JobAfterResult

if TYPE_CHECKING:
    from ffleet.master.app import MasterApp

log = logging.getLogger("ffleet.master")

# Page sizes: a listing without `limit` is one bounded page, never the whole table.
JOBS_PAGE, JOBS_PAGE_MAX = 1000, 10_000
# The largest batch created on the event loop, a member of its turn's group commit on SQLite
# (a few ms of the loop; its savepoint journals no more than a reaper's batch, which stays a
# member too: base.REAP_BATCH). A larger one runs on a thread, alone, so that /health and the
# long-polls need not wait for thousands of jobs.
LOOP_BATCH = 100


def detail_body(detail: JobDetail, shown: Callable[[Job], Job]) -> dict[str, Any]:
    """GET /jobs/{id}'s shape: the job's fields (as `shown` to the caller) plus its
    `attempts` and stored `result`."""
    body: dict[str, Any] = msgspec.to_builtins(shown(detail.job), enc_hook=encode_hook)
    body["attempts"] = msgspec.to_builtins(detail.attempts, enc_hook=encode_hook)
    body["result"] = msgspec.to_builtins(detail.result, enc_hook=encode_hook)
    return body


class JobRoutes:
    """Routes over the master's store, dispatcher and splitter; `master` for its state
    (stopping or not, served on threads or not) and its backoff wake-ups."""

    def __init__(self, master: MasterApp) -> None:
        self.master = master
        self.store = master.store
        self.settings = master.settings
        self.limit = master.limit
        self.call = master.call
        self.clock = master.clock
        self.dispatcher = master.dispatcher
        self.long_polls = master.long_polls
        self.metrics = master.metrics
        self.splitter = master.splitter
        self.blobs = master.blobs
        self.guard = master.guard
        self.identity = master.guard.identity

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
                job_request, job_request.split_s, self.guard.submitted_by(request)
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
        created = await self._create(request, batch.jobs, heavy=len(batch.jobs) > LOOP_BATCH)
        request.state.audit_target = f"{len(created)} jobs"
        log.info("batch of %d jobs created", len(created))
        return JsonResponse({"jobs": created, "count": len(created)}, status_code=201)

    async def _create(
        self, request: Request, jobs: list[JobRequest], heavy: bool = False
    ) -> list[Job]:
        """Create, or with an `Idempotency-Key` already used, return what the first did.
        `heavy` (a large batch: see LOOP_BATCH) runs off the event loop on SQLite too."""
        call = self.call if self.master.threaded or not heavy else asyncio.to_thread
        created = await call(
            self.store.create_jobs,
            jobs,
            self.clock.now(),
            submitted_by=self.guard.submitted_by(request),
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
        shown = list(map(self.guard.shown_to(request), found))
        return JsonResponse({"jobs": shown, "count": len(shown), "total": total})

    async def get_job(self, request: Request) -> Response:
        job_id = path_id(request, "job_id")
        detail = await self.call(by_id, self.store, "job", job_id, self.store.get_job)
        body = detail_body(detail, self.guard.shown_to(request))
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
                by_id,
                self.store,
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
        if self.master.stopping:
            job = None
        elif wait > 0:
            with self.long_polls.slot(node_id):
                job = await self.claim_waiting(request, node_id, wait)
        else:
            job = await self.claim_waiting(request, node_id, wait)
        if job is None:
            return JsonResponse({"job": None})
        request.state.audit_target = job.id
        return JsonResponse(job)

    async def claim_waiting(
        self,
        request: Request,
        node_id: str,
        wait: float,
        first: Callable[[], Awaitable[Job | None]] | None = None,
    ) -> Job | None:
        """The node's next job, waiting up to `wait` s for one; `first` is the first look
        when it is not a claim of its own (a result's, which claims in its transaction)."""

        async def claim() -> Job | None:
            started = time.perf_counter()
            job = await self.call(self.store.claim, node_id, self.clock.now())
            if job is not None:
                self.dispatched(job, node_id, time.perf_counter() - started)
            return job

        return await self.dispatcher.long_poll(
            claim,
            wait,
            node_id=node_id,
            # On SQLite this is the only master: every change that makes work claimable
            # passes through it and wakes a waiter. Other masters' hints can be lost.
            recheck_s=None if self.store.inline else self.settings.recheck_s,
            client_gone=lambda: client_gone(request),
            stopping=lambda: self.master.stopping,
            first=first,
        )

    def dispatched(self, job: Job, node_id: str, claim_seconds: float) -> None:
        self.dispatcher.taken()
        log.info("job %s (attempt %d) dispatched to node %s", job.id, job.attempt, node_id)
        self.metrics.dispatched(job, claim_seconds)

    def wake_when_due(self, job: JobAfterResult) -> None:
        """A job queued again with a backoff becomes claimable later: wake a waiter then."""
        if job.status == JobStatus.PENDING and job.not_before is not None:
            self.master.wake_at(job.not_before)

    async def cancel(self, request: Request) -> Response:
        def cancel(job_id: str) -> Job:
            self.guard.require_own_job(request, job_id)
            return self.store.cancel(job_id, now)

        now = self.clock.now()
        job = await self.call(by_id, self.store, "job", path_id(request, "job_id"), cancel)
        log.info("job %s cancel requested (now %s)", job.id, job.status)
        self.splitter.wake()
        return JsonResponse(job)

    async def retry(self, request: Request) -> Response:
        def retry(job_id: str) -> Job:
            self.guard.require_own_job(request, job_id)
            return self.store.retry(job_id, now)

        now = self.clock.now()
        job = await self.call(by_id, self.store, "job", path_id(request, "job_id"), retry)
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
