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
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ffleet.agent import conditions, repeats
from ffleet.agent.analyzer import analyze
from ffleet.agent.argv import build_argv, choose_encoder, output_extension, quality_argv, redact
from ffleet.agent.child_process import ChildExit, Placement, run_child
from ffleet.agent.ffmpeg_build import identify
from ffleet.agent.file_hashes import HASHES, FileHashes
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
from ffleet.scenarios import JobSpec, ScenarioError, default_stall_timeout_s

ExecutionStatus = Literal["completed", "failed", "canceled", "timeout"]


@dataclass
class Execution:
    """A job's outcome. `retryable` says whether running it again could succeed: False for
    bad parameters or inputs, encoders that cannot open, and cancels; True for a timeout or a
    stall, as the master's reaper also decides for an attempt it times out itself.
    `wrong_node`: this node cannot run the job but another may (its input file does not match
    the pinned hash), so the master places the job elsewhere."""

    status: ExecutionStatus
    metrics: dict[str, object]
    analyzer_output: dict[str, object]
    error: str | None
    retryable: bool
    wrong_node: bool = False


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
    stall_timeout_s: float | None = None,
    master_as_worker: bool = False,
    hashes: FileHashes = HASHES,
) -> Execution:
    """Run one job to completion, failure, timeout, stall or cancel, and measure it.

    `encoders` are the encoders this node can really use; `timeout_s` bounds every run and
    the quality pass together; `stall_timeout_s` (default from the scenario) bounds how long
    the `-progress` counters may stand still; `on_progress` is called from a reader thread.
    `master_as_worker` is said in the result: the master shares this node's CPU.
    """
    stall = stall_timeout_s or default_stall_timeout_s(spec, timeout_s)
    job = _Job(spec, ffmpeg, timeout_s, stall, cancel)
    job.metrics.set("master_as_worker", master_as_worker)
    try:
        encoder = choose_encoder(spec, encoders)
        job.placement = _placement(spec)
        job.metrics.set("input", _generated_input(spec))
        if spec.input is not None:
            resolved = resolve_input_path(spec.input, allowed_input_dirs)
            job.spec = dataclasses.replace(spec, input=str(resolved))
            mismatch = _identify_file(job, resolved, hashes)
            if mismatch is not None:
                return job.result("failed", mismatch, False, "FFmpeg did not run", wrong_node=True)
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


def _placement(spec: JobSpec) -> Placement | None:
    """The job's CPU pinning and nice level, checked against what this agent may grant."""
    if spec.cpu_affinity is None and spec.nice is None:
        return None
    if spec.cpu_affinity is not None:
        missing = sorted(set(spec.cpu_affinity) - os.sched_getaffinity(0))
        if missing:
            raise ScenarioError(
                f"cpu_affinity names CPU(s) {missing} that this agent may not use "
                f"(it may use {sorted(os.sched_getaffinity(0))})."
            )
    if spec.nice is not None and spec.nice < os.nice(0) and os.geteuid() != 0:
        raise ScenarioError(
            f"nice {spec.nice} is below this agent's own nice level {os.nice(0)}; "
            "only a privileged agent could lower it."
        )
    return Placement(spec.cpu_affinity, spec.nice)


def _generated_input(spec: JobSpec) -> dict[str, object] | None:
    """The full parameters of a generated test pattern (it has no seed: it is deterministic)."""
    if spec.input is not None:
        return None
    scenario = spec.scenario
    return {
        "kind": "generated",
        "source": "testsrc2",
        "size": f"{scenario.width}x{scenario.height}",
        "rate": scenario.fps,
        "duration_s": spec.duration_s,
        "pixel_format": "yuv420p",
    }


def _identify_file(job: _Job, path: Path, hashes: FileHashes) -> str | None:
    """Record the input file's identity; the error when it does not match the pinned hash."""
    try:
        digest, size = hashes.sha256(path)
    except OSError as exc:
        raise ScenarioError(f"cannot read the input file: {exc}") from None
    job.metrics.set("input", {"kind": "file", "path": str(path), "bytes": size, "sha256": digest})
    pinned = job.spec.input_sha256
    if pinned is not None and digest != pinned:
        return (
            f"the input file {path} on this node has SHA-256 {digest}, not the pinned {pinned}; "
            "another node must run this job"
        )
    return None


class _Job:
    """One execution's state: the spec, the shared deadline and the metrics being filled."""

    def __init__(
        self,
        spec: JobSpec,
        ffmpeg: str,
        timeout_s: float,
        stall_timeout_s: float,
        cancel: threading.Event,
    ) -> None:
        self.spec = spec
        self.ffmpeg = ffmpeg
        self.timeout_s = timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.cancel = cancel
        self.placement: Placement | None = None
        self.parser: ProgressParser | None = None
        self.metrics = Metrics()
        build = identify(ffmpeg)
        self.metrics.set("ffmpeg_version", build.version, build.problem)
        self.metrics.set("ffmpeg_sha256", build.sha256, build.problem)
        self.metrics.set("ffmpeg_configuration", build.configuration, build.problem)
        self.metrics.set("warmup_runs", spec.warmup)
        self.metrics.set("stall_timeout_s", stall_timeout_s)
        pinned = None if spec.cpu_affinity is None else list(spec.cpu_affinity)
        self.metrics.set("cpu_affinity", pinned, "not pinned: any CPU this agent may use")
        self.metrics.set("nice", spec.nice if spec.nice is not None else os.nice(0))
        if spec.quality == "none":
            self.metrics.set("quality_score", None, "not requested (quality=none)")
        else:
            self.metrics.set("quality_metric", spec.quality)

    def result(
        self,
        status: ExecutionStatus,
        error: str | None,
        retryable: bool,
        why: str,
        *,
        wrong_node: bool = False,
    ) -> Execution:
        """The Execution; `why` explains every measurement still missing."""
        tail = self.metrics.values["stderr_tail"]
        if isinstance(tail, str):
            self.metrics.set("stderr_tail", redact(tail, self.spec.output))
        final = self.metrics.finish(why)
        error = None if error is None else redact(error, self.spec.output)
        return Execution(status, final, analyze(self.spec, final), error, retryable, wrong_node)

    def run(
        self, encoder: str, output: Path | None, on_progress: Callable[[Progress], None] | None
    ) -> Execution:
        """The warm-up and measured encode runs, then the quality pass when one is asked for."""
        spec, metrics = self.spec, self.metrics
        argv = build_argv(
            spec, self.ffmpeg, encoder, spec.output if output is None else str(output)
        )
        metrics.set("ffmpeg_argv", [redact(arg, spec.output) for arg in argv])
        runs: list[dict[str, object]] = []
        for index in range(spec.runs):
            child = self._encode(argv, encoder, output, on_progress)
            if isinstance(child, str):
                return self.result("failed", child, False, "FFmpeg did not run")
            if child.stopped is not None:
                return self._stopped(child)
            if child.exit_code != 0:
                metrics.set("stderr_tail", child.stderr_tail)
                error = (
                    f"FFmpeg failed with exit code {child.exit_code}: {_summary(child.stderr_tail)}"
                )
                killed = child.exit_code is not None and child.exit_code < 0
                return self.result("failed", error, killed or not child.permanent, "FFmpeg failed")
            if index >= spec.warmup:
                runs.append(repeats.run_figures(metrics.values))
        summaries = repeats.summarize(runs)
        noisy = repeats.noisy_metrics(summaries, spec.noise_threshold)
        metrics.set("runs", runs)
        metrics.set("summary", summaries)
        metrics.set("noisy", bool(noisy))
        metrics.set("noisy_metrics", noisy)
        metrics.set("disturbed", any(run["disturbed"] for run in runs))
        if spec.output == "file" and output is not None and output.is_file():
            metrics.set("output_path", str(output))
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

    def _encode(
        self,
        argv: list[str],
        encoder: str,
        output: Path | None,
        on_progress: Callable[[Progress], None] | None,
    ) -> ChildExit | str:
        """One encode run, measured into the metrics (a later run overwrites an earlier one's)."""
        spec, metrics = self.spec, self.metrics
        parser = self.parser = ProgressParser(spec, on_progress)
        energy = EnergyMeter()
        gpu = GpuSampler() if encoder_engine(encoder) == "nvenc" else None
        before = conditions.snapshot()
        energy.start()
        if gpu is not None:
            gpu.start()
        try:
            child = self._spawn(argv, parser.feed, stalled=self._stalled)
        finally:
            joules, energy_reason = energy.stop()
            record_gpu(metrics, gpu, encoder)
        if isinstance(child, str):
            return child
        after = conditions.snapshot()
        record_child(metrics, child)
        record_progress(metrics, spec, parser, output)
        record_energy(metrics, joules, energy_reason)
        cpu = metrics.values["cpu_seconds"]
        found = conditions.judge(
            before,
            after,
            cpu if isinstance(cpu, float) else None,
            child.wall_s,
            os.cpu_count() or 1,  # /proc/stat counts every core of the machine
        )
        for key, value in found.metrics().items():
            metrics.set(key, value, "not readable on this node (/proc/stat, cpufreq)")
        return child

    def _stalled(self) -> bool:
        return self.parser is not None and self.parser.stalled_for() >= self.stall_timeout_s

    def _spawn(
        self,
        argv: list[str],
        on_line: Callable[[str], None] | None,
        stalled: Callable[[], bool] | None = None,
    ) -> ChildExit | str:
        """The finished child, or why it could not start."""
        try:
            return run_child(
                argv,
                deadline=self.deadline,
                cancel=self.cancel,
                on_line=on_line,
                stalled=stalled,
                placement=self.placement,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"cannot start FFmpeg {argv[0]!r}: {exc}"

    def _stopped(self, child: ChildExit) -> Execution:
        """The result for a child we had to kill. A timeout or a stall may pass on a retry
        (another node, a quieter moment); a cancel was asked for and is final."""
        self.metrics.set("stderr_tail", child.stderr_tail)
        if child.stopped == "timeout":
            return self.result(
                "timeout", f"timed out after {self.timeout_s:g} s", True, "timed out"
            )
        if child.stopped == "stalled":
            assert self.parser is not None
            error = (
                f"stalled at frame {self.parser.frame or 0} "
                f"({self.parser.stalled_for():.0f} s without progress)"
            )
            return self.result("failed", error, True, "stalled")
        return self.result("canceled", "canceled", False, "canceled")
