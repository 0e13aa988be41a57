"""Serve the master's app with uvicorn, and stop it quickly and harmlessly.

On SIGTERM uvicorn stops accepting connections and then waits for every open request, a
long-poll included (up to its `wait`), while the reaper keeps judging nodes whose heartbeats
can no longer arrive. So the master stops reaping and dispatching *before* uvicorn waits, and
answers every waiting job request at once with no job: the process is gone in moments, and
no attempt ends because it stopped.
"""

from __future__ import annotations

import gc
import math
import socket
import sys
from collections.abc import Mapping

import uvicorn
from starlette.applications import Starlette
from uvicorn.config import STARTUP_FAILURE

from ffleet.master.coalesced_writes import coalescing
from ffleet.master.connection_cap import capped, connection_cap
from ffleet.master.settings import MasterSettings
from ffleet.master.slow_clients import header_timeout_protocol

# A request still open this long after the stop began is cut off (a stuck client upload).
STOP_GRACE_S = 5


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, application: Starlette) -> None:
        super().__init__(config)
        self._application = application

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._application.state.master.begin_stop()
        await super().shutdown(sockets=sockets)


# A young collection runs after this many more container objects made than freed (Python's
# default: 700), and a full one is considered after this many collections of the middle
# generation (Python's default: 10); see `collect_garbage_rarely`.
YOUNG_COLLECTION_AFTER = 10_000
FULL_COLLECTION_AFTER = 1000


def collect_garbage_rarely() -> None:
    """Keep garbage collections from costing the requests they interrupt.

    What the process built to start lives as long as it: frozen, no collection walks those
    ~60,000 objects again. A waiting long-poll holds ~80 objects (its request's coroutines,
    the connection's parser and transport) for up to its `wait`: with 10,000 agents renewing
    their polls, Python's default thresholds ran a full collection every 7-10 s, walking
    0.8-0.9 million objects for 0.3-2.8 s each (load 2-5) and finding none to free (64
    objects in 14 collections). Young collections still free the short-lived cycles; a full
    one now comes after 100x as many of them (~15 min at that load), which measured no more
    memory.

    At 700 a young collection came every few requests and walked what the requests in flight
    still held (64 agents' results: 7 % of a result's instructions, 5 % of a heartbeat's);
    after 10,000, most of a request's objects are freed before any collection sees them.
    """
    gc.collect()
    gc.freeze()
    _, middle, _ = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_AFTER, middle, FULL_COLLECTION_AFTER)


def serve(
    application: Starlette,
    settings: MasterSettings,
    log_level: str,
    tls: Mapping[str, object] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT; `tls` holds uvicorn's ssl_* options when TLS is on."""
    protocol = header_timeout_protocol(settings.header_timeout_s)
    protocol = capped(protocol, connection_cap(settings.max_connections))
    config = uvicorn.Config(
        application,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        proxy_headers=False,  # ffleet reads no forwarded headers; parsing them costs per request
        timeout_keep_alive=math.ceil(settings.keep_alive_s),  # uvicorn takes whole seconds
        timeout_graceful_shutdown=STOP_GRACE_S,
        # one send() per reply; request headers late past --header-timeout close the connection;
        # past --max-connections a request gets 503 + Retry-After
        http=coalescing(protocol),
        **dict(tls or {}),  # type: ignore[arg-type]
    )
    server = _Server(config, application)
    collect_garbage_rarely()
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # as uvicorn.run does
