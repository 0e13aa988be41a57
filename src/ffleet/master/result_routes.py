"""The result endpoints: an agent's report (with the next claim in its transaction), the
result listing, and the export of finished jobs."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ffleet.master.http import JsonResponse, decode, query_float, query_id, query_int
from ffleet.master.job_routes import detail_body
from ffleet.models import INT32_MAX, Job, ReceivedResult, ResultSubmission
from ffleet.store import Conflict, ResultOutcome

if TYPE_CHECKING:
    from ffleet.master.app import MasterApp

log = logging.getLogger("ffleet.master")

# Results carry free-form metrics, so their pages are smaller than the jobs'.
RESULTS_PAGE, RESULTS_PAGE_MAX = 100, 1000


class ResultRoutes:
    """Routes over the master's store; `master` for its state (stopping or not), its archive
    and the job routes' dispatch bookkeeping."""

    def __init__(self, master: MasterApp) -> None:
        self.master = master
        self.store = master.store
        self.limit = master.limit
        self.call = master.call
        self.clock = master.clock
        self.metrics = master.metrics
        self.splitter = master.splitter
        self.jobs = master.jobs
        self.guard = master.guard
        self.settings = master.settings
        self.long_polls = master.long_polls

    async def post_result(self, request: Request) -> Response:
        """Store the result; with `claim_next`, reply with the node's next job, and with
        `claim_wait` too, hold the reply until one is claimable (a long poll, counted in the
        same bounds) once the result is stored. Past those bounds it answers at once: a
        result is never refused for them."""
        result = await decode(request, ReceivedResult, self.limit)
        node_id = result.node_id
        self.guard.identity(request).require_node(node_id)
        asked_next = result.claim_next
        if self.master.stopping:  # a stopping master hands out no more work
            result = msgspec.structs.replace(result, claim_next=False)
        wait = min(result.claim_wait, self.settings.max_wait_s) if result.claim_next else 0.0
        outcomes: list[ResultOutcome] = []

        async def store() -> Job | None:
            outcomes.append(await self._store(result))
            return outcomes[0].next_job

        if wait > 0 and self.long_polls.has_room(node_id):
            with self.long_polls.slot(node_id):
                job = await self.jobs.claim_waiting(request, node_id, wait, first=store)
        else:
            job = await store()
        reply: dict[str, Any] = {"status": "success"}
        if outcomes[0].duplicate:
            reply["duplicate"] = True
        if asked_next:
            reply["job"] = job
        return JsonResponse(reply)

    async def _store(self, result: ResultSubmission) -> ResultOutcome:
        """Store `result` (and claim with it); log and count what it changed."""
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
            if self.master.archive is not None and result.status == "completed":
                self.master.archive.add(result, job, job.completed_at or now)
            self.jobs.wake_when_due(job)
            self.splitter.result_stored(job.id)
        if outcome.next_job is not None:
            # the claim shared the result's transaction: its time is the dispatch's
            self.jobs.dispatched(outcome.next_job, result.node_id, store_seconds)
        return outcome

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
        shown = self.guard.shown_to(request)
        return JsonResponse({"jobs": [detail_body(d, shown) for d in found], "count": len(found)})
