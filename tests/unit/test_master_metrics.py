"""GET /metrics: the fleet's gauges come from the store, requests count under route templates."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from ffleet.master.app import create_app
from ffleet.master.metrics import UNMATCHED_ROUTE, HttpMetricsMiddleware, MasterMetrics
from ffleet.master.settings import MasterSettings
from ffleet.models import Job, ResultSubmission
from ffleet.store import ReapReport, open_store
from tests.unit.test_hot_series import without_created_times

NODE = {"cpu_threads": 8, "ram_bytes": 8 << 30, "slots": 1}
EXPOSITION = Path(__file__).parent.parent / "fixtures" / "master_metrics.prom"


def scrape(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    reply = client.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float | None:  # type: ignore[type-arg]
    return samples.get((name, frozenset(labels.items())))


def test_fleet_gauges_are_read_from_the_store_so_a_restart_keeps_them(tmp_path: Path) -> None:
    settings = MasterSettings(store_url=f"sqlite:///{tmp_path / 'ffleet.db'}")
    with TestClient(create_app(settings)) as first:
        node_id = first.post("/nodes/register", json=NODE).json()["id"]
        for priority in ("high", "high", "low"):
            first.post("/jobs", json={"scenario": "360p-h264", "priority": priority})
        first.post("/jobs", json={"scenario": "360p-h264", "requirements": {"gpu": True}})
        assert first.get("/jobs/next", params={"node_id": node_id}).json()["priority"] == 10
    with TestClient(create_app(settings)) as restarted:
        samples = scrape(restarted)
    assert value(samples, "ffleet_jobs", status="running", priority="10") == 1
    assert value(samples, "ffleet_jobs", status="pending", priority="10") == 1
    assert value(samples, "ffleet_jobs", status="pending", priority="0") == 1
    assert value(samples, "ffleet_jobs_unschedulable") == 1
    assert value(samples, "ffleet_nodes", status="busy") == 1
    assert value(samples, "ffleet_nodes", status="offline") == 0
    assert value(samples, "ffleet_node_running_jobs", node=node_id) == 1
    age = value(samples, "ffleet_node_heartbeat_age_seconds", node=node_id)
    assert age is not None and 0 <= age < 60
    assert value(samples, "ffleet_long_poll_waiters") == 0
    # what the first process counted is its own: the new one starts from zero
    assert value(samples, "ffleet_job_wait_seconds_count", codec="h264") is None


def test_outcomes_waits_and_stale_results_are_counted() -> None:
    with TestClient(create_app(MasterSettings(store_url="memory"))) as client:
        node_id = client.post("/nodes/register", json=NODE).json()["id"]
        client.post("/jobs", json={"scenario": "360p-vp9"})
        job = client.get("/jobs/next", params={"node_id": node_id}).json()
        done = {"job_id": job["id"], "node_id": node_id, "attempt": 1, "status": "completed"}
        assert client.post("/results", json=done).status_code == 200
        stale = {**done, "attempt": 2}
        assert client.post("/results", json=stale).status_code == 409
        samples = scrape(client)
    assert value(samples, "ffleet_job_outcomes_total", outcome="completed", reason="reported") == 1
    assert value(samples, "ffleet_job_wait_seconds_count", codec="vp9") == 1
    assert value(samples, "ffleet_job_run_seconds_count", codec="vp9") == 1
    assert value(samples, "ffleet_dispatch_latency_seconds_count") == 1
    assert value(samples, "ffleet_stale_results_total") == 1
    assert value(samples, "ffleet_jobs", status="completed", priority="5") == 1


def test_requests_count_under_their_route_template_whatever_the_ids() -> None:
    with TestClient(create_app(MasterSettings(store_url="memory"))) as client:
        client.get("/jobs/one")
        client.get("/jobs/two")
        client.get("/no/such/path")
        client.get("/health")
        samples = scrape(client)
    route = {"route": "/jobs/{job_id}", "method": "GET"}
    assert value(samples, "ffleet_http_requests_total", **route, status="404") == 2
    assert value(samples, "ffleet_http_request_duration_seconds_count", **route) == 2
    assert (
        value(samples, "ffleet_http_requests_total", route="unmatched", method="GET", status="404")
        == 1
    )
    assert (
        value(samples, "ffleet_http_requests_total", route="/health", method="GET", status="200")
        == 1
    )


def job_of(scenario: str, status: str, attempt: int = 1) -> Job:
    return Job(
        id="j1",
        scenario=scenario,
        confidence="exact",
        parameters={},
        status=status,
        node_id="n1",
        created_at=100.0,
        started_at=101.5,
        completed_at=131.0,
        retry_count=attempt - 1,
        error=None,
        attempt=attempt,
    )


def every_event(metrics: MasterMetrics) -> None:
    """Each event MasterMetrics counts, with durations on and beside the buckets' bounds."""
    for n, seconds in enumerate([0.0004, 0.001, 0.0025, 0.7, 45.0, 90.0]):
        metrics.request_done("/results", "POST", 200, seconds)
        metrics.request_done("/nodes/{node_id}/heartbeat", "POST", 200 if n % 3 else 404, seconds)
        metrics.dispatched(job_of("1080p30-h264", "running", attempt=1 + n % 2), seconds / 10)
    metrics.dispatched(job_of("360p-vp9", "running"), 0.002)
    metrics.dispatched(job_of("720p-av1", "running"), 0.002)
    metrics.request_done(UNMATCHED_ROUTE, "GET", 404, 0.00001)
    completed = ResultSubmission(job_id="j1", node_id="n1", status="completed", attempt=1)
    failed = ResultSubmission(job_id="j1", node_id="n1", status="failed", attempt=1)
    metrics.result_stored(completed, job_of("360p-vp9", "completed"), 140.0)
    metrics.result_stored(failed, job_of("360p-vp9", "failed"), 140.0)
    metrics.result_stored(failed, job_of("360p-vp9", "pending"), 140.0)
    metrics.reaped(ReapReport(requeued_jobs=["j2", "j3"], failed_jobs=["j4"]))
    metrics.user_retried()
    metrics.stale_result()


def test_the_exposition_is_prometheus_clients_series_for_series() -> None:
    """The same events, fed to the master's metrics when prometheus_client's Counter and
    Histogram counted them, gave tests/fixtures/master_metrics.prom (_created's times aside)."""
    metrics = MasterMetrics(open_store("memory"), lambda: 0)
    every_event(metrics)
    assert without_created_times(metrics.render()) == EXPOSITION.read_text()


async def answer_then(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the status its path names, then raises if the path says so."""
    if scope["path"] == "/raise":
        raise RuntimeError("before answering")
    await send({"type": "http.response.start", "status": int(scope["path"][1:4]), "headers": []})
    await send({"type": "http.response.body", "body": b""})
    if scope["path"].endswith("/raise"):
        raise RuntimeError("after answering")


def test_a_request_counts_under_the_status_it_got_500_when_the_app_raised_first() -> None:
    metrics = MasterMetrics(open_store("memory"), lambda: 0)
    counted = HttpMetricsMiddleware(answer_then, metrics, {})
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def requests() -> None:
        for path in ["/201", "/raise", "/404/raise", "/201"]:
            scope = {"type": "http", "method": "GET", "path": path}
            with contextlib.suppress(RuntimeError):
                await counted(scope, receive, send)

    asyncio.run(requests())
    assert [m.get("status") for m in sent] == [201, None, 404, None, 201, None]
    counts = {values: series.value for values, series in metrics.requests.series.items()}
    unmatched = (UNMATCHED_ROUTE, "GET")
    assert counts == {(*unmatched, "201"): 2, (*unmatched, "500"): 1, (*unmatched, "404"): 1}
