"""How many connections the master holds, and what a request on one past them gets.

Each connection takes a file descriptor. Past the process's open-files limit `accept()` fails
and the event loop closes new connections unanswered: an agent's heartbeat is lost without a
word. So the master raises its soft limit towards the hard one for `--max-connections`, keeps
its cap FILES_RESERVED below the limit it got (and says so when that is fewer), and answers a
request on a connection past the cap with 503 and Retry-After before closing it: nothing was
done, and the agent sends it again after the pause.

uvicorn's own `limit_concurrency` answers such a request 503 without Retry-After, so the cap
is kept here instead, with uvicorn's count (the connection asking is one of them).
"""

from __future__ import annotations

import logging
import resource

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ffleet.master.rate_limit import Receive, Scope, Send

log = logging.getLogger("ffleet.master")

# Descriptors the master needs besides its connections: the listening socket, the store's
# files or pool, logs, blob files in transfer, the event loop's own.
FILES_RESERVED = 256
RETRY_AFTER_S = 1


def connection_cap(wanted: int) -> int:
    """The most connections this process can hold, at most `wanted`: its open-files soft
    limit raised (up to the hard one) to fit `wanted` and FILES_RESERVED."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + FILES_RESERVED
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (OSError, ValueError) as exc:  # e.g. above the kernel's nr_open
            log.warning("could not raise the open-files limit to %d: %s", raised, exc)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    cap = max(1, soft - FILES_RESERVED)
    log.warning(
        "the open-files limit (%d, `ulimit -Hn`) leaves room for %d connections, not "
        "--max-connections %d: past them requests get 503",
        soft,
        cap,
        wanted,
    )
    return cap


_REFUSAL = msgspec.json.encode(
    {"error": "the master holds as many connections as it may; retry later"}
)
_REFUSAL_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_REFUSAL)).encode()),
    (b"retry-after", str(RETRY_AFTER_S).encode()),
    (b"connection", b"close"),
]


async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 503, "headers": _REFUSAL_HEADERS})
    await send({"type": "http.response.body", "body": _REFUSAL})


def capped(protocol: type[HttpToolsProtocol], cap: int) -> type[HttpToolsProtocol]:
    """`protocol` answering a request 503 + Retry-After while `cap` connections are open."""

    class CappedProtocol(protocol):  # type: ignore[valid-type,misc]
        def on_headers_complete(self) -> None:
            if len(self.connections) < cap:
                super().on_headers_complete()
                return
            # uvicorn takes the request's app from `self.app` here, and only here.
            served, self.app = self.app, _refuse  # type: ignore[has-type]
            try:
                super().on_headers_complete()
            finally:
                self.app = served

    return CappedProtocol
