"""A result whose reply waits for the node's next job (`claim_next` with `claim_wait`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from ffleet.master.app import MasterApp, create_app
from ffleet.master.settings import MasterSettings

JOIN_TIMEOUT_S = 10.0


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(MasterSettings(store_url="memory", max_wait_s=30))) as client:
        yield client


def master_of(client: TestClient) -> MasterApp:
    master: MasterApp = client.app.state.master  # type: ignore[attr-defined]
    return master


def register(client: TestClient, slots: int = 1) -> str:
    node = {"address": "10.0.0.5", "cpu_threads": 4, "slots": slots}
    node_id: str = client.post("/nodes/register", json=node).json()["id"]
    return node_id


def submit(client: TestClient) -> str:
    job_id: str = client.post("/jobs", json={"scenario": "720p"}).json()["id"]
    return job_id


def result(job: dict[str, Any], node_id: str, wait: float | None) -> dict[str, Any]:
    body = {"job_id": job["id"], "node_id": node_id, "attempt": job["attempt"]}
    body |= {"status": "completed", "claim_next": True}
    return body if wait is None else {**body, "claim_wait": wait}


class Held:
    """POST /results on a thread: its reply, once it comes."""

    def __init__(self, client: TestClient, body: dict[str, Any]) -> None:
        self.reply: dict[str, Any] = {}
        self.status = 0

        def post() -> None:
            response = client.post("/results", json=body)
            self.status, self.reply = response.status_code, response.json()

        self._thread = threading.Thread(target=post)
        self._thread.start()

    def join(self) -> dict[str, Any]:
        self._thread.join(timeout=JOIN_TIMEOUT_S)
        assert not self._thread.is_alive(), "the held reply never came"
        assert self.status == 200, self.reply
        return self.reply


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, "condition never reached"
        time.sleep(0.01)


def running(client: TestClient, node_id: str) -> dict[str, Any]:
    """Claim a fresh job for `node_id` with a plain poll."""
    submit(client)
    job: dict[str, Any] = client.get("/jobs/next", params={"node_id": node_id}).json()
    return job


def test_the_result_is_stored_then_the_reply_carries_a_job_created_while_it_waits(
    client: TestClient,
) -> None:
    dispatcher = master_of(client).dispatcher
    node_id = register(client)
    first = running(client, node_id)
    held = Held(client, result(first, node_id, 20))
    until(lambda: dispatcher.waiting == 1)
    assert client.get(f"/jobs/{first['id']}").json()["status"] == "completed"  # before the wait
    second = submit(client)
    reply = held.join()
    assert reply["status"] == "success" and reply["job"]["id"] == second
    assert reply["job"]["status"] == "running" and reply["job"]["node_id"] == node_id
    assert dispatcher.waiting == 0


def test_a_resent_result_is_a_duplicate_and_its_wait_ends_with_no_job(
    client: TestClient,
) -> None:
    node_id = register(client)
    first = running(client, node_id)
    assert client.post("/results", json=result(first, node_id, 0)).json() == {
        "status": "success",
        "job": None,
    }  # claim_wait 0: answered at once, as with claim_next alone
    reply = Held(client, result(first, node_id, 0.2)).join()  # the same result again
    assert reply == {"status": "success", "duplicate": True, "job": None}


def test_a_wait_longer_than_max_wait_is_shortened_to_it() -> None:
    settings = MasterSettings(store_url="memory", max_wait_s=0.2)
    with TestClient(create_app(settings)) as client:
        node_id = register(client)
        reply = Held(client, result(running(client, node_id), node_id, 3600)).join()
        assert reply == {"status": "success", "job": None}


def test_past_the_long_poll_bounds_a_result_is_answered_at_once_never_refused() -> None:
    settings = MasterSettings(store_url="memory", max_wait_s=30, max_long_polls_per_node=1)
    with TestClient(create_app(settings)) as client:
        dispatcher = master_of(client).dispatcher
        node_id = register(client, slots=2)
        job = running(client, node_id)
        poll: dict[str, Any] = {}
        waiter = threading.Thread(
            target=lambda: poll.update(
                client.get("/jobs/next", params={"node_id": node_id, "wait": 20}).json()
            )
        )
        waiter.start()
        until(lambda: dispatcher.waiting == 1)  # the node's one waiting place is taken
        reply = Held(client, result(job, node_id, 20)).join()
        assert reply == {"status": "success", "job": None}
        assert client.get(f"/jobs/{job['id']}").json()["status"] == "completed"
        later = submit(client)
        waiter.join(timeout=JOIN_TIMEOUT_S)
        assert poll["id"] == later


def test_a_stopping_master_ends_held_results_with_no_job_and_claims_nothing(
    client: TestClient,
) -> None:
    master = master_of(client)
    node_id = register(client)
    held = Held(client, result(running(client, node_id), node_id, 20))
    until(lambda: master.dispatcher.waiting == 1)
    client.portal.call(master.begin_stop)  # type: ignore[union-attr]
    assert held.join() == {"status": "success", "job": None}
    late = submit(client)
    assert client.get(f"/jobs/{late}").json()["status"] == "pending"


def test_a_draining_node_waits_on_and_takes_work_once_it_may_again(
    client: TestClient,
) -> None:
    dispatcher = master_of(client).dispatcher
    node_id = register(client)
    held = Held(client, result(running(client, node_id), node_id, 20))
    until(lambda: dispatcher.waiting == 1)
    client.post(f"/nodes/{node_id}/drain")
    job_id = submit(client)  # wakes the held result, which finds nothing it may take
    until(lambda: dispatcher.waiting == 1)
    assert client.get(f"/jobs/{job_id}").json()["status"] == "pending"
    client.post(f"/nodes/{node_id}/drain", json={"drain": False})
    assert held.join()["job"]["id"] == job_id
