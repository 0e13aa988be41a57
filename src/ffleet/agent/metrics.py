"""Assemble a result's `metrics` dict from what the child, `-progress` and the meters measured.

Every result's `metrics` holds all the keys below. A measurement that could not be made is
None and `metrics["unavailable"][key]` says why (also for ones not asked for, e.g. quality).

=================================  =========================================================
wall_seconds                       s, monotonic, FFmpeg start to exit (encode pass only)
cpu_user_seconds                   s of user CPU of the FFmpeg child (rusage)
cpu_system_seconds                 s of system CPU of the FFmpeg child (rusage)
cpu_seconds                        cpu_user_seconds + cpu_system_seconds
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
ffmpeg_sha256                      SHA-256 of the FFmpeg binary that ran (hex)
ffmpeg_configuration               the `configuration:` line of `ffmpeg -version`
input                              what was encoded: {kind: generated, source, size, rate,
                                   duration_s, pixel_format} or {kind: file, path, bytes,
                                   sha256}
load_average_start / _end          the node's 1, 5, 15 min load averages around the run
cpu_governor_start / _end          cpu0's cpufreq scaling governor around the run
node_busy_cores                    busy cores of the whole node during the run (/proc/stat)
cpu_time_share                     the job's CPU seconds / all CPU seconds spent meanwhile
disturbed                          True when the node was saturated and the job got under
                                   half of its CPU time (see conditions.py), in any run
master_as_worker                   True when the master runs on this node too
warmup_runs                        runs discarded before the measured ones
runs                               every measured run's figures (repeats.RUN_FIGURES)
summary                            per metric over the runs: n, mean, stdev, cv, min,
                                   median, max
noisy / noisy_metrics              CV of a timing metric above noise_threshold / those CVs
stall_timeout_s                    s the progress counters could stand still before a kill
cpu_affinity / nice                CPUs FFmpeg was pinned to (None: not pinned) / its nice
ffmpeg_argv                        the encode argv (an RTMP stream key is redacted)
quality_ffmpeg_argv                the quality-pass argv, or None
encoder                            the FFmpeg encoder chosen, e.g. `libx264`
exit_code                          FFmpeg's exit code; negative: killed by that signal
stderr_tail                        last 4 KiB of FFmpeg's stderr when the job did not complete
output_path                        the kept file for `output=file`, else None
cpu_usage / memory_usage           legacy: cpu_utilization_percent, peak_rss_bytes (bytes)
duration                           legacy: wall_seconds (s)
=================================  =========================================================

With `repeats` > 1 the top-level figures are the last measured run's; `runs` and `summary`
hold all of them.
"""

from __future__ import annotations

import re
from pathlib import Path

from ffleet.agent.child_process import ChildExit
from ffleet.agent.meters import GpuSampler
from ffleet.agent.progress import ProgressParser
from ffleet.scenarios import JobSpec

_SCORE_PATTERNS = {
    "psnr": re.compile(r"PSNR .*average:(\S+)"),
    "ssim": re.compile(r"SSIM .*All:(\S+)"),
    "vmaf": re.compile(r"VMAF score: (\S+)"),
}

_MEASURED = (
    "wall_seconds",
    "cpu_user_seconds",
    "cpu_system_seconds",
    "cpu_seconds",
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
    "ffmpeg_sha256",
    "ffmpeg_configuration",
    "load_average_start",
    "load_average_end",
    "cpu_governor_start",
    "cpu_governor_end",
    "node_busy_cores",
    "cpu_time_share",
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
    "input",
    "disturbed",
    "master_as_worker",
    "warmup_runs",
    "runs",
    "summary",
    "noisy",
    "noisy_metrics",
    "stall_timeout_s",
    "cpu_affinity",
    "nice",
)
_LEGACY = {
    "cpu_usage": "cpu_utilization_percent",
    "memory_usage": "peak_rss_bytes",
    "duration": "wall_seconds",
}


class Metrics:
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


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is not
    positive: a figure that cannot be computed is missing, never estimated."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def record_child(metrics: Metrics, child: ChildExit) -> None:
    """Wall time, CPU time and memory of the FFmpeg child itself (its rusage, not ours)."""
    wall = child.wall_s
    metrics.set("wall_seconds", wall)
    no_rusage = "wait4 returned no rusage (the child was reaped elsewhere)"
    metrics.set("cpu_user_seconds", child.user_s, no_rusage)
    metrics.set("cpu_system_seconds", child.system_s, no_rusage)
    busy = None if child.user_s is None or child.system_s is None else child.user_s + child.system_s
    metrics.set("cpu_seconds", busy, no_rusage)
    cores = ratio(busy, wall)
    metrics.set("cpu_utilization_cores", cores, no_rusage)
    metrics.set("cpu_utilization_percent", None if cores is None else cores * 100, no_rusage)
    metrics.set("peak_rss_bytes", child.peak_rss_bytes, no_rusage)
    metrics.set("exit_code", child.exit_code)


def record_progress(
    metrics: Metrics, spec: JobSpec, parser: ProgressParser, output: Path | None
) -> None:
    """Frames and speed from FFmpeg's last `-progress` block; the size of an encoded file is
    read from disk, a stream's is FFmpeg's `total_size` (the bytes it sent)."""
    frames = parser.frame
    metrics.set("frames", frames, "FFmpeg reported no frame count")
    wall = metrics.values["wall_seconds"]
    fps = ratio(frames, wall if isinstance(wall, float) else None)
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
    media_s = ratio(frames, spec.scenario.fps)
    bits = None if size is None else size * 8
    bitrate = ratio(bits, media_s)
    metrics.set("bitrate_bps", None if bitrate is None else round(bitrate), "no size or no frames")


def record_energy(metrics: Metrics, joules: float | None, reason: str | None) -> None:
    """The CPU package energy and the average power over the encode's wall time."""
    metrics.set("energy_joules", joules, reason)
    wall = metrics.values["wall_seconds"]
    power = ratio(joules, wall if isinstance(wall, float) else None)
    metrics.set("avg_power_watts", power, reason)


def record_gpu(metrics: Metrics, sampler: GpuSampler | None, encoder: str) -> None:
    """NVML figures for an NVENC encode; for any other encoder, why there are none."""
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


def quality_score(metric: str, stderr: str) -> tuple[float | None, str | None]:
    """The score a quality pass printed on stderr, or None and why."""
    found = _SCORE_PATTERNS[metric].findall(stderr)
    if not found:
        return None, f"the {metric} pass printed no score"
    score = float(found[-1])
    if score == float("inf"):
        return None, "PSNR is infinite: the encoded frames equal the source"
    return score, None
