"""A reply's writes in one turn of the event loop reach the socket as one."""

from __future__ import annotations

import asyncio
from typing import Any

from ffleet.master.coalesced_writes import FLUSH_BYTES, CoalescedTransport


class Recording:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> Any:
        return f"info {name}"


def test_one_turns_writes_leave_together_and_closing_sends_them_first() -> None:
    async def scenario() -> None:
        sink = Recording()
        transport = CoalescedTransport(sink, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(bytearray(b"{}"))
        assert sink.writes == []
        await asyncio.sleep(0)
        assert sink.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
        transport.write(b"x" * FLUSH_BYTES)  # a large body is not held back
        assert len(sink.writes) == 2
        transport.write(b"last")
        transport.close()
        assert sink.writes[-1] == b"last" and sink.closed
        assert transport.get_extra_info("peername") == "info peername"
        await asyncio.sleep(0)  # the flush scheduled for `last` finds nothing left
        assert len(sink.writes) == 3

    asyncio.run(scenario())
