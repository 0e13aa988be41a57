"""Tests of agent/host_reads.py: a command or file that cannot be read answers None, never an
exception, and bytes that are not UTF-8 come back replaced rather than failing the read."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ffleet.agent import host_reads
from ffleet.agent.host_reads import command_output, read_text


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_successful_command_gives_its_stdout() -> None:
    assert command_output(python("import sys; print('out'); print('err', file=sys.stderr)")) == (
        "out\n"
    )


def test_a_missing_failing_or_hung_command_gives_none(monkeypatch: pytest.MonkeyPatch) -> None:
    assert command_output(["/nonexistent/tool", "--version"]) is None
    assert command_output(python("print('partial'); raise SystemExit(3)")) is None
    monkeypatch.setattr(host_reads, "COMMAND_TIMEOUT_S", 0.2)
    assert command_output(python("import time; time.sleep(30)")) is None


def test_undecodable_output_is_replaced() -> None:
    assert command_output(python("import sys; sys.stdout.buffer.write(b'a\\xffb')")) == "a\ufffdb"


def test_a_file_reads_as_text_and_an_unreadable_one_as_none(tmp_path: Path) -> None:
    good = tmp_path / "meminfo"
    good.write_bytes(b"MemTotal: 1 kB\n\xff\n")
    assert read_text(str(good)) == "MemTotal: 1 kB\n\ufffd\n"
    assert read_text(str(tmp_path / "missing")) is None
    assert read_text(str(tmp_path)) is None  # a directory
