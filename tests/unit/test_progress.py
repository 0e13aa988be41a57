"""FFmpeg's `-progress` lines become Progress snapshots, one per finished block."""

from __future__ import annotations

import logging

import pytest

from ffleet.agent.progress import ProgressParser
from ffleet.models import Progress
from ffleet.scenarios import build_job_spec

SPEC = build_job_spec("320x240", {"duration": 2})  # 30 fps: 60 frames expected


def feed(parser: ProgressParser, block: str) -> None:
    for line in block.strip().splitlines():
        parser.feed(line + "\n")


def test_each_block_reports_the_latest_values() -> None:
    seen: list[Progress] = []
    parser = ProgressParser(SPEC, seen.append)

    feed(parser, "frame=15\nfps=30.5\nout_time_us=500000\nspeed=1.5x\nprogress=continue")
    feed(parser, "frame=60\nfps=31.0\ntotal_size=12345\nspeed= 2x\nprogress=end")

    assert seen == [
        Progress(frame=15, fps=30.5, percent=25.0, speed=1.5),
        Progress(frame=60, fps=31.0, percent=100.0, speed=2.0),
    ]
    assert parser.total_size == 12345 and parser.out_time_s == 0.5


def test_media_time_gives_the_percent_until_a_frame_count_comes() -> None:
    parser = ProgressParser(SPEC, None)
    feed(parser, "frame=N/A\nout_time_us=1500000\nspeed=N/A")

    snapshot = parser.snapshot()

    assert snapshot.frame is None and snapshot.speed is None
    assert snapshot.percent == 75.0


def test_percent_stays_between_0_and_100_and_negative_times_are_unknown() -> None:
    parser = ProgressParser(SPEC, None)
    feed(parser, "frame=90")
    assert parser.snapshot().percent == 100.0

    parser = ProgressParser(SPEC, None)
    feed(parser, "out_time_us=-9223372036854775807")  # FFmpeg before the first packet
    assert parser.out_time_s is None and parser.snapshot().percent is None


def test_a_failing_callback_is_logged_and_parsing_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(_: Progress) -> None:
        raise RuntimeError("display gone")

    parser = ProgressParser(SPEC, broken)
    with caplog.at_level(logging.ERROR, logger="ffleet.agent.progress"):
        feed(parser, "frame=30\nprogress=continue\nframe=45")

    assert "progress callback failed" in caplog.text
    assert parser.frame == 45
