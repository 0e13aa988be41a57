"""The shape of a result's `metrics` and `analyzer_output`, for the OpenAPI document.

The wire carries both as free JSON objects (v1.0 agents send what they like), so these
structs are never used to decode a submission; they describe what an ffleet agent sends, one
described field per key, and a test converts real results into them so the description cannot
drift from what the agent does (agent/metrics.py and agent/analyzer.py say how each is made).
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta, Struct, field


def _d(text: str) -> Any:
    return Meta(description=text)


class RunFigures(Struct, kw_only=True):
    """One measured run of a job with `repeats` (the warm-up runs are not kept)."""

    wall_seconds: Annotated[float | None, _d("s, FFmpeg start to exit")] = None
    cpu_seconds: Annotated[float | None, _d("s of user + system CPU of FFmpeg")] = None
    fps: Annotated[float | None, _d("frames / wall_seconds")] = None
    speed: Annotated[float | None, _d("FFmpeg's final speed=")] = None
    output_bytes: Annotated[int | None, _d("bytes written")] = None
    bitrate_bps: Annotated[int | None, _d("bit/s of the output")] = None
    peak_rss_bytes: Annotated[int | None, _d("peak resident memory")] = None
    energy_joules: Annotated[float | None, _d("CPU package energy (RAPL)")] = None
    node_busy_cores: Annotated[float | None, _d("busy cores of the whole node")] = None
    cpu_time_share: Annotated[float | None, _d("the job's CPU / all CPU spent meanwhile")] = None
    load_average_start: Annotated[list[float] | None, _d("1, 5, 15 min load")] = None
    load_average_end: Annotated[list[float] | None, _d("1, 5, 15 min load")] = None
    disturbed: Annotated[bool | None, _d("saturated node, job got < half the CPU")] = None


class Spread(Struct, kw_only=True):
    """One metric over the measured runs."""

    n: int
    mean: float
    stdev: Annotated[float, _d("sample standard deviation (0 for one run)")]
    cv: Annotated[float | None, _d("coefficient of variation: stdev / mean")]
    min: float
    median: float
    max: float


class ResultMetrics(Struct, kw_only=True):
    """`metrics` of a result from an ffleet agent. A figure that could not be measured is
    null and `unavailable[key]` says why. With `repeats` > 1 the top-level figures are the
    last measured run's; `runs` and `summary` hold all of them."""

    wall_seconds: Annotated[float | None, _d("s, monotonic, FFmpeg start to exit")] = None
    cpu_user_seconds: Annotated[float | None, _d("s of user CPU of FFmpeg (rusage)")] = None
    cpu_system_seconds: Annotated[float | None, _d("s of system CPU of FFmpeg")] = None
    cpu_seconds: Annotated[float | None, _d("user + system")] = None
    cpu_utilization_cores: Annotated[float | None, _d("cpu_seconds / wall_seconds")] = None
    cpu_utilization_percent: Annotated[float | None, _d("the same, % of one core")] = None
    peak_rss_bytes: Annotated[int | None, _d("peak resident memory")] = None
    frames: Annotated[int | None, _d("frames encoded")] = None
    fps: Annotated[float | None, _d("frames / wall_seconds")] = None
    speed: Annotated[float | None, _d("media s per wall s (FFmpeg's speed=)")] = None
    output_bytes: Annotated[int | None, _d("bytes of the output (sent, for RTMP)")] = None
    bitrate_bps: Annotated[int | None, _d("output bits / media seconds")] = None
    energy_joules: Annotated[float | None, _d("J of the CPU package(s), RAPL")] = None
    avg_power_watts: Annotated[float | None, _d("energy_joules / wall_seconds")] = None
    gpu_utilization_percent: Annotated[float | None, _d("NVML, NVENC encodes")] = None
    gpu_encoder_utilization_percent: Annotated[float | None, _d("NVML encoder %")] = None
    gpu_power_watts: Annotated[float | None, _d("NVML board power")] = None
    gpu_energy_joules: Annotated[float | None, _d("NVML energy counter difference")] = None
    quality_metric: Annotated[str | None, _d("psnr, ssim, vmaf or null")] = None
    quality_score: Annotated[
        float | None, _d("PSNR dB, SSIM 0-1 or VMAF 0-100; frames paired by index")
    ] = None
    ffmpeg_version: Annotated[str | None, _d("the `ffmpeg -version` word")] = None
    ffmpeg_sha256: Annotated[str | None, _d("SHA-256 of the FFmpeg binary that ran")] = None
    ffmpeg_configuration: Annotated[str | None, _d("its `configuration:` line")] = None
    ffmpeg_argv: Annotated[list[str] | None, _d("the encode command")] = None
    quality_ffmpeg_argv: Annotated[list[str] | None, _d("the quality-pass command")] = None
    encoder: Annotated[str | None, _d("the FFmpeg encoder, e.g. libx264")] = None
    exit_code: Annotated[int | None, _d("FFmpeg's exit code; negative: signal")] = None
    stderr_tail: Annotated[str | None, _d("last 4 KiB of stderr of a failed run")] = None
    output_path: Annotated[str | None, _d("the kept file for output=file")] = None
    input: Annotated[
        dict[str, Any] | None,
        _d(
            "what was encoded: {kind: generated, source, size, rate, duration_s, "
            "pixel_format} or {kind: file, path, bytes, sha256}"
        ),
    ] = None
    load_average_start: Annotated[list[float] | None, _d("node load before the run")] = None
    load_average_end: Annotated[list[float] | None, _d("node load after the run")] = None
    cpu_governor_start: Annotated[str | None, _d("cpu0 scaling governor before")] = None
    cpu_governor_end: Annotated[str | None, _d("cpu0 scaling governor after")] = None
    node_busy_cores: Annotated[float | None, _d("busy cores of the node during the run")] = None
    cpu_time_share: Annotated[float | None, _d("job CPU / all CPU spent meanwhile")] = None
    disturbed: Annotated[bool | None, _d("any run on a saturated node with < half")] = None
    master_as_worker: Annotated[bool | None, _d("the master runs on this node too")] = None
    warmup_runs: Annotated[int | None, _d("runs discarded before the measured ones")] = None
    runs: Annotated[list[RunFigures] | None, _d("every measured run")] = None
    summary: Annotated[dict[str, Spread] | None, _d("per metric over the runs")] = None
    noisy: Annotated[bool | None, _d("a timing CV above noise_threshold")] = None
    noisy_metrics: Annotated[dict[str, float] | None, _d("those metrics and their CV")] = None
    stall_timeout_s: Annotated[float | None, _d("progress could stand still this long")] = None
    cpu_affinity: Annotated[list[int] | None, _d("CPUs FFmpeg was pinned to")] = None
    nice: Annotated[int | None, _d("FFmpeg's nice level")] = None
    cpu_usage: Annotated[float | None, _d("legacy: cpu_utilization_percent")] = None
    memory_usage: Annotated[int | None, _d("legacy: peak_rss_bytes")] = None
    duration: Annotated[float | None, _d("legacy: wall_seconds")] = None
    unavailable: Annotated[dict[str, str] | None, _d("why each null figure is null")] = None


class BitrateCheck(Struct, kw_only=True):
    requested_bps: int
    measured_bps: int
    deviation: Annotated[float, _d("measured / requested - 1")]
    missed: Annotated[bool, _d("|deviation| above the tolerance (20%)")]


class AnalyzerOutput(Struct, kw_only=True):
    """`analyzer_output` of a result from an ffleet agent."""

    flags: Annotated[list[str], _d("disturbed, noisy, bitrate_missed, master_as_worker")] = field(
        default_factory=list
    )
    bitrate: Annotated[BitrateCheck | None, _d("null when no bitrate was requested")] = None
    scenario: Annotated[dict[str, Any] | None, _d("name, resolution, fps, codec, tags")] = None
    efficiency: Annotated[
        dict[str, float | None] | None,
        _d("realtime_factor, frames_per_cpu_second, frames_per_joule, quality_per_kbps"),
    ] = None
    recommendation: Annotated[str | None, _d("advice; none from a disturbed run")] = None
