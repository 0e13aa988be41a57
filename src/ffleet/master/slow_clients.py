"""Slow clients are cut off: request headers and each part of a body must arrive in time.

uvicorn bounds only the idle time between requests. A client that opens a connection and
sends nothing, or trickles its headers a byte at a time (slowloris), or announces a body and
never sends it, would hold a connection and a task for ever; enough of them exhaust the
master. Headers get `header_timeout_s` from the connection's start (or from the first byte of
the next request on a kept-alive connection); the body gets `body_timeout_s` per part, and a
late body is answered 408 and the connection closed.

A part that is already there when the app asks for it has nothing to wait for: the protocol
puts a probe for that in the request's scope (BODY_ARRIVED), and such a `receive` runs
without a deadline. Most bodies arrive with their headers, so most requests with one skip the
timer (an `asyncio.timeout` costs ~5 µs of CPU, measured alone).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ffleet.master.http import ApiError
from ffleet.master.rate_limit import App, Receive, Scope, Send

# The scope's key for "is the next body part here?" (a callable): where uvicorn's `receive`
# would return without waiting, its request's event is already set.
BODY_ARRIVED = "ffleet.body_arrived"


def header_timeout_protocol(timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's HTTP protocol, closing a connection whose request headers are late.

    One timer a connection, not one a request: each request's start moves the deadline, its
    headers clear it, and the timer, when it fires, closes the connection if headers are
    still awaited past the deadline, waits on to the deadline if it moved, and else ends
    (the next request's start sets it again). A kept-alive agent's requests arm it once per
    `timeout_s` instead of twice a request (a `call_later` and its cancel)."""

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _headers_due: float | None = None  # when the awaited headers are late; None: none awaited

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._await_headers()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._await_headers()

        def on_headers_complete(self) -> None:
            self._headers_due = None
            super().on_headers_complete()
            cycle = self.cycle
            # No cycle of this request's own when it upgrades (a WebSocket handshake): none
            # on a new connection, the previous request's on a kept-alive one.
            if cycle is not None and cycle.scope is self.scope:
                scope: dict[str, Any] = cycle.scope  # type: ignore[assignment]
                scope[BODY_ARRIVED] = cycle.message_event.is_set

        def connection_lost(self, exc: Exception | None) -> None:
            self._headers_due = None
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

        def _await_headers(self) -> None:
            self._headers_due = self.loop.time() + timeout_s
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(timeout_s, self._check)

        def _check(self) -> None:
            self._header_timer = None
            due = self._headers_due
            if due is None:
                return
            left = due - self.loop.time()
            if left > 0:
                self._header_timer = self.loop.call_later(left, self._check)
            elif not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


class BodyTimeoutMiddleware:
    """Each `http.request` part of a body must come within `timeout_s`, or the request gets
    408 and the connection is closed (the rest of a late body would be read as a request)."""

    def __init__(self, app: App, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """No layer of its own for a request without a body (most, a long-poll among them):
        a waiting request holds no frame and no closure here."""
        if scope["type"] != "http" or not _announces_body(scope):
            return self.app(scope, receive, send)
        return self.app(scope, self._timed(receive, scope.get(BODY_ARRIVED)), send)

    def _timed(self, receive: Receive, arrived: Callable[[], bool] | None) -> Receive:
        body_done = False
        timeout_s = self.timeout_s

        async def timed_receive() -> Any:
            nonlocal body_done
            if body_done:  # now only a disconnect can come: no deadline
                return await receive()
            if arrived is not None and arrived():  # here already: nothing to wait for
                message = await receive()
            else:
                try:
                    async with asyncio.timeout(timeout_s):  # a timer, not a task as wait_for
                        message = await receive()
                except TimeoutError:
                    raise ApiError(
                        408,
                        f"request body not received within {timeout_s:g} s",
                        {"Connection": "close"},
                    ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        return timed_receive


def _announces_body(scope: Scope) -> bool:
    """Whether the request says a body follows: without a Content-Length above 0 or a
    Transfer-Encoding there is none to wait for (the parser reads none either)."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False
