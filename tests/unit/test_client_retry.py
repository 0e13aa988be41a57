"""A connection reset under a reused keep-alive connection: idempotent requests are sent once
more, a job submission never."""

from __future__ import annotations

import itertools
import json
import socket
import struct
import threading
from collections.abc import Iterator
from typing import BinaryIO

import pytest

from ffleet.agent.client import MasterClient
from ffleet.client import FleetClient, MasterUnavailable
from ffleet.models import JobRequest, ProgressReport, ResultSubmission

NODE = {
    "id": "n1",
    "address": "10.0.0.5",
    "type": "server",
    "cpu_threads": 4,
    "cpu_model": "Xeon",
    "has_gpu": False,
    "gpu_type": None,
    "ram_bytes": 1 << 30,
    "labels": {},
    "status": "draining",
    "last_heartbeat": None,
    "registered_at": None,
    "current_job_id": None,
}
REPLIES = {
    "/nodes": {"nodes": [], "count": 0},
    "/nodes/n1/drain": NODE,
    "/nodes/n1/heartbeat": {"status": "ok", "node_status": "busy", "directives": []},
    "/results": {"status": "success"},
}


class HangingUpServer:
    """Answers the first request on each connection and keeps it alive, then hangs up on the
    second without a reply, as a master does whose keep-alive timer ran out just as the client
    reused the connection. `reset`: hang up with a TCP reset rather than a plain close."""

    def __init__(self, reset: bool) -> None:
        self.reset = reset
        self.requests: list[tuple[int, str, str]] = []  # (connection, method, path)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self._listener.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        for number in itertools.count():
            try:
                connection, _ = self._listener.accept()
            except OSError:  # closed: the test is over
                return
            with connection, connection.makefile("rb") as reader:
                for request_on_connection in (1, 2):
                    request = read_request(reader)
                    if request is None:
                        break
                    self.requests.append((number, *request))
                    if request_on_connection == 2:
                        if self.reset:
                            linger_zero = struct.pack("ii", 1, 0)
                            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_zero)
                        break
                    connection.sendall(reply(request[1]))


def read_request(reader: BinaryIO) -> tuple[str, str] | None:
    """Method and path of the next request, its body read and dropped; None at end of stream."""
    start = reader.readline()
    if not start:
        return None
    method, target, _ = start.decode().split(" ", 2)
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    reader.read(length)
    return method, target.split("?")[0]


def reply(path: str) -> bytes:
    body = json.dumps(REPLIES.get(path, {"error": "not here"})).encode()
    status = "200 OK" if path in REPLIES else "404 Not Found"
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


@pytest.fixture(params=[False, True], ids=["closed", "reset"])
def server(request: pytest.FixtureRequest) -> Iterator[HangingUpServer]:
    running = HangingUpServer(reset=request.param)
    yield running
    running.close()


def test_gets_and_drain_are_sent_again_on_a_new_connection(server: HangingUpServer) -> None:
    with FleetClient(server.url) as client:
        assert client.nodes() == []
        assert client.nodes() == []  # its connection is hung up on; the repeat gets the reply
        assert client.drain("n1").status == "draining"
    assert server.requests == [
        (0, "GET", "/nodes"),
        (0, "GET", "/nodes"),
        (1, "GET", "/nodes"),
        (1, "POST", "/nodes/n1/drain"),
        (2, "POST", "/nodes/n1/drain"),
    ]


def test_heartbeats_and_results_are_sent_again(server: HangingUpServer) -> None:
    result = ResultSubmission(job_id="j1", node_id="n1", attempt=1, status="completed")
    with MasterClient(server.url) as client:
        assert client.heartbeat("n1", [ProgressReport(job_id="j1")]).node_status == "busy"
        assert client.heartbeat("n1", []).node_status == "busy"
        assert client.post_result(result).status == "success"
    assert server.requests == [
        (0, "POST", "/nodes/n1/heartbeat"),
        (0, "POST", "/nodes/n1/heartbeat"),
        (1, "POST", "/nodes/n1/heartbeat"),
        (1, "POST", "/results"),
        (2, "POST", "/results"),
    ]


def test_a_job_submission_is_never_sent_twice(server: HangingUpServer) -> None:
    with FleetClient(server.url) as client:
        client.nodes()
        with pytest.raises(MasterUnavailable):
            client.submit([JobRequest(scenario="720p")])
    assert server.requests == [(0, "GET", "/nodes"), (0, "POST", "/jobs")]
