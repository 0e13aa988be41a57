"""Run one job: choose the encoder, run the encode and quality passes, measure them, and say
whether a failure is worth a retry.

The pieces live next to this module: `argv.py` builds the FFmpeg commands, `child_process.py`
supervises each FFmpeg run, `progress.py` parses `-progress`, `metrics.py` assembles the
result's `metrics` (its docstring lists every key) and `analyzer.py` derives the figures and
the recommendation.

FFmpeg's null muxer reports `total_size=N/A`, so `output=null` encodes to a temporary file
in the work dir that is measured and then deleted; the quality pass reads the same file.
"""

from __future__ import annotations

import dataclasses
import functools
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ffleet.agent.analyzer import analyze
from ffleet.agent.argv import build_argv, choose_encoder, output_extension, quality_argv, redact
from ffleet.agent.child_process import ChildExit, run_child
from ffleet.agent.meters import EnergyMeter, GpuSampler
from ffleet.agent.metrics import (
    Metrics,
    quality_score,
    record_child,
    record_energy,
    record_gpu,
    record_progress,
)
from ffleet.agent.progress import ProgressParser
from ffleet.agent.safety import resolve_input_path
from ffleet.encoders import encoder_engine
from ffleet.models import Progress
from ffleet.scenarios import JobSpec, ScenarioError

ExecutionStatus = Literal["completed", "failed", "canceled", "timeout"]


@dataclass
class Execution:
    """A job's outcome. `retryable` says whether running it again could succeed: False for
    bad parameters or inputs, encoders that cannot open, and cancels; True for a timeout, as
    the master's reaper also decides for an attempt it times out itself."""

    status: ExecutionStatus
    metrics: dict[str, object]
    analyzer_output: dict[str, object]
    error: str | None
    retryable: bool


@functools.cache
def _ffmpeg_version(ffmpeg: str) -> tuple[str | None, str | None]:
    try:
        done = subprocess.run(
            [ffmpeg, "-hide_banner", "-version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"`ffmpeg -version` failed: {exc}"
    words = done.stdout.split()
    if done.returncode != 0 or len(words) < 3 or words[1] != "version":
        return None, f"`ffmpeg -version` gave no version (exit code {done.returncode})"
    return words[2], None


def _summary(tail: str) -> str:
    """The last lines of stderr, for an error message that says what went wrong."""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return " | ".join(lines[-6:])[-1000:]


def execute(
    spec: JobSpec,
    *,
    ffmpeg: str,
    encoders: Collection[str],
    work_dir: Path,
    timeout_s: float,
    cancel: threading.Event,
    on_progress: Callable[[Progress], None] | None = None,
    allowed_input_dirs: Sequence[Path] = (),
    on_child: Callable[[int], None] | None = None,
) -> Execution:
    """Run one job to completion, failure, timeout or cancel, and measure it.

    `encoders` are the encoders this node can really use; `timeout_s` bounds the encode and
    the quality pass together; `on_progress` is called from a reader thread; `on_child` gets
    the pid of each FFmpeg started (see leftovers.py).
    """
    job = _Job(spec, ffmpeg, timeout_s, cancel, on_child)
    try:
        encoder = choose_encoder(spec, encoders)
        if spec.input is not None:
            resolved = resolve_input_path(spec.input, allowed_input_dirs)
            job.spec = dataclasses.replace(spec, input=str(resolved))
    except ScenarioError as exc:
        return job.result("failed", str(exc), False, f"FFmpeg did not run: {exc}")
    job.metrics.set("encoder", encoder)
    if cancel.is_set():
        return job.result("canceled", "canceled before FFmpeg started", False, "canceled")

    work_dir.mkdir(parents=True, exist_ok=True)
    extension = output_extension(spec.scenario.codec)
    output: Path | None = None
    if spec.output == "file":
        output = work_dir / f"output.{extension}"
    elif spec.output == "null":
        output = work_dir / f".ffleet-encode-{uuid.uuid4().hex}.{extension}"
    try:
        return job.run(encoder, output, on_progress)
    finally:
        if spec.output == "null" and output is not None:
            output.unlink(missing_ok=True)


class _Job:
    """One execution's state: the spec, the shared deadline and the metrics being filled."""

    def __init__(
        self,
        spec: JobSpec,
        ffmpeg: str,
        timeout_s: float,
        cancel: threading.Event,
        on_child: Callable[[int], None] | None,
    ):
        self.spec = spec
        self.on_child = on_child
        self.ffmpeg = ffmpeg
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.cancel = cancel
        self.metrics = Metrics()
        version, why = _ffmpeg_version(ffmpeg)
        self.metrics.set("ffmpeg_version", version, why)
        if spec.quality == "none":
            self.metrics.set("quality_score", None, "not requested (quality=none)")
        else:
            self.metrics.set("quality_metric", spec.quality)

    def result(
        self, status: ExecutionStatus, error: str | None, retryable: bool, why: str
    ) -> Execution:
        """The Execution; `why` explains every measurement still missing."""
        tail = self.metrics.values["stderr_tail"]
        if isinstance(tail, str):
            self.metrics.set("stderr_tail", redact(tail, self.spec.output))
        final = self.metrics.finish(why)
        error = None if error is None else redact(error, self.spec.output)
        return Execution(status, final, analyze(self.spec, final), error, retryable)

    def run(
        self, encoder: str, output: Path | None, on_progress: Callable[[Progress], None] | None
    ) -> Execution:
        """The encode pass, then the quality pass when one is asked for."""
        spec, metrics = self.spec, self.metrics
        argv = build_argv(
            spec, self.ffmpeg, encoder, spec.output if output is None else str(output)
        )
        metrics.set("ffmpeg_argv", [redact(arg, spec.output) for arg in argv])
        parser = ProgressParser(spec, on_progress)
        energy = EnergyMeter()
        gpu = GpuSampler() if encoder_engine(encoder) == "nvenc" else None
        energy.start()
        if gpu is not None:
            gpu.start()
        try:
            child = self._spawn(argv, parser.feed)
        finally:
            joules, energy_reason = energy.stop()
            record_gpu(metrics, gpu, encoder)
        if isinstance(child, str):
            return self.result("failed", child, False, "FFmpeg did not run")
        record_child(metrics, child)
        record_progress(metrics, spec, parser, output)
        record_energy(metrics, joules, energy_reason)
        if spec.output == "file" and output is not None and output.is_file():
            metrics.set("output_path", str(output))

        if child.stopped is not None:
            return self._stopped(child)
        if child.exit_code != 0:
            metrics.set("stderr_tail", child.stderr_tail)
            error = f"FFmpeg failed with exit code {child.exit_code}: {_summary(child.stderr_tail)}"
            killed = child.exit_code is not None and child.exit_code < 0
            return self.result("failed", error, killed or not child.permanent, "FFmpeg failed")
        if spec.quality != "none" and output is not None:
            check_argv = quality_argv(spec, self.ffmpeg, output)
            metrics.set("quality_ffmpeg_argv", check_argv)
            check = self._spawn(check_argv, None)
            if isinstance(check, str):
                metrics.set("quality_score", None, f"the quality pass: {check}")
            elif check.stopped is not None:
                metrics.set("quality_score", None, f"the quality pass was {check.stopped}")
                return self._stopped(check)
            elif check.exit_code != 0:
                reason = f"the {spec.quality} pass failed: {_summary(check.stderr_tail)}"
                metrics.set("quality_score", None, reason)
            else:
                score, why = quality_score(spec.quality, check.stderr_tail)
                metrics.set("quality_score", score, why)
        return self.result("completed", None, False, "not measured")

    def _spawn(self, argv: list[str], on_line: Callable[[str], None] | None) -> ChildExit | str:
        """The finished child, or why it could not start."""
        try:
            return run_child(
                argv,
                deadline=self.deadline,
                cancel=self.cancel,
                on_line=on_line,
                on_start=self.on_child,
            )
        except OSError as exc:
            return f"cannot start FFmpeg {argv[0]!r}: {exc}"

    def _stopped(self, child: ChildExit) -> Execution:
        """The result for a child we had to kill. A timeout may pass on a retry (another node,
        a quieter moment); a cancel was asked for and is final."""
        self.metrics.set("stderr_tail", child.stderr_tail)
        if child.stopped == "timeout":
            return self.result(
                "timeout", f"timed out after {self.timeout_s:g} s", True, "timed out"
            )
        return self.result("canceled", "canceled", False, "canceled")
