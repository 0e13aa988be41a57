"""Build the FFmpeg command for a job, run it as a child process and measure it.

FFmpeg always runs from an argv list (never a shell), in its own session so that a kill
reaches it, with `-progress pipe:1` parsed live. The child is reaped with `os.wait4` so its
own CPU time and peak memory are measured, not ours.

Every result's `metrics` holds all the keys below. A measurement that could not be made is
None and `metrics["unavailable"][key]` says why (also for ones not asked for, e.g. quality).

=================================  =========================================================
wall_seconds                       s, monotonic, FFmpeg start to exit (encode pass only)
cpu_user_seconds                   s of user CPU of the FFmpeg child (rusage)
cpu_system_seconds                 s of system CPU of the FFmpeg child (rusage)
cpu_utilization_cores              (user + system) / wall: average number of busy cores
cpu_utilization_percent            the same in percent of one core (200 = two cores busy)
peak_rss_bytes                     bytes, peak resident memory (ru_maxrss KiB x 1024)
frames                             frames encoded (FFmpeg's last progress `frame=`)
fps                                frames / wall_seconds
speed                              FFmpeg's final `speed=`: media seconds per wall second
output_bytes                       bytes of the encoded file; for RTMP the bytes sent
bitrate_bps                        bit/s: output_bytes x 8 / (frames / scenario fps)
energy_joules                      J of the CPU package(s) during the encode, from RAPL
avg_power_watts                    W: energy_joules / wall_seconds
gpu_utilization_percent            %, NVML GPU utilisation, mean of 0.2 s samples (NVENC)
gpu_encoder_utilization_percent    %, NVML NVENC utilisation, same sampling
gpu_power_watts                    W, NVML board power, mean of the samples
gpu_energy_joules                  J, NVML total-energy counter difference
quality_metric                     `psnr`, `ssim`, `vmaf`, or None when not asked
quality_score                      PSNR average in dB, SSIM `All` (0-1) or VMAF (0-100)
ffmpeg_version                     the `ffmpeg -version` string
ffmpeg_argv                        the encode argv (an RTMP stream key is redacted)
quality_ffmpeg_argv                the quality-pass argv, or None
encoder                            the FFmpeg encoder chosen, e.g. `libx264`
exit_code                          FFmpeg's exit code; negative: killed by that signal
stderr_tail                        last 4 KiB of FFmpeg's stderr when the job did not complete
output_path                        the kept file for `output=file`, else None
cpu_usage / memory_usage           legacy: cpu_utilization_percent, peak_rss_bytes (bytes)
duration                           legacy: wall_seconds (s)
=================================  =========================================================

FFmpeg's null muxer reports `total_size=N/A`, so `output=null` encodes to a temporary file
in the work dir that is measured and then deleted; the quality pass reads the same file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import re
import resource
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from ffleet.agent.analyzer import analyze
from ffleet.agent.meters import EnergyMeter, GpuSampler
from ffleet.agent.safety import resolve_input_path
from ffleet.scenarios import (
    DEFAULT_PRESETS,
    JobSpec,
    ScenarioError,
    accepts_preset,
    candidate_encoders,
    encoder_engine,
    encoder_family,
)

log = logging.getLogger(__name__)

STDERR_TAIL_BYTES = 4096
TERM_GRACE_S = 2.0
_POLL_S = 0.05

# Matched against every stderr line: failures that a retry of the same job cannot fix ...
_PERMANENT = (
    "unknown encoder",
    "encoder not found",
    "invalid argument",
    "error setting option",
    "no such file or directory",
    "unrecognized option",
    "option not found",
    "invalid data found when processing input",
    "permission denied",
)
# ... unless one of these transient causes shows up too (they often end in EINVAL as well).
_TRANSIENT = (
    "out of memory",
    "cannot allocate memory",
    "resource temporarily unavailable",
    "connection refused",
    "connection reset",
    "connection timed out",
    "broken pipe",
    "network is unreachable",
    "no space left on device",
)

_CRF = {"libx264": "23", "libx265": "28", "libvpx-vp9": "31", "libsvtav1": "35"}
_NVENC_CQ = {"h264": "23", "hevc": "28", "av1": "32"}
_CONTAINERS = {"h264": "mp4", "hevc": "mp4", "av1": "mp4", "vp9": "webm"}
_QUALITY_FILTERS = {"psnr": "psnr=shortest=1", "ssim": "ssim=shortest=1", "vmaf": "libvmaf"}
_SCORE_PATTERNS = {
    "psnr": re.compile(r"PSNR .*average:(\S+)"),
    "ssim": re.compile(r"SSIM .*All:(\S+)"),
    "vmaf": re.compile(r"VMAF score: (\S+)"),
}


@dataclass
class Progress:
    """One `-progress` block. `percent` is frames done over frames expected, or media time
    over duration when FFmpeg has not reported a frame count yet."""

    frame: int | None
    fps: float | None
    percent: float | None
    out_time_s: float | None
    speed: float | None


@dataclass
class Execution:
    """A job's outcome. `retryable` says whether running it again could succeed: False for
    bad parameters or inputs, encoders that cannot open, timeouts and cancels."""

    status: str  # "completed" | "failed" | "canceled" | "timeout"
    metrics: dict[str, object]
    analyzer_output: dict[str, object]
    error: str | None
    retryable: bool


def choose_encoder(spec: JobSpec, available_encoders: Collection[str]) -> str:
    """The encoder for `spec` on a node with `available_encoders` (names it can really use).

    `cpu` and the hardware engines ask for that one encoder; `auto` takes NVENC, then QSV,
    then VAAPI, then the CPU encoder, skipping any that does not accept the given preset.
    """
    codec = spec.scenario.codec
    candidates = candidate_encoders(codec, spec.engine)
    present = [encoder for encoder in candidates if encoder in available_encoders]
    for encoder in present:
        if accepts_preset(encoder, spec.preset):
            return encoder
    if present:
        raise ScenarioError(
            f"Preset {spec.preset!r} does not suit {', '.join(present)}, "
            f"the {codec} encoder(s) this node has for engine {spec.engine!r}."
        )
    if spec.engine == "auto":
        raise ScenarioError(
            f"This node has no {codec} encoder (looked for {', '.join(candidates)})."
        )
    names = ", ".join(candidates) or f"a {spec.engine} {codec} encoder"
    raise ScenarioError(f"Engine {spec.engine!r} needs {names}, which this node does not have.")


def output_extension(codec: str) -> str:
    """The file extension (and muxer) an encoded file of `codec` is written with."""
    return _CONTAINERS[codec]


def _seconds(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _is_stream(output: str) -> bool:
    return output not in ("null", "file")


def _source_args(spec: JobSpec) -> list[str]:
    """Input options for the job's source: the file, or the deterministic test pattern."""
    scenario = spec.scenario
    if spec.input is not None:
        return ["-t", _seconds(spec.duration_s), "-i", spec.input]
    pattern = (
        f"testsrc2=size={scenario.width}x{scenario.height}:rate={scenario.fps}"
        f":duration={_seconds(spec.duration_s)}"
    )
    return ["-f", "lavfi", "-i", pattern]


def _conform_filter(spec: JobSpec) -> str:
    """Bring a file input to the scenario's size and rate; the test pattern already is."""
    scenario = spec.scenario
    if spec.input is None:
        return ""
    return f"scale={scenario.width}:{scenario.height},fps={scenario.fps},"


def _encoder_args(spec: JobSpec, encoder: str, streaming: bool) -> list[str]:
    family = encoder_family(encoder)
    preset = spec.preset if spec.preset is not None else DEFAULT_PRESETS[family]
    bitrate = spec.bitrate_bps
    args: list[str] = []
    if family == "libvpx-vp9":
        if preset in ("realtime", "good"):  # "good" keeps libvpx's default cpu-used
            args += ["-deadline", preset] + (["-cpu-used", "8"] if preset == "realtime" else [])
        elif preset is not None:
            # libvpx only honours cpu-used above 5 in realtime mode.
            deadline = "good" if preset.isdigit() and int(preset) <= 5 else "realtime"
            args += ["-deadline", deadline, "-cpu-used", preset]
        args += ["-row-mt", "1"]
    elif preset is not None:
        args += ["-preset", preset]
    if bitrate is not None:
        args += ["-b:v", str(bitrate)]
        if streaming and family in ("libx264", "libx265", "nvenc", "qsv"):
            args += ["-maxrate", str(bitrate), "-bufsize", str(2 * bitrate)]
    elif family in _CRF:
        args += ["-crf", _CRF[family]] + (["-b:v", "0"] if family == "libvpx-vp9" else [])
    elif family == "nvenc":
        args += ["-rc", "vbr", "-cq", _NVENC_CQ[spec.scenario.codec], "-b:v", "0"]
    elif family == "qsv":
        args += ["-global_quality", "25"]
    # VAAPI without a bitrate keeps the driver's default rate control.
    if streaming:
        args += ["-g", str(2 * spec.scenario.fps)]
    elif spec.scenario.codec == "hevc":
        args += ["-tag:v", "hvc1"]
    return args


def build_argv(spec: JobSpec, ffmpeg: str, encoder: str, output_path: str) -> list[str]:
    """The encode command: source -> conform -> encoder -> file or RTMP (flv)."""
    engine = encoder_engine(encoder)
    streaming = _is_stream(spec.output)
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-y", "-nostats", "-progress", "pipe:1"]
    if engine == "vaapi":  # VAAPI encoders only take frames already on the device
        argv += ["-init_hw_device", "vaapi=hw", "-filter_hw_device", "hw"]
    if streaming:
        argv.append("-re")  # a live stream is paced at the source's rate
    argv += _source_args(spec)
    upload = {"vaapi": "format=nv12,hwupload", "qsv": "format=nv12"}.get(engine, "format=yuv420p")
    argv += ["-map", "0:v:0", "-vf", _conform_filter(spec) + upload]
    argv += ["-c:v", encoder, *_encoder_args(spec, encoder, streaming)]
    if spec.input is not None:
        argv += ["-t", _seconds(spec.duration_s)]
    if streaming:
        argv += ["-f", "flv", "-flvflags", "no_duration_filesize", output_path]
    else:
        argv += ["-f", output_extension(spec.scenario.codec), output_path]
    return argv


def _quality_argv(spec: JobSpec, ffmpeg: str, encoded: Path) -> list[str]:
    """Compare the encoded file with the same source, frame by frame, on the CPU."""
    measure = _QUALITY_FILTERS[spec.quality]
    if spec.quality == "vmaf":
        measure += f"=shortest=1:n_threads={os.cpu_count() or 1}"
    align = "settb=AVTB,setpts=PTS-STARTPTS,format=yuv420p"
    graph = f"[0:v]{align}[dist];[1:v]{_conform_filter(spec)}{align}[ref];[dist][ref]{measure}"
    return [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-i",
        str(encoded),
        *_source_args(spec),
        "-lavfi",
        graph,
        "-f",
        "null",
        "-",
    ]


def _redact(text: str, output: str) -> str:
    """Hide an RTMP URL's stream key (last path segment) and credentials in recorded text."""
    if not _is_stream(output):
        return text
    parts = urlsplit(output)
    head = parts.path.rpartition("/")[0]
    netloc = parts.netloc.rpartition("@")[2]
    return text.replace(output, urlunsplit((parts.scheme, netloc, f"{head}/<redacted>", "", "")))


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


class _ProgressParser:
    """Folds `-progress` key=value lines into the latest values and reports each block."""

    def __init__(self, spec: JobSpec, on_progress: Callable[[Progress], None] | None) -> None:
        self._expected_frames = spec.duration_s * spec.scenario.fps
        self._duration = spec.duration_s
        self._on_progress = on_progress
        self.frame: int | None = None
        self.fps: float | None = None
        self.out_time_s: float | None = None
        self.speed: float | None = None
        self.total_size: int | None = None

    def feed(self, line: str) -> None:
        key, _, value = line.strip().partition("=")
        value = value.strip()
        if key == "frame":
            self.frame = _int(value)
        elif key == "fps":
            self.fps = _float(value)
        elif key == "out_time_us":
            micros = _int(value)
            self.out_time_s = micros / 1e6 if micros is not None and micros >= 0 else None
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
            out_time_s=self.out_time_s,
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


@dataclass
class _Child:
    exit_code: int | None
    wall_s: float
    user_s: float | None
    system_s: float | None
    peak_rss_bytes: int | None
    stderr_tail: str
    stopped: str | None  # "timeout" or "canceled" when we had to kill it
    permanent: bool  # stderr showed a failure retrying cannot fix


class _StderrTail:
    """Keeps the last bytes of stderr and notes which failure markers went past."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.permanent = False
        self.transient = False

    def consume(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.buffer += raw
            del self.buffer[:-STDERR_TAIL_BYTES]
            lowered = raw.decode("utf-8", "replace").lower()
            self.permanent |= any(marker in lowered for marker in _PERMANENT)
            self.transient |= any(marker in lowered for marker in _TRANSIENT)


def _run_child(
    argv: list[str],
    *,
    deadline: float,
    cancel: threading.Event,
    on_line: Callable[[str], None] | None,
) -> _Child:
    """Run argv in its own session to its end, a timeout or a cancel; SIGTERM, then SIGKILL
    after a grace period, reaches its whole process group."""
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if on_line is not None else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    reaper = _Reaper(proc.pid)

    def read_stdout(stream: IO[bytes]) -> None:
        assert on_line is not None
        for raw in iter(stream.readline, b""):
            on_line(raw.decode("utf-8", "replace"))

    tail = _StderrTail()
    assert proc.stderr is not None
    readers = [threading.Thread(target=tail.consume, args=(proc.stderr,), daemon=True)]
    if proc.stdout is not None:
        readers.append(threading.Thread(target=read_stdout, args=(proc.stdout,), daemon=True))
    for thread in readers:
        thread.start()
    reaper.start()

    stop_reason: str | None = None
    try:
        while not reaper.finished.wait(_POLL_S):
            if cancel.is_set():
                stop_reason = "canceled"
                break
            if time.monotonic() >= deadline:
                stop_reason = "timeout"
                break
    finally:
        if not reaper.finished.is_set():
            reaper.signal_group(signal.SIGTERM)
            if not reaper.finished.wait(TERM_GRACE_S):
                reaper.signal_group(signal.SIGKILL)
            reaper.finished.wait()
    for thread in readers:
        thread.join(timeout=5)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()

    exit_code = reaper.exit_code
    proc.returncode = exit_code  # we reaped it: keep Popen from waiting on it again
    usage = reaper.usage
    # A child that finished on its own just as we gave up still counts as finished.
    stopped = stop_reason if stop_reason and exit_code != 0 else None
    return _Child(
        exit_code=exit_code,
        wall_s=reaper.ended - started,
        user_s=None if usage is None else usage.ru_utime,
        system_s=None if usage is None else usage.ru_stime,
        peak_rss_bytes=None if usage is None else usage.ru_maxrss * 1024,  # KiB on Linux
        stderr_tail=tail.buffer.decode("utf-8", "replace"),
        stopped=stopped,
        permanent=tail.permanent and not tail.transient,
    )


class _Reaper:
    """Waits for a child without reaping it (WNOWAIT) so that the pid cannot be reused while
    a kill may still be sent to its group, then reaps it with wait4 for the rusage."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.finished = threading.Event()
        self.exit_code: int | None = None
        self.usage: resource.struct_rusage | None = None
        self.ended = 0.0
        self._lock = threading.Lock()
        self._exited = False

    def start(self) -> None:
        threading.Thread(target=self._wait, name=f"ffleet-wait-{self.pid}", daemon=True).start()

    def signal_group(self, signum: int) -> None:
        with self._lock:
            if not self._exited:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signum)

    def _wait(self) -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        with self._lock:
            self._exited = True
        with contextlib.suppress(ChildProcessError):
            _, status, self.usage = os.wait4(self.pid, 0)
            self.exit_code = os.waitstatus_to_exitcode(status)
        self.ended = time.monotonic()
        self.finished.set()


_MEASURED = (
    "wall_seconds",
    "cpu_user_seconds",
    "cpu_system_seconds",
    "cpu_utilization_cores",
    "cpu_utilization_percent",
    "peak_rss_bytes",
    "frames",
    "fps",
    "speed",
    "output_bytes",
    "bitrate_bps",
    "energy_joules",
    "avg_power_watts",
    "gpu_utilization_percent",
    "gpu_encoder_utilization_percent",
    "gpu_power_watts",
    "gpu_energy_joules",
    "quality_score",
    "ffmpeg_version",
    "cpu_usage",
    "memory_usage",
    "duration",
)
_DESCRIPTIVE = (
    "quality_metric",
    "ffmpeg_argv",
    "quality_ffmpeg_argv",
    "encoder",
    "exit_code",
    "stderr_tail",
    "output_path",
)
_LEGACY = {
    "cpu_usage": "cpu_utilization_percent",
    "memory_usage": "peak_rss_bytes",
    "duration": "wall_seconds",
}


class _Metrics:
    """The metrics dict under construction: every key present, every None explained."""

    def __init__(self) -> None:
        self.values: dict[str, object] = dict.fromkeys(_MEASURED + _DESCRIPTIVE)
        self.reasons: dict[str, str] = {}

    def set(self, key: str, value: object, reason: str | None = None) -> None:
        self.values[key] = value
        if value is None:
            self.reasons.setdefault(key, reason or "not measured")
        else:
            self.reasons.pop(key, None)

    def finish(self, default_reason: str) -> dict[str, object]:
        for key in _MEASURED:
            if self.values[key] is None:
                self.reasons.setdefault(key, default_reason)
        for legacy, source in _LEGACY.items():
            self.set(legacy, self.values[source], self.reasons.get(source))
        return {**self.values, "unavailable": dict(self.reasons)}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _record_child(metrics: _Metrics, child: _Child) -> None:
    wall = child.wall_s
    metrics.set("wall_seconds", wall)
    no_rusage = "wait4 returned no rusage (the child was reaped elsewhere)"
    metrics.set("cpu_user_seconds", child.user_s, no_rusage)
    metrics.set("cpu_system_seconds", child.system_s, no_rusage)
    busy = None if child.user_s is None or child.system_s is None else child.user_s + child.system_s
    cores = _ratio(busy, wall)
    metrics.set("cpu_utilization_cores", cores, no_rusage)
    metrics.set("cpu_utilization_percent", None if cores is None else cores * 100, no_rusage)
    metrics.set("peak_rss_bytes", child.peak_rss_bytes, no_rusage)
    metrics.set("exit_code", child.exit_code)


def _record_progress(
    metrics: _Metrics, spec: JobSpec, parser: _ProgressParser, output: Path | None
) -> None:
    frames = parser.frame
    metrics.set("frames", frames, "FFmpeg reported no frame count")
    wall = metrics.values["wall_seconds"]
    fps = _ratio(frames, wall if isinstance(wall, float) else None)
    metrics.set("fps", fps, "no frames or no wall time")
    metrics.set("speed", parser.speed, "FFmpeg reported speed=N/A")
    size: int | None
    if output is None:
        size, why = parser.total_size, "FFmpeg reported total_size=N/A for the stream"
    elif output.is_file():
        size, why = output.stat().st_size, None
    else:
        size, why = None, "FFmpeg wrote no output file"
    metrics.set("output_bytes", size, why)
    media_s = _ratio(frames, spec.scenario.fps)
    bits = None if size is None else size * 8
    bitrate = _ratio(bits, media_s)
    metrics.set("bitrate_bps", None if bitrate is None else round(bitrate), "no size or no frames")


def _record_energy(metrics: _Metrics, joules: float | None, reason: str | None) -> None:
    metrics.set("energy_joules", joules, reason)
    wall = metrics.values["wall_seconds"]
    power = _ratio(joules, wall if isinstance(wall, float) else None)
    metrics.set("avg_power_watts", power, reason)


def _record_gpu(metrics: _Metrics, sampler: GpuSampler | None, encoder: str) -> None:
    keys = {
        "gpu_utilization_percent": "utilization_percent",
        "gpu_encoder_utilization_percent": "encoder_utilization_percent",
        "gpu_power_watts": "power_watts",
        "gpu_energy_joules": "energy_joules",
    }
    if sampler is None:
        for key in keys:
            metrics.set(key, None, f"not sampled: {encoder} does not run on an NVIDIA GPU")
        return
    reading, reason = sampler.stop()
    for key, attribute in keys.items():
        if reading is None:
            metrics.set(key, None, reason)
        else:
            metrics.set(key, getattr(reading, attribute), reading.unavailable.get(attribute))


def _quality_score(metric: str, stderr: str) -> tuple[float | None, str | None]:
    found = _SCORE_PATTERNS[metric].findall(stderr)
    if not found:
        return None, f"the {metric} pass printed no score"
    score = float(found[-1])
    if score == float("inf"):
        return None, "PSNR is infinite: the encoded frames equal the source"
    return score, None


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
) -> Execution:
    """Run one job to completion, failure, timeout or cancel, and measure it.

    `encoders` are the encoders this node can really use; `timeout_s` bounds the encode and
    the quality pass together; `on_progress` is called from a reader thread.
    """
    job = _Job(spec, ffmpeg, timeout_s, cancel)
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

    def __init__(self, spec: JobSpec, ffmpeg: str, timeout_s: float, cancel: threading.Event):
        self.spec = spec
        self.ffmpeg = ffmpeg
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.cancel = cancel
        self.metrics = _Metrics()
        version, why = _ffmpeg_version(ffmpeg)
        self.metrics.set("ffmpeg_version", version, why)
        if spec.quality == "none":
            self.metrics.set("quality_score", None, "not requested (quality=none)")
        else:
            self.metrics.set("quality_metric", spec.quality)

    def result(self, status: str, error: str | None, retryable: bool, why: str) -> Execution:
        """The Execution; `why` explains every measurement still missing."""
        tail = self.metrics.values["stderr_tail"]
        if isinstance(tail, str):
            self.metrics.set("stderr_tail", _redact(tail, self.spec.output))
        final = self.metrics.finish(why)
        error = None if error is None else _redact(error, self.spec.output)
        return Execution(status, final, analyze(self.spec, final), error, retryable)

    def run(
        self, encoder: str, output: Path | None, on_progress: Callable[[Progress], None] | None
    ) -> Execution:
        """The encode pass, then the quality pass when one is asked for."""
        spec, metrics = self.spec, self.metrics
        argv = build_argv(
            spec, self.ffmpeg, encoder, spec.output if output is None else str(output)
        )
        metrics.set("ffmpeg_argv", [_redact(arg, spec.output) for arg in argv])
        parser = _ProgressParser(spec, on_progress)
        energy = EnergyMeter()
        gpu = GpuSampler() if encoder_engine(encoder) == "nvenc" else None
        energy.start()
        if gpu is not None:
            gpu.start()
        try:
            child = self._spawn(argv, parser.feed)
        finally:
            joules, energy_reason = energy.stop()
            _record_gpu(metrics, gpu, encoder)
        if isinstance(child, str):
            return self.result("failed", child, False, "FFmpeg did not run")
        _record_child(metrics, child)
        _record_progress(metrics, spec, parser, output)
        _record_energy(metrics, joules, energy_reason)
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
            check_argv = _quality_argv(spec, self.ffmpeg, output)
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
                score, why = _quality_score(spec.quality, check.stderr_tail)
                metrics.set("quality_score", score, why)
        return self.result("completed", None, False, "not measured")

    def _spawn(self, argv: list[str], on_line: Callable[[str], None] | None) -> _Child | str:
        """The finished child, or why it could not start."""
        try:
            return _run_child(argv, deadline=self.deadline, cancel=self.cancel, on_line=on_line)
        except OSError as exc:
            return f"cannot start FFmpeg {argv[0]!r}: {exc}"

    def _stopped(self, child: _Child) -> Execution:
        """The result for a child we had to kill: a retry would meet the same bound."""
        self.metrics.set("stderr_tail", child.stderr_tail)
        if child.stopped == "timeout":
            return self.result(
                "timeout", f"timed out after {self.timeout_s:g} s", False, "timed out"
            )
        return self.result("canceled", "canceled", False, "canceled")
