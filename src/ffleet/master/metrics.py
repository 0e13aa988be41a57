"""The master's Prometheus metrics, served as text at GET /metrics.

What describes the fleet (jobs by status, nodes by status, heartbeat ages) is read from the store
when Prometheus scrapes, never counted in memory: it is right after a restart and every master
sharing one database reports the same. What this process did (outcomes, retries, refusals,
requests, latencies) is counted here, as counters and histograms Prometheus sums over masters.
Each app has its own registry, so several apps in one process (tests) never share a series.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ffleet.models import Job, ResultSubmission
from ffleet.scenarios import ScenarioError, parse_scenario
from ffleet.states import JobStatus, NodeStatus
from ffleet.store import JobAfterResult, ReapReport, Store

K = TypeVar("K")
S = TypeVar("S")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED_ROUTE = "unmatched"  # any path no route serves: one series, however many are probed
# Seconds: a job waits and runs from a second to hours; a request from 1 ms to a long-poll.
JOB_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
CODEC_SERIES_CACHED = 1024  # (histogram, scenario) pairs whose labelled series is at hand
DISPATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


@functools.lru_cache(maxsize=1024)
def scenario_codec(scenario: str) -> str:
    """The codec label of a job's scenario (`unknown` for a name only a v1.0 client sends)."""
    try:
        return parse_scenario(scenario).codec
    except ScenarioError:
        return "unknown"


class FleetCollector(Collector):
    """Gauges read from the store (and the dispatcher's waiters) at each scrape."""

    def __init__(self, store: Store, waiters: Callable[[], int]) -> None:
        self.store = store
        self.waiters = waiters

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "ffleet_jobs", "Jobs by status and submitted priority.", labels=["status", "priority"]
        )
        unschedulable = 0
        for tally in self.store.tally_jobs():
            jobs.add_metric([tally.status, str(tally.priority)], tally.jobs)
            if tally.unschedulable and tally.status == JobStatus.PENDING:
                unschedulable += tally.jobs
        yield jobs
        yield GaugeMetricFamily(
            "ffleet_jobs_unschedulable",
            "Pending jobs no registered node can run.",
            value=unschedulable,
        )
        yield from self._nodes(time.time())
        yield GaugeMetricFamily(
            "ffleet_long_poll_waiters",
            "Job requests (polls, and results asking for the next job) this master holds open, "
            "waiting for work.",
            value=self.waiters(),
        )

    def _nodes(self, now: float) -> Iterable[Metric]:
        by_status = dict.fromkeys((s.value for s in NodeStatus), 0)
        age = GaugeMetricFamily(
            "ffleet_node_heartbeat_age_seconds",
            "Seconds since each node's last heartbeat.",
            labels=["node"],
        )
        running = GaugeMetricFamily(
            "ffleet_node_running_jobs", "Jobs running on each node.", labels=["node"]
        )
        for node in self.store.list_nodes():
            by_status[node.status] = by_status.get(node.status, 0) + 1
            if node.last_heartbeat is not None:
                age.add_metric([node.id], max(0.0, now - node.last_heartbeat))
            running.add_metric([node.id], len(node.running_job_ids))
        nodes = GaugeMetricFamily("ffleet_nodes", "Registered nodes by status.", labels=["status"])
        for status, count in by_status.items():
            nodes.add_metric([status], count)
        return nodes, age, running


class MasterMetrics:
    """Every series of one master, and the events that move them."""

    def __init__(self, store: Store, waiters: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(FleetCollector(store, waiters))
        self.outcomes = Counter(
            "ffleet_job_outcomes",
            "Attempts ended, by outcome and reason class.",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.retries = Counter(
            "ffleet_job_retries",
            "Jobs queued again, by cause (failure, lost attempt, user).",
            ["cause"],
            registry=self.registry,
        )
        self.stale_results = Counter(
            "ffleet_stale_results",
            "Results refused (409) because their attempt was no longer current.",
            registry=self.registry,
        )
        self.wait = Histogram(
            "ffleet_job_wait_seconds",
            "From submission to the first claim, by the scenario's codec.",
            ["codec"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.run = Histogram(
            "ffleet_job_run_seconds",
            "From the last claim to the final result, by the scenario's codec.",
            ["codec"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.dispatch = Histogram(
            "ffleet_dispatch_latency_seconds",
            "How long choosing and handing out a job took (the store's claim).",
            buckets=DISPATCH_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "ffleet_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ffleet_http_request_duration_seconds",
            "HTTP request latency by route template and method (held replies included: a "
            "long-poll, a result asking for the next job with claim_wait).",
            ["route", "method"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )

        self._request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._outcome_series: dict[tuple[str, str], Counter] = {}
        self._codec_series: dict[tuple[Histogram, str], Histogram] = {}

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def dispatched(self, job: Job, claim_seconds: float) -> None:
        self.dispatch.observe(claim_seconds)
        if job.attempt == 1 and job.started_at is not None and job.created_at is not None:
            waited = max(0.0, job.started_at - job.created_at)
            self._by_codec(self.wait, job.scenario).observe(waited)

    def result_stored(self, result: ResultSubmission, job: JobAfterResult, now: float) -> None:
        """A new (not duplicate) result moved `job` to its current state."""
        requeued = job.status == JobStatus.PENDING
        reason = "retried" if requeued else "final" if result.status == "failed" else "reported"
        self._outcome(result.status, reason).inc()
        if requeued:
            self.retries.labels("failure").inc()
        elif job.started_at is not None:
            ran = max(0.0, (job.completed_at or now) - job.started_at)
            self._by_codec(self.run, job.scenario).observe(ran)

    def _outcome(self, status: str, reason: str) -> Counter:
        """The outcome series of a result, looked up once per status and reason."""
        return _series(
            self._outcome_series, (status, reason), lambda: self.outcomes.labels(status, reason)
        )

    def _by_codec(self, histogram: Histogram, scenario: str) -> Histogram:
        """The series of `histogram` for a scenario's codec, looked up once per scenario (of
        the jobs seen lately: a bounded table, as scenario names are the submitters')."""
        return _series(
            self._codec_series,
            (histogram, scenario),
            lambda: histogram.labels(scenario_codec(scenario)),
            bound=CODEC_SERIES_CACHED,
        )

    def reaped(self, report: ReapReport) -> None:
        if report.requeued_jobs:
            self.outcomes.labels("lost", "retried").inc(len(report.requeued_jobs))
            self.retries.labels("lost").inc(len(report.requeued_jobs))
        if report.failed_jobs:
            self.outcomes.labels("lost", "out_of_attempts").inc(len(report.failed_jobs))

    def user_retried(self) -> None:
        self.retries.labels("user").inc()

    def stale_result(self) -> None:
        self.stale_results.inc()

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        counter, histogram = _series(
            self._request_series,
            (route, method, status),
            lambda: (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            ),
        )
        counter.inc()
        histogram.observe(seconds)


def _series(table: dict[K, S], key: K, make: Callable[[], S], bound: int | None = None) -> S:
    """`table[key]`, made once: a metric's `labels()` costs a lock and a tuple on every call.
    A table with a `bound` starts afresh when full (its keys come from submitters)."""
    series = table.get(key)
    if series is None:
        if bound is not None and len(table) >= bound:
            table.clear()
        series = table[key] = make()
    return series


def route_templates(routes: Iterable[BaseRoute], prefix: str = "") -> dict[Any, str]:
    """Endpoint -> path template (`/jobs/{job_id}`): the label a request is counted under,
    so one series stands for every job id. Mounted routes are listed under their mount."""
    templates: dict[Any, str] = {}
    for route in routes:
        if isinstance(route, Mount):
            templates[route.app] = prefix + route.path
            templates.update(route_templates(route.routes, prefix + route.path))
        elif isinstance(route, Route):
            templates[route.endpoint] = prefix + route.path
    return templates


class HttpMetricsMiddleware:
    """Counts every HTTP request under the template of the route that served it.

    Starlette's router writes the matched endpoint into the request's scope; the template is
    looked up from it once the response has gone, so matching costs nothing extra."""

    def __init__(self, app: ASGIApp, metrics: MasterMetrics, templates: Mapping[Any, str]) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            route = self.templates.get(scope.get("endpoint"), UNMATCHED_ROUTE)
            self.metrics.request_done(route, scope["method"], status, time.perf_counter() - started)
