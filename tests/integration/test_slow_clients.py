"""Slow clients against a real master on 127.0.0.1: a slowloris trickling headers and a client
that never finishes its body are cut off within the timeouts, not held for ever."""

from __future__ import annotations

import socket
import time

import pytest

from tests.integration.conftest import Fleet
from tests.processes import HOST

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

    # A kept-alive connection: its first request served, then the next one's headers late.
    kept = socket.create_connection((HOST, master.port))
    kept.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    closed, answer = closed_within(kept, 0.5)
    assert not closed and answer.startswith(b"HTTP/1.1 200")
    time.sleep(0.7)  # past the first request's deadline: nothing awaited, nothing closed
    kept.send(headers[:20])
    started = time.monotonic()
    assert closed_within(kept, 3)[0]
    assert 0.8 < time.monotonic() - started < 3

    slow_body = socket.create_connection((HOST, master.port))
    slow_body.send(
        b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"scen'
    )
    closed, answer = closed_within(slow_body, 5)
    assert closed and answer.startswith(b"HTTP/1.1 408")
    assert master.api.get("/jobs").json()["total"] == 0  # nothing half-read was acted on
    assert master.api.get("/health").status_code == 200  # and the master serves on
    for sock in [*slowloris, idle, kept, slow_body]:
        sock.close()


def test_an_upgrade_request_gets_the_same_answer_as_without_the_timeouts(fleet: Fleet) -> None:
    """A WebSocket handshake ends uvicorn's header parsing without a request cycle: the
    timeouts' hooks must not fail it (the master has no WebSocket route, so it refuses)."""
    master = fleet.master()
    with socket.create_connection((HOST, master.port)) as upgrade:
        upgrade.send(
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        _, answer = closed_within(upgrade, 3)
    assert answer.split(b"\r\n")[0] == b"HTTP/1.1 403 Forbidden", answer
    assert master.api.get("/health").status_code == 200


def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive(fleet: Fleet) -> None:
    """The keep-alive shares the header timeout's timer: an idle connection is closed once
    `--keep-alive` passes after its last reply, and every reply moves that deadline."""
    master = fleet.master(extra_args=["--keep-alive", "1s", "--header-timeout", "5s"])
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    busy = socket.create_connection((HOST, master.port))
    for _ in range(4):  # 2 s in all, each request well within the keep-alive of the last
        busy.send(request)
        closed, answer = closed_within(busy, 0.5)
        assert not closed and answer.startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    assert closed_within(busy, 4)[0]  # idle: closed after the keep-alive, not the header timeout
    assert 0.3 < time.monotonic() - started < 2.5
    busy.close()
