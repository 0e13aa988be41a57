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
timer (an `asyncio.timeout` costs ~5 µs of CPU, measured alone). A second probe
(BODY_PENDING) says whether any of the body is still to come: when none is as the app starts
(no body, or all of it read with the headers, as for most requests), nothing is timed and
`receive` is not wrapped at all.
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
# ... and for "is any of the body still to come?" (a callable): uvicorn's `more_body`.
BODY_PENDING = "ffleet.body_pending"


def header_timeout_protocol(timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's HTTP protocol, closing a connection whose request headers are late, and one
    kept alive idle past uvicorn's `timeout_keep_alive`, with one timer for both.

    One timer a connection, not one a request: each request's start sets the headers'
    deadline and its headers clear it, a response's end sets the idle deadline and the next
    bytes clear it. The timer, when it fires, closes the connection if a deadline has passed,
    waits on to the nearer one if any, and else ends (the next deadline sets it again); it is
    set anew only for a deadline nearer than its own. uvicorn arms and cancels a keep-alive
    `call_later` for every request (~2 us a pair under uvloop, against ~0.1 us for reading
    the loop's time); here a kept-alive agent's requests touch the timer about once per
    timeout. `on_response_complete` is uvicorn's own (0.54) but for that timer."""

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _timer: asyncio.TimerHandle | None = None
        _timer_at = 0.0  # when the timer fires
        _headers_due: float | None = None  # when the awaited headers are late; None: none awaited
        _idle_due: float | None = None  # when an idle kept-alive connection is closed

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
                scope[BODY_PENDING] = lambda: cycle.more_body

        def _unset_keepalive_if_required(self) -> None:
            """Bytes came (or a response ended): the connection is no longer idle."""
            self._idle_due = None

        def on_response_complete(self) -> None:
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self._idle_due = None
            self.flow.resume_reading()
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
            else:
                self._idle_due = self._due_in(self.timeout_keep_alive)

        def connection_lost(self, exc: Exception | None) -> None:
            self._headers_due = self._idle_due = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            super().connection_lost(exc)

        def _await_headers(self) -> None:
            self._headers_due = self._due_in(timeout_s)

        def _due_in(self, delay: float) -> float:
            """A deadline `delay` from now, with the timer set to fire by then."""
            due = self.loop.time() + delay
            if self._timer is None or due < self._timer_at:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = self.loop.call_later(delay, self._check)
                self._timer_at = due
            return due

        def _check(self) -> None:
            self._timer = None
            dues = [due for due in (self._headers_due, self._idle_due) if due is not None]
            if not dues:
                return
            left = min(dues) - self.loop.time()
            if left > 0:
                self._timer = self.loop.call_later(left, self._check)
                self._timer_at = min(dues)
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
        """No layer of its own for a request without a body (most, a long-poll among them),
        nor for one whose body has all arrived: a waiting request holds no frame and no
        closure here."""
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        pending = scope.get(BODY_PENDING)
        if (pending is not None and not pending()) or not _announces_body(scope):
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
