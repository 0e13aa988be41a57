"""Several master URLs: the client stays with one that answers, moves on when it fails, and
sends a request twice only when doing so is safe."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ffleet.agent.failover import MasterChoice, master_urls
from ffleet.client import FleetClient, MasterUnavailable
from ffleet.models import JobRequest
from tests.processes import free_port

JOB = {
    "id": "j1",
    "scenario": "720p-h264",
    "confidence": "high",
    "parameters": {},
    "status": "pending",
    "node_id": None,
    "created_at": None,
    "started_at": None,
    "completed_at": None,
    "retry_count": 0,
    "error": None,
}


class Stub:
    """A master that answers every request with `status` and records what it was sent."""

    def __init__(self, status: int) -> None:
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, idempotency key
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer({"nodes": [], "count": 0})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._answer(JOB)

            def _answer(self, body: object) -> None:
                key = self.headers.get("Idempotency-Key")
                stub.requests.append((self.command, self.path.split("?")[0], key))
                data = json.dumps(body if status < 400 else {"error": "down"}).encode()
                self.send_response(201 if status < 400 and self.command == "POST" else status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def good() -> Iterator[Stub]:
    stub = Stub(200)
    yield stub
    stub.close()


@pytest.fixture
def failing() -> Iterator[Stub]:
    stub = Stub(503)
    yield stub
    stub.close()


def test_master_urls_split_a_comma_list_and_default_to_http() -> None:
    assert master_urls("a:1, http://b:2/,") == ["http://a:1", "http://b:2"]
    with pytest.raises(ValueError, match="no master URL"):
        master_urls(" , ")


def test_a_dead_master_is_left_for_the_next_and_the_client_stays_there(good: Stub) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with FleetClient(f"{dead},{good.url}") as client:
        assert client.nodes() == []
        assert client.base_url == good.url
        # A submission that never reached the dead master is safe to send to the next.
        client.submit([JobRequest(scenario="720p-h264")])
        assert client.nodes() == []
    assert [r[:2] for r in good.requests] == [
        ("GET", "/nodes"),
        ("POST", "/jobs"),
        ("GET", "/nodes"),
    ]


def test_after_a_5xx_only_a_repeatable_request_goes_on_to_the_next(
    failing: Stub, good: Stub
) -> None:
    with FleetClient(f"{failing.url},{good.url}") as client:
        assert client.nodes() == []  # a GET: sent again at once, to the next master
    with FleetClient(f"{failing.url},{good.url}") as client:
        with pytest.raises(MasterUnavailable, match="503"):
            client._submit_once([JobRequest(scenario="720p-h264")], None)
        # The 5xx master may have created the jobs: never resent without a key...
        assert [r[:2] for r in good.requests] == [("GET", "/nodes")]
        # ...but the next call starts at the master that did not fail.
        client.submit([JobRequest(scenario="720p-h264")])
    with FleetClient(f"{failing.url},{good.url}") as client:
        client.submit([JobRequest(scenario="720p-h264")], idempotency_key="k1")
    assert [r for r in good.requests if r[0] == "POST"] == [
        ("POST", "/jobs", None),
        ("POST", "/jobs", "k1"),
    ]
    assert ("POST", "/jobs", "k1") in failing.requests  # the same key on both masters


def test_a_failed_master_backs_off_and_when_all_have_the_soonest_is_tried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("ffleet.agent.failover.random.uniform", lambda low, high: high)
    choice = MasterChoice(["a", "b", "c"])
    assert choice.pick() == 0
    assert choice.failed(0)
    assert choice.pick() == 1  # sticky from now on
    choice.succeeded(1)
    assert choice.pick() == 1
    choice.failed(1)
    choice.failed(1)  # backs off twice as long as a master that failed once
    assert choice.pick() == 2
    choice.failed(2)
    choice.failed(2)
    choice.failed(2)
    assert choice.pick() == 0  # everyone backing off: the one due soonest
    assert not MasterChoice(["only"]).failed(0)  # with one master there is no other to try
