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
    # What the process built to start lives as long as it: a full garbage collection walked
    # those ~50,000 objects every time (10-15 ms with the event loop held) for nothing.
    gc.collect()
    gc.freeze()
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # as uvicorn.run does
