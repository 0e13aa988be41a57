"""Live pages by Server-Sent Events: the page's live region, re-rendered and pushed on change.

Every event carries the whole region, so a browser that reconnects (EventSource does so by
itself) catches up with its first event, whatever it missed; `Last-Event-ID` only continues
the numbering. The server renders once per `LIVE_INTERVAL_S` and sends only what changed, so
an idle page costs a render a second and no traffic. A stream ends after `STREAM_LIFETIME_S`
and the browser reconnects at once: an open dashboard never holds up a master that stops,
just as a long-poll never waits longer than --max-wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from ffleet.master.http import ApiError
from ffleet.store import StoreError

LIVE_INTERVAL_S = 1.0
STREAM_LIFETIME_S = 15.0
RECONNECT_MS = 1000
PING_S = 15.0  # a comment line now and then keeps idle proxies from closing the stream


def event(event_id: int, name: str, data: str) -> bytes:
    """One SSE event; each line of `data` becomes a `data:` line (the browser joins them)."""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"id: {event_id}\nevent: {name}\n{lines}\n".encode()


def first_id(last_event_id: str | None) -> int:
    try:
        return int(last_event_id or 0) + 1
    except ValueError:
        return 1


async def stream(render: Callable[[], str], last_event_id: str | None) -> AsyncIterator[bytes]:
    """Events of `render()`'s output whenever it differs from the last one sent."""
    yield f"retry: {RECONNECT_MS}\n\n".encode()
    next_id = first_id(last_event_id)
    sent: str | None = None
    started = last_ping = time.monotonic()
    while time.monotonic() - started < STREAM_LIFETIME_S:
        try:
            html = render()
        except StoreError as exc:  # e.g. the job is gone: say so once and end
            yield event(next_id, "gone", str(exc))
            return
        except ApiError as exc:  # the viewer's token was revoked or expired meanwhile
            yield event(next_id, "signed-out", exc.message)
            return
        if html != sent:
            yield event(next_id, "region", html)
            next_id += 1
            sent = html
        elif time.monotonic() - last_ping >= PING_S:
            yield b": ping\n\n"
            last_ping = time.monotonic()
        await asyncio.sleep(LIVE_INTERVAL_S)
