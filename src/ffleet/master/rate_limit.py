"""Per-client request rate: a token bucket per client, refused with 429 + Retry-After.

A client is the credential a request authenticates with, else the peer address of the
connection (the master reads no forwarded headers); the master supplies that key. Loopback
clients are the machine's own users (the CLI, a local agent, a benchmark) and are not limited.
The table of buckets is bounded: when full, the longest-idle client is forgotten, which can
only ever give that client a fresh burst.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ffleet.master.http import error_response

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_CLIENTS = 100_000


class RateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def wait_for(self, client: str) -> float:
        """0 when `client` may send a request now (and takes its token), else the seconds
        until it may."""
        now = self.clock()
        tokens, then = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[client] = (tokens - 1 if wait == 0 else tokens, now)
        if len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return wait


@functools.lru_cache(maxsize=4096)  # parsing the address costs a few µs per request
def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_address(scope: Scope) -> str | None:
    """The peer address of a request; None for loopback, which is not limited."""
    client = scope.get("client")
    host = client[0] if client else "unknown"
    return None if _is_loopback(host) else host


class RateLimitMiddleware:
    """ASGI middleware: HTTP requests beyond the client's rate get 429 and change nothing."""

    def __init__(
        self, app: App, limiter: RateLimiter, key: Callable[[Scope], str | None] = client_address
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.key = key

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """No frame of its own for a request let through: the app's own awaitable."""
        client = self.key(scope) if scope["type"] == "http" else None
        if client is not None:
            wait = self.limiter.wait_for(client)
            if wait > 0:
                reply = error_response(429, "too many requests from this client; slow down")
                reply.headers["Retry-After"] = str(math.ceil(wait))
                return reply(scope, receive, send)
        return self.app(scope, receive, send)
