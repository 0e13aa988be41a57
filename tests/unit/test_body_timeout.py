"""Only a request that announces a body has its body timed."""

from __future__ import annotations

import asyncio
from typing import Any

from ffleet.master.http import ApiError
from ffleet.master.slow_clients import (
    BODY_ARRIVED,
    BODY_PENDING,
    BodyTimeoutMiddleware,
    _announces_body,
)


def scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "headers": list(headers)}


def test_a_body_is_announced_by_a_length_above_zero_or_a_transfer_encoding() -> None:
    assert not _announces_body(scope((b"host", b"x")))
    assert not _announces_body(scope((b"content-length", b"0")))
    assert _announces_body(scope((b"content-length", b"12")))
    assert _announces_body(scope((b"transfer-encoding", b"chunked")))


def test_a_request_without_a_body_waits_for_its_disconnect_untimed() -> None:
    async def scenario() -> str:
        async def receive() -> dict[str, Any]:
            await asyncio.sleep(0.05)  # longer than the body timeout: no body was announced
            return {"type": "http.disconnect"}

        seen: list[str] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.append((await receive())["type"])

        timed = BodyTimeoutMiddleware(app, timeout_s=0.01)
        await timed(scope((b"content-length", b"0")), receive, None)  # type: ignore[arg-type]
        return seen[0]

    assert asyncio.run(scenario()) == "http.disconnect"


def _late_body(arrived: bool, pending: bool | None = None) -> int:
    """The status a body part that comes after the timeout gets, with the scope's probes
    saying whether it was already there and whether any of the body is still to come."""

    async def scenario() -> int:
        async def receive() -> dict[str, Any]:
            await asyncio.sleep(0.05)
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()

        timed = BodyTimeoutMiddleware(app, timeout_s=0.01)
        request = scope((b"content-length", b"2"))
        request[BODY_ARRIVED] = lambda: arrived
        if pending is not None:
            request[BODY_PENDING] = lambda: pending
        try:
            await timed(request, receive, None)  # type: ignore[arg-type]
        except ApiError as exc:
            return exc.status_code
        return 200

    return asyncio.run(scenario())


def test_a_body_part_not_yet_there_is_timed_and_one_already_there_is_not() -> None:
    assert _late_body(arrived=False) == 408
    assert _late_body(arrived=True) == 200  # nothing to wait for: no deadline set


def test_a_body_all_there_as_the_app_starts_is_not_timed_at_all() -> None:
    assert _late_body(arrived=False, pending=True) == 408
    assert _late_body(arrived=False, pending=False) == 200  # `receive` left as it is
