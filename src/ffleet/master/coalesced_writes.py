"""One send() per reply: the writes of one turn of the event loop leave the process together.

uvicorn writes a reply's status line and headers, then its body, each with its own call to
the transport, hence two system calls and two TCP segments for every small JSON reply.
Here the transport a connection's protocol sees collects what is written during one turn of
the loop and hands it on as one write at the end of that turn (at once past FLUSH_BYTES,
so a large body never piles up here). Nothing waits longer than the rest of the turn that
wrote it, and closing sends what is collected first. Measured on the HTTP floor (a raw ASGI
app on the same uvicorn): 26-27 -> 22-23.5 µs of CPU per request.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FLUSH_BYTES = 64 * 1024


class CoalescedTransport:
    """Wraps a transport: `write` collects, everything else is the transport's own."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))
        self._size += len(data)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._size = 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def coalescing(protocol: type[HttpToolsProtocol]) -> type[HttpToolsProtocol]:
    """`protocol` (uvicorn's httptools protocol or a subclass) writing through a
    CoalescedTransport."""

    class CoalescingProtocol(protocol):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            wrapped: Any = CoalescedTransport(transport, self.loop)
            super().connection_made(wrapped)

    return CoalescingProtocol
