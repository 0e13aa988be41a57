"""Past --max-connections a request is answered 503 with Retry-After, never cut off, and the
agent's client sends it again after the pause; a real master on 127.0.0.1."""

from __future__ import annotations

import socket
import threading

import pytest

from ffleet.agent.client import MasterClient
from tests.integration.conftest import Fleet
from tests.processes import HOST, wait_until

pytestmark = pytest.mark.integration

CAP = 40
CROWD = 300


def answer(port: int) -> bytes:
    """The status line a fresh connection's request gets."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return sock.recv(4096).split(b"\r\n", 1)[0]


def heartbeat(sock: socket.socket, node_id: str) -> None:
    body = b'{"jobs": []}'
    sock.sendall(
        f"POST /nodes/{node_id}/heartbeat HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def reply_head(sock: socket.socket) -> bytes:
    """The head of the reply (the body is not needed); b"" if the master hung up first."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(4096)
        if not part:
            return b""
        data += part
    return data.split(b"\r\n\r\n", 1)[0].lower()


def test_connections_past_the_cap_are_refused(fleet: Fleet) -> None:
    """300 idle connections used to be held; past --max-connections a request gets 503."""
    master = fleet.master(extra_args=["--max-connections", "3", "--header-timeout", "30s"])
    idle = [socket.create_connection((HOST, master.port)) for _ in range(2)]
    assert answer(master.port) == b"HTTP/1.1 503 Service Unavailable"
    for sock in idle:
        sock.close()
    wait_until(
        lambda: answer(master.port) == b"HTTP/1.1 200 OK",
        timeout=5,
        message="a request to be served once the idle connections are gone",
    )


def test_a_crowd_past_the_cap_gets_replies_it_can_retry(fleet: Fleet) -> None:
    """300 heartbeats at once against a cap of 40: each is answered, the ones past the cap
    with 503 and Retry-After (uvicorn's own cap sent none), and each of those is served when
    sent again once the crowd has gone."""
    master = fleet.master(extra_args=["--max-connections", str(CAP), "--header-timeout", "30s"])
    node_id = master.api.post("/nodes/register", json={"cpu_threads": 4}).json()["id"]
    crowd = [socket.create_connection((HOST, master.port), timeout=10) for _ in range(CROWD)]
    try:
        for sock in crowd:
            heartbeat(sock, node_id)
        heads = [reply_head(sock) for sock in crowd]
    finally:
        for sock in crowd:
            sock.close()
    served = [head for head in heads if head.startswith(b"http/1.1 200")]
    refused = [head for head in heads if head.startswith(b"http/1.1 503")]
    assert len(served) + len(refused) == CROWD, [h for h in heads if h not in served + refused]
    assert 0 < len(served) < CAP and len(refused) > CROWD - CAP
    assert all(b"\r\nretry-after: 1" in head for head in refused)
    for _ in refused:
        with socket.create_connection((HOST, master.port), timeout=10) as sock:
            heartbeat(sock, node_id)
            assert reply_head(sock).startswith(b"http/1.1 200")


def test_the_agent_client_sends_a_refused_heartbeat_again(fleet: Fleet) -> None:
    master = fleet.master(extra_args=["--max-connections", "4", "--header-timeout", "30s"])
    node_id = master.api.post("/nodes/register", json={"cpu_threads": 4}).json()["id"]
    crowd = [socket.create_connection((HOST, master.port)) for _ in range(3)]
    assert answer(master.port) == b"HTTP/1.1 503 Service Unavailable"  # the cap is reached
    threading.Timer(0.5, lambda: [sock.close() for sock in crowd]).start()
    with MasterClient(master.url) as client:
        assert client.heartbeat(node_id, []).status == "ok"
