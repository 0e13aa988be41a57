"""Slow clients against a real master on 127.0.0.1: a slowloris trickling headers and a client
that never finishes its body are cut off within the timeouts, not held for ever."""

from __future__ import annotations

import socket
import time

import pytest

from tests.integration.conftest import Fleet
from tests.processes import HOST, wait_until

pytestmark = pytest.mark.integration


def closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> tuple[bool, bytes]:
    """Sends `trickle` a byte every 0.2 s until the master closes the connection or `seconds`
    pass; whether it closed, and what it answered."""
    sock.settimeout(0.2)
    answer = b""
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline:
        if sent < len(trickle):
            try:
                sock.send(trickle[sent : sent + 1])
            except OSError:
                return True, answer
            sent += 1
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            return True, answer
        if not data:
            return True, answer
        answer += data
    return False, answer


def test_slowloris_and_slow_bodies_are_closed(fleet: Fleet) -> None:
    master = fleet.master(extra_args=["--header-timeout", "1s", "--body-timeout", "1s"])
    slowloris = [socket.create_connection((HOST, master.port)) for _ in range(5)]
    idle = socket.create_connection((HOST, master.port))
    headers = b"GET /health HTTP/1.1\r\nHost: x\r\nX-a: " + b"a" * 200
    started = time.monotonic()
    for sock in slowloris[:-1]:
        sock.send(headers[:20])
    assert closed_within(slowloris[-1], 5, trickle=headers)[0]
    assert all(closed_within(sock, 2)[0] for sock in slowloris[:-1])
    assert closed_within(idle, 2)[0]  # connected, never sent a byte
    assert time.monotonic() - started < 8

    slow_body = socket.create_connection((HOST, master.port))
    slow_body.send(
        b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"scen'
    )
    closed, answer = closed_within(slow_body, 5)
    assert closed and answer.startswith(b"HTTP/1.1 408")
    assert master.api.get("/jobs").json()["total"] == 0  # nothing half-read was acted on
    assert master.api.get("/health").status_code == 200  # and the master serves on
    for sock in [*slowloris, idle, slow_body]:
        sock.close()


def answer(port: int) -> bytes:
    """The status line a fresh connection's request gets."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return sock.recv(4096).split(b"\r\n", 1)[0]


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
