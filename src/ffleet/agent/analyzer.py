"""Efficiency figures and a recommendation, derived only from measured metrics.

Figures (None when an input is missing, never estimated):

* realtime_factor: encoded media seconds (frames / scenario fps) / wall_seconds
* frames_per_cpu_second: frames / (cpu_user_seconds + cpu_system_seconds)
* frames_per_joule: frames / energy_joules (needs RAPL)
* quality_per_kbps: quality_score / (bitrate_bps / 1000) (needs a quality pass)

Flags (`flags`, a list, also explained in the recommendation):

* `disturbed`: the node was saturated and the job got under half its CPU time (see
  conditions.py): the recommendation says so and gives no advice from the run;
* `noisy`: repeated runs spread more than the job's `noise_threshold` (CV);
* `bitrate_missed`: a requested bitrate missed by more than BITRATE_TOLERANCE (`bitrate`
  holds requested, measured and the relative deviation);
* `master_as_worker`: the master shares this node's CPU.

Recommendation rules, in order; the sentences of every rule that applies are joined:

0. disturbed (and complete: rule 1 speaks for a failed run) -> say so, name the CPU share,
   and recommend nothing else;
1. incomplete: exit_code is not 0 or no frame was encoded -> say the figures describe a
   partial run and recommend nothing else;
2. realtime_factor < 1 -> cannot sustain real time; lower the resolution or use a faster
   preset or a hardware encoder. A stream (RTMP output) is paced to real time by `-re`, so
   there FFmpeg's `speed` < 0.95 is the test instead and rule 3 does not apply;
3. 1 <= realtime_factor < 1.2 -> real time with little headroom;
4. CPU encoder busy on >= 90% of the node's cores -> CPU-bound, run one such job at a time;
5. CPU encoder behind real time (rule 2) using < 50% of the cores -> the encoder does not
   scale to this node; run jobs in parallel instead;
6. quality below the floor (PSNR 35 dB, SSIM 0.95, VMAF 80) -> raise the bitrate or use a
   slower preset; at or above the ceiling (PSNR 45 dB, SSIM 0.99, VMAF 95) -> the bitrate
   could likely be lowered;
7. none of 2-6 applies -> the node suits this workload with headroom.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ffleet.agent.metrics import ratio
from ffleet.encoders import encoder_engine
from ffleet.scenarios import JobSpec

HEADROOM_FACTOR = 1.2
STREAM_SPEED_FLOOR = 0.95
CPU_BOUND_SHARE = 0.9
POOR_SCALING_SHARE = 0.5
BITRATE_TOLERANCE = 0.2  # rate control on a short clip lands within this of the request
# (floor, ceiling, unit) per quality metric.
QUALITY_BOUNDS: dict[str, tuple[float, float, str]] = {
    "psnr": (35.0, 45.0, " dB"),
    "ssim": (0.95, 0.99, ""),
    "vmaf": (80.0, 95.0, ""),
}


def _number(metrics: Mapping[str, object], key: str) -> float | None:
    value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def analyze(
    spec: JobSpec, metrics: Mapping[str, object], *, cpu_count: int | None = None
) -> dict[str, object]:
    """Scenario summary, efficiency figures and a recommendation for one run.

    `cpu_count` is the node's logical CPU count (default: this machine's).
    """
    scenario = spec.scenario
    frames = _number(metrics, "frames")
    wall = _number(metrics, "wall_seconds")
    user, system = _number(metrics, "cpu_user_seconds"), _number(metrics, "cpu_system_seconds")
    cpu = None if user is None or system is None else user + system
    bitrate = _number(metrics, "bitrate_bps")
    realtime = ratio(ratio(frames, scenario.fps), wall)
    efficiency = {
        "realtime_factor": realtime,
        "frames_per_cpu_second": ratio(frames, cpu),
        "frames_per_joule": ratio(frames, _number(metrics, "energy_joules")),
        "quality_per_kbps": ratio(
            _number(metrics, "quality_score"), None if bitrate is None else bitrate / 1000
        ),
    }
    bitrate_check = _bitrate_check(spec, bitrate)
    flags = [
        flag
        for flag, raised in (
            ("disturbed", metrics.get("disturbed") is True),
            ("noisy", metrics.get("noisy") is True),
            ("bitrate_missed", bool(bitrate_check and bitrate_check["missed"])),
            ("master_as_worker", metrics.get("master_as_worker") is True),
        )
        if raised
    ]
    if "disturbed" in flags and metrics.get("exit_code") == 0:
        recommendation = _disturbed(metrics)
    else:
        recommendation = _recommend(
            spec, metrics, realtime, ratio(cpu, wall), cpu_count or os.cpu_count() or 1
        )
    notes = _notes(metrics, bitrate_check, flags)
    return {
        "flags": flags,
        "bitrate": bitrate_check,
        "scenario": {
            "name": scenario.name,
            "resolution": f"{scenario.width}x{scenario.height}",
            "width": scenario.width,
            "height": scenario.height,
            "fps": scenario.fps,
            "codec": scenario.codec,
            "tags": list(scenario.tags),
        },
        "efficiency": efficiency,
        "recommendation": " ".join([recommendation, *notes]),
    }


def _bitrate_check(spec: JobSpec, measured: float | None) -> dict[str, object] | None:
    """Requested vs measured bitrate; None when no bitrate was requested or none measured."""
    if spec.bitrate_bps is None or measured is None:
        return None
    deviation = measured / spec.bitrate_bps - 1
    return {
        "requested_bps": spec.bitrate_bps,
        "measured_bps": round(measured),
        "deviation": deviation,
        "missed": abs(deviation) > BITRATE_TOLERANCE,
    }


def _disturbed(metrics: Mapping[str, object]) -> str:
    share = _number(metrics, "cpu_time_share")
    busy = _number(metrics, "node_busy_cores")
    got = f"{share:.0%}" if share is not None else "a small share"
    cores = f" while {busy:.1f} cores were busy" if busy is not None else ""
    return (
        f"Disturbed run: this job got {got} of the CPU time spent on the node{cores}, so its "
        "wall time measures the other load, not the encoder; no advice is given from it. "
        "Run it again on a quiet node."
    )


def _notes(
    metrics: Mapping[str, object], bitrate_check: Mapping[str, object] | None, flags: list[str]
) -> list[str]:
    """Sentences for the flags that qualify a figure without changing the advice."""
    notes: list[str] = []
    if bitrate_check is not None and "bitrate_missed" in flags:
        requested, measured = bitrate_check["requested_bps"], bitrate_check["measured_bps"]
        assert isinstance(requested, int) and isinstance(measured, int)
        deviation = bitrate_check["deviation"]
        assert isinstance(deviation, float)
        notes.append(
            f"The encoder missed the requested bitrate: {measured / 1000:.0f} kbps for "
            f"{requested / 1000:.0f} kbps ({deviation:+.0%}); compare quality at the measured "
            "rate, not the requested one."
        )
    noisy = metrics.get("noisy_metrics")
    if "noisy" in flags and isinstance(noisy, dict):
        spread = ", ".join(f"{key} CV {cv:.1%}" for key, cv in noisy.items())
        notes.append(f"Noisy: the repeated runs spread widely ({spread}).")
    if "master_as_worker" in flags:
        notes.append("The master runs on this node too and shares its CPU.")
    return notes


def _recommend(
    spec: JobSpec,
    metrics: Mapping[str, object],
    realtime: float | None,
    cores_busy: float | None,
    cpu_count: int,
) -> str:
    scenario = spec.scenario
    frames = _number(metrics, "frames")
    if metrics.get("exit_code") != 0 or not frames or realtime is None:
        return (
            "The run did not complete, so these figures describe a partial run "
            "and no recommendation is made."
        )
    encoder = str(metrics.get("encoder") or "the encoder")
    on_cpu = encoder_engine(encoder) == "cpu"
    where = f"{scenario.width}x{scenario.height}@{scenario.fps} {scenario.codec} with {encoder}"
    streaming = spec.output not in ("null", "file")
    pace = _number(metrics, "speed") if streaming else realtime
    behind = pace is not None and pace < (STREAM_SPEED_FLOOR if streaming else 1)
    advice: list[str] = []
    if behind:
        faster = "a faster preset or a hardware encoder" if on_cpu else "a faster preset"
        advice.append(
            f"Cannot sustain real time at {where} on this node ({pace:.2f}x); "
            f"lower the resolution or use {faster}."
        )
    elif not streaming and realtime < HEADROOM_FACTOR:
        advice.append(
            f"Sustains real time at {where} with little headroom ({realtime:.2f}x); "
            "other load on this node may make it fall behind."
        )
    if on_cpu and cores_busy is not None:
        if cores_busy >= CPU_BOUND_SHARE * cpu_count:
            advice.append(
                f"CPU-bound: {cores_busy:.1f} of {cpu_count} cores busy on average; "
                "run one such job at a time on this node."
            )
        elif behind and cores_busy < POOR_SCALING_SHARE * cpu_count:
            advice.append(
                f"Only {cores_busy:.1f} of {cpu_count} cores were busy: {encoder} does not "
                "scale to this node, so run several jobs in parallel instead."
            )
    advice += _quality_advice(metrics)
    if not advice and streaming:
        advice.append(
            f"Keeps up with the live stream at {where}; the stream is paced to real time, "
            "so its headroom shows in the CPU utilisation rather than the speed."
        )
    elif not advice:
        advice.append(
            f"Runs at {realtime:.2f}x real time at {where} with headroom; "
            "this node suits this workload."
        )
    return " ".join(advice)


def _quality_advice(metrics: Mapping[str, object]) -> list[str]:
    metric = metrics.get("quality_metric")
    score = _number(metrics, "quality_score")
    if not isinstance(metric, str) or metric not in QUALITY_BOUNDS or score is None:
        return []
    floor, ceiling, unit = QUALITY_BOUNDS[metric]
    name = metric.upper()
    if score < floor:
        return [
            f"Quality is low ({name} {score:g}{unit} < {floor:g}{unit}); "
            "raise the bitrate or use a slower preset."
        ]
    if score >= ceiling:
        return [
            f"Quality is near transparent ({name} {score:g}{unit} >= {ceiling:g}{unit}); "
            "the bitrate could likely be lowered."
        ]
    return []
