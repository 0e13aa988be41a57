"""One regression test per finding of the outside probe against the API: each bad request is
a clear 4xx that changes nothing, or costs a bounded amount of work."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from ffleet.master.app import create_app
from ffleet.master.http import ApiError
from ffleet.master.job_routes import JOBS_PAGE
from ffleet.master.long_polls import LongPolls
from ffleet.master.settings import MasterSettings
from ffleet.store import SchedulingPolicy, open_store
from ffleet.store.placement import MAX_REQUIREMENT_SETS
from tests.conftest import store_url


@pytest.fixture
def url(tmp_path: Path) -> str:
    return store_url("sqlite", tmp_path)


def client_for(url: str, **settings: Any) -> TestClient:
    return TestClient(create_app(MasterSettings(store_url=url, **settings)))


@pytest.fixture
def client(url: str) -> Iterator[TestClient]:
    with client_for(url) as opened:
        yield opened


@pytest.fixture(params=["sqlite", "postgres"], scope="module")
def each_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """One master per backend for the tests whose requests change nothing: PostgreSQL is
    where a 32-bit INTEGER, a NUL or a 65-character id used to become a 500."""
    with client_for(store_url(request.param, tmp_path_factory.mktemp("db"))) as opened:
        yield opened


def state(client: TestClient) -> tuple[Any, ...]:
    jobs = client.get("/jobs", params={"limit": 10_000}).json()
    return jobs["total"], client.get("/nodes").json()["count"], client.get("/results").json()


def refused(client: TestClient, method: str, path: str, status: int, **kwargs: Any) -> str:
    """Sends the request and checks it was refused with `status` and changed nothing."""
    before = state(client)
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert state(client) == before
    error: str = response.json()["error"]
    return error


def register(client: TestClient, **fields: Any) -> str:
    body = {"cpu_threads": 4, "ram_bytes": 2**33, "slots": 1, **fields}
    response = client.post("/nodes/register", json=body)
    assert response.status_code == 201, response.text
    node_id: str = response.json()["id"]
    return node_id


@pytest.mark.parametrize(
    "when", ["0001-01-01T00:00:00+01:00", "0000-01-01T00:00:00Z", "10000-01-01T00:00:00Z"]
)
def test_a_time_outside_the_range_is_refused_and_dispatch_goes_on(
    client: TestClient, when: str
) -> None:
    body = {"scenario": "360p-h264", "priority": "high", "not_before": when}
    refused(client, "POST", "/jobs", 400, json=body)
    node = register(client)
    assert client.post("/jobs", json={"scenario": "360p-h264"}).status_code == 201
    assert client.get("/jobs/next", params={"node_id": node}).json()["scenario"] == "360p-h264"


def test_a_result_with_a_completed_at_outside_the_range_is_refused(client: TestClient) -> None:
    node = register(client)
    job = client.post("/jobs", json={"scenario": "360p-h264"}).json()
    claimed = client.get("/jobs/next", params={"node_id": node}).json()
    assert claimed["id"] == job["id"]
    result = {
        "job_id": job["id"],
        "node_id": node,
        "status": "completed",
        "attempt": 1,
        "completed_at": "0001-01-01T00:00:00+01:00",
    }
    refused(client, "POST", "/results", 400, json=result)
    assert client.get("/results").status_code == 200


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_bad_time_stored_before_it_was_checked_fails_alone(backend: str, tmp_path: Path) -> None:
    url = store_url(backend, tmp_path)
    store = open_store(url)
    with TestClient(create_app(MasterSettings(store_url=url), store)) as client:
        job = client.post("/jobs", json={"scenario": "360p-h264"}).json()
        database = store.db  # type: ignore[attr-defined]
        marker = "?" if database.is_sqlite else "%s"
        with database.transaction() as tx:  # as release 0.1.0 let a client write it
            tx._cursor.execute(
                f"UPDATE jobs SET not_before = -62135600000.0, created_at = 1e300 "
                f"WHERE id = {marker}",
                (job["id"],),
            )
        listed = client.get("/jobs")
        assert listed.status_code == 200
        [shown] = listed.json()["jobs"]
        assert shown["not_before"] is None and shown["created_at"] is None
        assert client.post(f"/jobs/{job['id']}/cancel").status_code == 200
    store.close()


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/jobs", {"scenario": "360p-h264", "parameters": {"bitrate": "9" * 400}}, 400),
        ("/jobs", {"scenario": "360p-h264", "priority": 2**63}, 422),
        ("/jobs", {"scenario": "360p-h264", "priority": 2**31}, 422),
        ("/jobs", {"scenario": "360p-h264", "confidence": "a\x00b"}, 422),
        ("/jobs", {"scenario": "360p-h264", "confidence": "x" * 300}, 422),
        ("/jobs", {"scenario": "360p-h264", "parameters": {"input": "a" * 5000}}, 400),
        ("/nodes/register", {"ram_bytes": 2**63}, 422),
        ("/nodes/register", {"cpu_threads": 2**31}, 422),
        ("/nodes/register", {"cpu_model": "Xeon\x1b]8;;http://evil\x07"}, 422),
        ("/nodes/register", {"id": "a/b"}, 422),
        ("/nodes/register", {"id": ".."}, 422),
        ("/nodes/register", {"id": "x" * 65}, 422),
        ("/nodes/register", {"id": "ok\n"}, 422),
    ],
)
def test_values_the_store_cannot_hold_are_refused(
    each_store: TestClient, path: str, body: dict[str, Any], status: int
) -> None:
    refused(each_store, "POST", path, status, json=body)


def test_json_nested_a_thousand_deep_is_a_400(each_store: TestClient) -> None:
    deep = b'{"scenario": "360p-h264", "parameters": {"a": ' + b"[" * 1000 + b"]" * 1000 + b"}}"
    headers = {"content-type": "application/json"}
    refused(each_store, "POST", "/jobs", 400, content=deep, headers=headers)


@pytest.mark.parametrize("path", ["/jobs/a%00b", "/nodes/a%00b", f"/jobs/{'x' * 100}"])
def test_ids_no_id_could_match_are_404s(each_store: TestClient, path: str) -> None:
    refused(each_store, "GET", path, 404)


def test_a_body_must_be_json_so_a_browser_cannot_forge_a_request(client: TestClient) -> None:
    body = b'{"scenario": "360p-h264"}'
    for media_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        headers = {"content-type": media_type} if media_type else {}
        refused(client, "POST", "/jobs", 415, content=body, headers=headers)


def test_a_405_names_the_methods_allowed(client: TestClient) -> None:
    response = client.delete("/jobs")
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "POST"}


def test_listings_have_a_default_and_a_maximum_page(url: str) -> None:
    with client_for(url, max_batch=JOBS_PAGE + 1) as client:
        jobs = [{"scenario": "360p-h264"}] * (JOBS_PAGE + 1)
        assert client.post("/jobs/batch", json={"jobs": jobs}).status_code == 201
        page = client.get("/jobs").json()
        assert (page["count"], page["total"]) == (JOBS_PAGE, JOBS_PAGE + 1)
        refused(client, "GET", "/jobs?limit=10001", 400)
        refused(client, "GET", "/results?limit=1001", 400)


def test_batch_size_queue_quota_job_size_and_attempts_are_capped(url: str) -> None:
    with client_for(url, max_batch=3, max_queued_jobs=4) as client:
        job = {"scenario": "360p-h264"}
        refused(client, "POST", "/jobs/batch", 413, json={"jobs": [job] * 4})
        assert client.post("/jobs/batch", json={"jobs": [job] * 3}).status_code == 201
        before = state(client)
        full = client.post("/jobs/batch", json={"jobs": [job] * 2})
        assert full.status_code == 429 and int(full.headers["retry-after"]) > 0
        assert state(client) == before
        huge = {"scenario": "8192x8192@240-h264", "parameters": {"duration": 3600}}
        assert "--max-job-pixels" in refused(client, "POST", "/jobs", 400, json=huge)
        refused(client, "POST", "/jobs", 400, json={**job, "max_attempts": 100})


def test_one_batch_names_a_bounded_number_of_requirement_sets(client: TestClient) -> None:
    jobs = [
        {"scenario": "360p-h264", "requirements": {"labels": {"k": str(i)}}}
        for i in range(MAX_REQUIREMENT_SETS + 1)
    ]
    refused(client, "POST", "/jobs/batch", 400, json={"jobs": jobs})


def test_jobs_no_node_can_run_do_not_hide_the_job_behind_them(client: TestClient) -> None:
    node = register(client, labels={"zone": "a"})
    stuck = {"scenario": "360p-h264", "requirements": {"labels": {"zone": "b"}}}
    assert client.post("/jobs/batch", json={"jobs": [stuck] * 3000}).status_code == 201
    runnable = client.post("/jobs", json={"scenario": "360p-h264"}).json()
    assert client.get("/jobs/next", params={"node_id": node}).json()["id"] == runnable["id"]


def test_a_client_over_its_rate_gets_429_with_retry_after(url: str) -> None:
    with client_for(url, rate_limit=1, rate_burst=3) as client:
        codes = [client.get("/health").status_code for _ in range(4)]
        assert codes[:3] == [200, 200, 200]
        late = client.get("/health")
        assert late.status_code == 429 and int(late.headers["retry-after"]) >= 1


def test_long_polls_are_bounded_per_node(url: str) -> None:
    with client_for(url, max_long_polls_per_node=1, max_wait_s=5) as client:
        node = register(client)
        answered: list[int] = []
        waiting = threading.Thread(
            target=lambda: answered.append(
                client.get("/jobs/next", params={"node_id": node, "wait": 2}).status_code
            )
        )
        waiting.start()
        time.sleep(0.5)
        second = client.get("/jobs/next", params={"node_id": node, "wait": 2})
        assert second.status_code == 429 and second.headers["retry-after"] == "1"
        other = register(client)
        assert client.get("/jobs/next", params={"node_id": other}).status_code == 200
        waiting.join()
        assert answered == [200]


def test_long_polls_are_bounded_in_total() -> None:
    polls = LongPolls(total=2, per_node=2)
    with polls.slot("a"), polls.slot("b"):
        with pytest.raises(ApiError) as full, polls.slot("c"):
            pass
        assert full.value.status_code == 429 and full.value.headers == {"Retry-After": "1"}
    with polls.slot("c"):  # the places are free again
        pass


def test_a_jobs_timeout_is_capped(url: str) -> None:
    with client_for(url, policy=SchedulingPolicy(max_job_timeout_s=60)) as client:
        job = client.post("/jobs", json={"scenario": "360p-h264", "timeout_s": 6 * 3600})
        assert job.status_code == 201 and job.json()["timeout_s"] == 60  # --max-job-timeout
        refused(client, "POST", "/jobs", 422, json={"scenario": "360p-h264", "timeout_s": 1e12})


def test_stream_keys_are_not_listed(client: TestClient) -> None:
    output = "rtmp://live.example/app/SECRET-KEY"
    job = client.post("/jobs", json={"scenario": "360p-h264", "parameters": {"output": output}})
    assert job.status_code == 201
    job_id = job.json()["id"]
    listed = client.get("/jobs").text + client.get(f"/jobs/{job_id}").text
    assert "SECRET-KEY" not in listed and "rtmp://live.example/app/***" in listed
    node = register(client)
    claimed = client.get("/jobs/next", params={"node_id": node}).json()
    assert claimed["parameters"]["output"] == output  # the agent that runs it needs the key
