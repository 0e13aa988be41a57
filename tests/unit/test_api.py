"""The HTTP API in-process: v1.0 shapes, every kind of bad input, and that bad input changes
nothing."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from starlette.testclient import TestClient

from ffleet.master.app import MasterApp, create_app
from ffleet.master.http import JsonResponse
from ffleet.master.settings import MasterSettings
from ffleet.models import JobRequest, NodeRegistration, Progress, Timestamp, decode_hook, rfc3339
from ffleet.store import SchedulingPolicy, open_store
from tests.conftest import store_url

NODE = {
    "address": "10.0.0.5",
    "type": "server",
    "cpu_threads": 16,
    "cpu_model": "Xeon",
    "has_gpu": False,
    "ram_bytes": 34359738368,
    "labels": {"zone": "a"},
}
NODE_KEYS = {
    "id",
    "address",
    "type",
    "cpu_threads",
    "cpu_model",
    "has_gpu",
    "gpu_type",
    "ram_bytes",
    "labels",
    "status",
    "last_heartbeat",
    "registered_at",
    "current_job_id",
}
JOB_KEYS = {
    "id",
    "scenario",
    "confidence",
    "parameters",
    "status",
    "node_id",
    "created_at",
    "started_at",
    "completed_at",
    "retry_count",
    "error",
}


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = MasterSettings(
        store_url="memory", policy=SchedulingPolicy(node_timeout_s=30), max_wait_s=5
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def snapshot(client: TestClient) -> Any:
    return client.get("/nodes").json(), client.get("/jobs").json()


def register(client: TestClient, **extra: Any) -> str:
    reply = client.post("/nodes/register", json={**NODE, **extra})
    assert reply.status_code == 201
    return str(reply.json()["id"])


def test_v1_flow_keeps_the_seed_shapes(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "healthy"  # the seed's field; the others say who leads
    assert set(health) == {"status", "master", "leader", "wakeups"}
    node = client.post("/nodes/register", json=NODE)
    assert node.status_code == 201
    assert set(node.json()) >= NODE_KEYS
    assert node.json()["status"] == "available"
    node_id = node.json()["id"]

    listed = client.get("/nodes").json()
    assert listed["count"] == 1 and listed["nodes"][0]["id"] == node_id

    beat = client.post(f"/nodes/{node_id}/heartbeat")  # v1.0 sends no body
    assert beat.status_code == 200

    job = client.post("/jobs", json={"scenario": "4K60-h264", "confidence": "auto"})
    assert job.status_code == 201
    assert set(job.json()) >= JOB_KEYS
    assert job.json()["status"] == "pending" and job.json()["parameters"] == {}
    job_id = job.json()["id"]

    jobs = client.get("/jobs").json()
    assert jobs["count"] == 1 and jobs["jobs"][0]["id"] == job_id

    claimed = client.get("/jobs/next", params={"node_id": node_id})
    assert claimed.status_code == 200
    assert claimed.json()["id"] == job_id and claimed.json()["status"] == "running"
    assert claimed.json()["node_id"] == node_id

    assert client.get("/jobs/next", params={"node_id": node_id}).json() == {"job": None}

    posted = client.post(
        "/results",
        json={
            "job_id": job_id,
            "node_id": node_id,
            "status": "completed",
            "metrics": {"cpu_usage": 55.5, "duration": 12.3},
            "analyzer_output": {"recommendation": "ok"},
            "completed_at": "2026-01-01T00:00:00Z",
        },
    )
    assert posted.status_code == 200 and posted.json() == {"status": "success"}

    detail = client.get(f"/jobs/{job_id}").json()
    assert detail["status"] == "completed"
    assert detail["result"]["metrics"] == {"cpu_usage": 55.5, "duration": 12.3}
    assert detail["result"]["analyzer_output"] == {"recommendation": "ok"}
    assert [a["outcome"] for a in detail["attempts"]] == ["completed"]
    results = client.get("/results", params={"job_id": job_id}).json()
    assert results["count"] == 1


def test_get_node_and_filtered_paginated_jobs(client: TestClient) -> None:
    node_id = register(client)
    assert client.get(f"/nodes/{node_id}").json()["id"] == node_id
    ids = [client.post("/jobs", json={"scenario": "720p"}).json()["id"] for _ in range(5)]
    client.get("/jobs/next", params={"node_id": node_id})
    page = client.get("/jobs", params={"status": "pending", "limit": 2, "offset": 1}).json()
    assert [j["id"] for j in page["jobs"]] == ids[2:4]
    assert page["count"] == 2 and page["total"] == 4


def test_batch_submission_is_all_or_nothing(client: TestClient) -> None:
    ok = client.post("/jobs/batch", json={"jobs": [{"scenario": "720p"}, {"scenario": "1080p"}]})
    assert ok.status_code == 201 and ok.json()["count"] == 2
    before = snapshot(client)
    bad = client.post(
        "/jobs/batch", json={"jobs": [{"scenario": "720p"}, {"scenario": "720p-h264-vp9"}]}
    )
    assert bad.status_code == 400 and "error" in bad.json()
    assert snapshot(client) == before


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/nodes/register", b"{not json", 400),
        ("post", "/nodes/register", b"", 400),
        ("post", "/nodes/register", b'{"cpu_threads": "many"}', 422),
        ("post", "/nodes/register", b'{"type": "mainframe"}', 422),
        ("post", "/nodes/register", b"[1, 2]", 422),
        ("post", "/jobs", b'{"parameters": {}}', 422),
        ("post", "/jobs", b'{"scenario": 42}', 422),
        ("post", "/jobs", b'{"scenario": ""}', 400),
        ("post", "/jobs", b'{"scenario": "720p", "parameters": {"codec_x": 1}}', 400),
        ("post", "/jobs", b'{"scenario": "720p", "max_attempts": 0}', 422),
        ("post", "/jobs", b'{"scenario": "720p", "priority": "urgent"}', 400),
        ("post", "/jobs", b'{"scenario": "720p", "not_before": "yesterday"}', 400),
        ("post", "/results", b'{"job_id": "x"}', 422),
        ("post", "/results", b'{"job_id": "x", "node_id": "y", "status": "done"}', 422),
        ("post", "/results", b'{"job_id": "x", "node_id": "y", "status": "completed"}', 404),
        ("post", "/nodes/unknown/heartbeat", b"", 404),
        ("post", "/nodes/unknown/heartbeat", b'{"jobs": 5}', 422),
        ("get", "/jobs/unknown", None, 404),
        ("get", "/nodes/unknown", None, 404),
        ("get", "/jobs/next", None, 400),
        ("get", "/jobs/next?node_id=unknown", None, 404),
        ("get", "/jobs/next?node_id=x&wait=abc", None, 400),
        ("get", "/jobs?status=sleeping", None, 400),
        ("get", "/jobs?limit=0", None, 400),
        ("post", "/jobs/unknown/cancel", None, 404),
        ("post", "/jobs/unknown/retry", None, 404),
        ("get", "/no/such/path", None, 404),
    ],
)
def test_bad_input_gets_a_json_error_and_changes_nothing(
    client: TestClient, method: str, path: str, body: bytes | None, status: int
) -> None:
    register(client)
    client.post("/jobs", json={"scenario": "720p"})
    before = snapshot(client)
    reply = client.request(
        method.upper(), path, content=body, headers={"content-type": "application/json"}
    )
    assert reply.status_code == status, reply.text
    assert isinstance(reply.json()["error"], str) and reply.json()["error"]
    assert snapshot(client) == before


def test_result_for_a_job_not_running_on_that_node_is_409(client: TestClient) -> None:
    owner = register(client)
    other = register(client)
    job_id = client.post("/jobs", json={"scenario": "720p"}).json()["id"]
    body = {"job_id": job_id, "node_id": owner, "status": "completed"}
    assert client.post("/results", json=body).status_code == 409  # still pending
    client.get("/jobs/next", params={"node_id": owner})
    before = snapshot(client)
    refused = client.post("/results", json={**body, "node_id": other})
    assert refused.status_code == 409 and "not current" in refused.json()["error"]
    assert snapshot(client) == before


def test_oversized_body_is_413_and_changes_nothing(client: TestClient) -> None:
    before = snapshot(client)
    huge = b'{"scenario": "720p", "parameters": {"x": "' + b"a" * (1024 * 1024) + b'"}}'
    reply = client.post("/jobs", content=huge, headers={"content-type": "application/json"})
    assert reply.status_code == 413 and "limit" in reply.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while streaming
        yield huge[: len(huge) // 2]
        yield huge[len(huge) // 2 :]

    streamed = client.post("/jobs", content=chunks())
    assert streamed.status_code == 413
    assert snapshot(client) == before


def test_long_poll_returns_a_job_submitted_while_waiting(client: TestClient) -> None:
    node_id = register(client, slots=1)
    got: dict[str, Any] = {}

    def wait_for_job() -> None:
        got["reply"] = client.get("/jobs/next", params={"node_id": node_id, "wait": 5}).json()

    waiter = threading.Thread(target=wait_for_job)
    waiter.start()
    job_id = client.post("/jobs", json={"scenario": "720p"}).json()["id"]
    waiter.join(timeout=10)
    assert got["reply"]["id"] == job_id


def test_result_can_carry_the_next_claim(client: TestClient) -> None:
    node_id = register(client, slots=1)
    first, second = (client.post("/jobs", json={"scenario": "720p"}).json()["id"] for _ in "ab")
    job = client.get("/jobs/next", params={"node_id": node_id}).json()
    assert job["id"] == first
    reply = client.post(
        "/results",
        json={
            "job_id": first,
            "node_id": node_id,
            "attempt": 1,
            "status": "completed",
            "claim_next": True,
        },
    ).json()
    assert reply["status"] == "success" and reply["job"]["id"] == second


def test_cancel_retry_drain_release_endpoints(client: TestClient) -> None:
    node_id = register(client, slots=1)
    job_id = client.post("/jobs", json={"scenario": "720p"}).json()["id"]
    assert client.post(f"/jobs/{job_id}/cancel").json()["status"] == "canceled"
    assert client.post(f"/jobs/{job_id}/retry").json()["status"] == "pending"
    assert client.post(f"/nodes/{node_id}/drain").json()["status"] == "draining"
    assert client.get("/jobs/next", params={"node_id": node_id}).json() == {"job": None}
    client.post(f"/nodes/{node_id}/drain", json={"drain": False})
    claimed = client.get("/jobs/next", params={"node_id": node_id}).json()
    released = client.post(
        f"/jobs/{job_id}/release", json={"node_id": node_id, "attempt": claimed["attempt"]}
    )
    assert released.json()["status"] == "pending"


def test_moves_the_state_machine_forbids_are_409_with_the_reason(client: TestClient) -> None:
    job_id = client.post("/jobs", json={"scenario": "720p"}).json()["id"]
    retried = client.post(f"/jobs/{job_id}/retry")
    assert retried.status_code == 409
    assert retried.json() == {
        "error": "only canceled or failed jobs can be retried; job is pending"
    }
    client.post(f"/jobs/{job_id}/cancel")
    again = client.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 409 and again.json() == {
        "error": f"job {job_id} is already canceled"
    }


RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


def test_times_go_out_as_rfc3339_utc(client: TestClient) -> None:
    node_id = register(client)
    node = client.get(f"/nodes/{node_id}").json()
    job_id = client.post("/jobs", json={"scenario": "720p"}).json()["id"]
    client.get("/jobs/next", params={"node_id": node_id})
    detail = client.get(f"/jobs/{job_id}").json()
    times = [node["last_heartbeat"], node["registered_at"], detail["created_at"]]
    times += [detail["started_at"], detail["not_before"], detail["attempts"][0]["started_at"]]
    assert all(RFC3339_UTC.match(t) for t in times), times
    assert detail["completed_at"] is None and detail["attempts"][0]["ended_at"] is None


@pytest.mark.parametrize(
    "epoch", [31_536_000.0, 1_800_000_000.0, 1_800_000_000.5, 1_767_225_600.123456]
)
def test_a_timestamp_is_encoded_as_the_v1_master_formatted_it(epoch: float) -> None:
    """Byte for byte what 0.1.0 sent (`rfc3339`), and read back to the same float."""
    progress = Progress(updated_at=Timestamp(epoch))
    body = JsonResponse(progress).body
    assert body == b'{"percent":null,"fps":null,"frame":null,"speed":null,"updated_at":"%s"}' % (
        str(rfc3339(epoch)).encode()
    )
    back = msgspec.json.decode(body, type=Progress, dec_hook=decode_hook)
    assert back.updated_at == epoch


def test_explain_names_each_node_and_refuses_an_unknown_job(client: TestClient) -> None:
    node_id = client.post("/nodes/register", json=NODE).json()["id"]
    job_id = client.post(
        "/jobs", json={"scenario": "360p-h264", "requirements": {"gpu": True}}
    ).json()["id"]
    explained = client.get(f"/jobs/{job_id}/explain").json()
    assert explained["status"] == "pending"
    assert explained["nodes"] == [
        {"node_id": node_id, "hostname": None, "verdict": "lacks", "reason": "needs a GPU"}
    ]
    missing = client.get("/jobs/nope/explain")
    assert missing.status_code == 404 and "not found" in missing.json()["error"]


def test_openapi_and_docs(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert "/jobs/next" in spec["paths"] and "JobRequest" in spec["components"]["schemas"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/nodes/register" in docs.text


def test_a_wake_reaches_the_one_waiter_that_can_run_the_job() -> None:
    # Rechecks are off the table (60 s): only a passed-on wake can deliver the GPU job in time.
    settings = MasterSettings(store_url="memory", max_wait_s=10, recheck_s=60)
    with TestClient(create_app(settings)) as client:
        cpu = register(client, slots=1)
        gpu = register(client, slots=1, has_gpu=True, gpu_type="NVIDIA L4")
        got: dict[str, Any] = {}

        def wait(name: str, node_id: str) -> None:
            got[name] = client.get("/jobs/next", params={"node_id": node_id, "wait": 4}).json()

        waiters = [threading.Thread(target=wait, args=args) for args in [("cpu", cpu)]]
        waiters[0].start()
        time.sleep(0.3)  # the CPU node is first in line
        waiters.append(threading.Thread(target=wait, args=("gpu", gpu)))
        waiters[1].start()
        time.sleep(0.3)
        job = client.post("/jobs", json={"scenario": "720p", "requirements": {"gpu": True}})
        for waiter in waiters:
            waiter.join(timeout=10)
        assert got["gpu"]["id"] == job.json()["id"]
        assert got["cpu"] == {"job": None}


def test_a_node_taking_work_again_after_a_drain_gets_the_queued_job_at_once() -> None:
    # On SQLite (here: memory) a waiter looks again only when woken: the drain's end wakes it.
    settings = MasterSettings(store_url="memory", max_wait_s=10, recheck_s=60)
    with TestClient(create_app(settings)) as client:
        node_id = register(client, slots=1)
        client.post(f"/nodes/{node_id}/drain")
        job = client.post("/jobs", json={"scenario": "720p"}).json()
        got: dict[str, Any] = {}

        def wait() -> None:
            params = {"node_id": node_id, "wait": 4}
            started = time.monotonic()
            got["job"] = client.get("/jobs/next", params=params).json()
            got["after_s"] = time.monotonic() - started

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.3)  # it waits: a draining node is handed nothing
        client.post(f"/nodes/{node_id}/drain", json={"drain": False})
        waiter.join(timeout=10)
        assert got["job"]["id"] == job["id"] and got["after_s"] < 3


def test_a_failed_long_poll_does_not_swallow_the_next_wake() -> None:
    settings = MasterSettings(store_url="memory", max_wait_s=10, recheck_s=60)
    with TestClient(create_app(settings)) as client:
        assert client.get("/jobs/next", params={"node_id": "ghost", "wait": 5}).status_code == 404
        node_id = register(client, slots=1)
        got: dict[str, Any] = {}

        def wait() -> None:
            got["job"] = client.get("/jobs/next", params={"node_id": node_id, "wait": 4}).json()

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.3)
        job = client.post("/jobs", json={"scenario": "720p"}).json()
        waiter.join(timeout=10)
        assert got["job"]["id"] == job["id"]


def test_a_cancelled_long_poll_leaves_the_dispatcher() -> None:
    """A request task cancelled while it waits (its client went away, the server stops) must
    not stay queued: it would swallow the wake meant for a waiter that is still there."""
    store = open_store("memory")
    master: MasterApp = create_app(MasterSettings(store_url="memory"), store).state.master
    node = store.register_node(NodeRegistration(address="a", cpu_threads=1), 0.0)

    class Connected:
        async def is_disconnected(self) -> bool:
            return False

    async def scenario() -> int:
        waiting = asyncio.create_task(
            master.jobs.claim_waiting(Connected(), node.id, 30.0)  # type: ignore[arg-type]
        )
        await asyncio.sleep(0.05)
        assert master.dispatcher.waiting == 1
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        return master.dispatcher.waiting

    assert asyncio.run(scenario()) == 0
    store.close()


def test_an_idempotency_key_answers_a_repeat_with_the_first_reply(client: TestClient) -> None:
    job = {"scenario": "720p-h264"}
    first = client.post("/jobs", json=job, headers={"Idempotency-Key": "k1"})
    again = client.post("/jobs", json=job, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    batch = {"jobs": [job, job]}
    first = client.post("/jobs/batch", json=batch, headers={"Idempotency-Key": "k2"})
    again = client.post("/jobs/batch", json=batch, headers={"Idempotency-Key": "k2"})
    assert again.json() == first.json() and first.json()["count"] == 2
    other = client.post("/jobs", json={"scenario": "360p-h264"}, headers={"Idempotency-Key": "k1"})
    assert other.status_code == 409 and "already used" in other.json()["error"]
    assert client.get("/jobs").json()["total"] == 3


def test_a_typo_is_a_400_naming_the_nearest_token_and_tags_are_shown(client: TestClient) -> None:
    typo = client.post("/jobs", json={"scenario": "1080p-h246"})
    assert typo.status_code == 400 and "did you mean 'h264'" in typo.json()["error"]
    job = client.post("/jobs", json={"scenario": "test-1080p"}).json()
    assert job["understood"] == {
        "resolution": "1920x1080",
        "fps": 30,
        "codec": "h264",
        "tags": ["test"],
    }


class _Connected:
    async def is_disconnected(self) -> bool:
        return False


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_master_started_again_after_a_stop_claims(backend: str, tmp_path: pathlib.Path) -> None:
    """An app may run several lifespans on one store (the fuzz run does): each start gets
    live store threads and dispatches again, though the last stop shut both down."""
    store = open_store(store_url(backend, tmp_path))
    master: MasterApp = create_app(MasterSettings(store_url="memory"), store).state.master

    async def serve_twice() -> list[bool]:
        claimed = []
        for _ in range(2):
            tasks = await master.start()
            node = await master.call(store.register_node, NodeRegistration(cpu_threads=1), 1.0)
            await master.call(store.create_jobs, [JobRequest(scenario="360p")], 1.0)
            job = await master.jobs.claim_waiting(_Connected(), node.id, 0.0)  # type: ignore[arg-type]
            claimed.append(job is not None)
            await master.stop(tasks)
        return claimed

    assert asyncio.run(serve_twice()) == [True, True]
    store.close()
