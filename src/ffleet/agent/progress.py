"""Parse FFmpeg's `-progress` output into the `Progress` the agent reports to the master.

FFmpeg writes `key=value` lines and ends each block with `progress=continue` (or `=end`); the
parser keeps the latest values, so the final ones are also the run's frame count, speed and,
for a stream, the bytes sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ffleet.models import Progress
from ffleet.scenarios import JobSpec

log = logging.getLogger(__name__)


class ProgressParser:
    """Folds `-progress` lines into the latest values and reports each finished block.

    `percent` is frames done over frames expected, or media time over duration while FFmpeg
    has not reported a frame count yet. `last_advance` is when the frame or media-time counter
    last moved (monotonic; from construction until the first block): stall detection reads it.
    """

    def __init__(self, spec: JobSpec, on_progress: Callable[[Progress], None] | None) -> None:
        self._expected_frames = spec.duration_s * spec.scenario.fps
        self._duration = spec.duration_s
        self._on_progress = on_progress
        self.frame: int | None = None
        self.fps: float | None = None
        self.out_time_s: float | None = None
        self.speed: float | None = None
        self.total_size: int | None = None
        self.last_advance = time.monotonic()

    def stalled_for(self) -> float:
        """Seconds since the frame or media-time counter last moved."""
        return time.monotonic() - self.last_advance

    def feed(self, line: str) -> None:
        key, _, value = line.strip().partition("=")
        value = value.strip()
        if key == "frame":
            frame = _int(value)
            if frame is not None and frame > (self.frame or 0):
                self.last_advance = time.monotonic()
            self.frame = frame
        elif key == "fps":
            self.fps = _float(value)
        elif key == "out_time_us":
            micros = _int(value)
            out_time = micros / 1e6 if micros is not None and micros >= 0 else None
            if out_time is not None and out_time > (self.out_time_s or 0.0):
                self.last_advance = time.monotonic()
            self.out_time_s = out_time
        elif key == "speed":
            self.speed = _float(value.rstrip("x"))
        elif key == "total_size":
            self.total_size = _int(value)
        elif key == "progress" and self._on_progress is not None:
            try:
                self._on_progress(self.snapshot())
            except Exception:  # a broken callback must not stall FFmpeg's pipe
                log.exception("progress callback failed")

    def snapshot(self) -> Progress:
        if self.frame is not None:
            percent: float | None = 100 * self.frame / self._expected_frames
        elif self.out_time_s is not None:
            percent = 100 * self.out_time_s / self._duration
        else:
            percent = None
        return Progress(
            frame=self.frame,
            fps=self.fps,
            percent=None if percent is None else min(100.0, max(0.0, percent)),
            speed=self.speed,
        )


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
