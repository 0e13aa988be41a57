"""Scenario grammar and job-parameter validation, shared by the master and the agents.

The master calls `build_job_spec` at submission so that a job no agent could run is refused
with HTTP 400 instead of failing later on a node; the agent calls it again before running.

Scenario grammar: the name splits on `-` into tokens, in any order, case-insensitively.

* resolution: `4K`, `2160p`, `1440p`, `1080p`, `720p`, `480p`, `360p` with an optional fps
  suffix (`4K60`, `1080p30`), or `WxH` with an optional `@fps` (`320x240@25`); default 720p;
* frame rate: the suffix above, or a separate `NNfps` token; default 30;
* codec: `h264`, `h265`/`hevc`, `vp9`, `av1`; default h264 (h265 is stored as `hevc`);
* anything else is a tag, kept lower-cased (`test-1080p` and `4K60-h264` both parse),
  unless it looks like one of the above (`1080`, `h246`, `x265`): that is refused with the
  nearest valid token (see `lookalikes.py`), so a typo never runs a different benchmark;
  no part may hold spaces, control characters or slashes (names end up in paths and URLs).

Engines, encoders and their presets come from `ffleet.encoders`. With `engine=auto` the preset
must suit at least one encoder the codec has, and the encoder is then chosen among those that
accept it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from ffleet import lookalikes
from ffleet.durations import parse_duration
from ffleet.encoders import ENGINES, X26X_PRESETS, accepts_preset, candidate_encoders, presets_of
from ffleet.models import ScenarioReading


class ScenarioError(ValueError):
    """A scenario or parameter no node could run; the message is meant for the user."""


@dataclass(frozen=True)
class Scenario:
    name: str
    width: int
    height: int
    fps: int
    codec: str
    tags: tuple[str, ...]


DEFAULT_NOISE_THRESHOLD = 0.05


@dataclass(frozen=True)
class JobSpec:
    """A validated job. `preset=None` means the chosen encoder's fast default (see executor);
    `bitrate_bps=None` means the encoder's constant-quality default."""

    scenario: Scenario
    duration_s: float
    bitrate_bps: int | None
    preset: str | None
    engine: str
    input: str | None
    output: str
    quality: str
    warmup: int = 0  # runs discarded before the measured ones, on the same node
    repeats: int = 1  # measured runs in the same attempt
    noise_threshold: float = DEFAULT_NOISE_THRESHOLD  # CV above which a result is `noisy`
    cpu_affinity: tuple[int, ...] | None = None  # CPUs FFmpeg may run on (sched_setaffinity)
    nice: int | None = None  # FFmpeg's nice level
    input_sha256: str | None = None  # the input file's pinned hash

    @property
    def runs(self) -> int:
        return self.warmup + self.repeats


NAMED_RESOLUTIONS: dict[str, tuple[int, int]] = {
    "4k": (3840, 2160),
    "2160p": (3840, 2160),
    "1440p": (2560, 1440),
    "1080p": (1920, 1080),
    "720p": (1280, 720),
    "480p": (854, 480),
    "360p": (640, 360),
}
CODECS: dict[str, str] = {
    "h264": "h264",
    "h265": "hevc",
    "hevc": "hevc",
    "vp9": "vp9",
    "av1": "av1",
}
_NAMED_TOKENS = tuple(NAMED_RESOLUTIONS)
_CODEC_TOKENS = ("h264", "h265", "hevc", "vp9", "av1")
QUALITY_METRICS = ("none", "psnr", "ssim", "vmaf")
PARAMETERS = (
    "duration",
    "bitrate",
    "preset",
    "engine",
    "input",
    "output",
    "quality",
    "warmup",
    "repeats",
    "noise_threshold",
    "cpu_affinity",
    "nice",
    "input_sha256",
)
MAX_RUNS = 100
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

DEFAULT_RESOLUTION = (1280, 720)
DEFAULT_FPS = 30
DEFAULT_CODEC = "h264"
DEFAULT_DURATION_S = 5.0
MIN_DURATION_S = 0.1
MAX_DURATION_S = 3600.0
MIN_BITRATE_BPS = 10_000
MAX_BITRATE_BPS = 1_000_000_000
MIN_SIDE, MAX_SIDE = 16, 8192
MAX_FPS = 240

_NAMED_RE = re.compile(r"^(4k|2160p|1440p|1080p|720p|480p|360p)(\d+)?$")
_SIZE_RE = re.compile(r"^(\d+)x(\d+)(?:@(\d+))?$")
_FPS_RE = re.compile(r"^(\d+)fps$")
_BITRATE_RE = re.compile(r"^(\d{1,10}(?:\.\d{1,6})?)([kmg]?)$")  # digits bounded: no inf
_BITRATE_UNITS = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def _fps(text: str, token: str) -> int:
    fps = int(text)
    if not 1 <= fps <= MAX_FPS:
        raise ScenarioError(f"Frame rate in {token!r} must be between 1 and {MAX_FPS}.")
    return fps


@functools.lru_cache(maxsize=4096)
def parse_scenario(name: str) -> Scenario:
    """Parse a scenario name such as `1080p60-hevc` or `test-320x240@25-vp9`.

    Cached: a benchmark matrix submits the same few names thousands of times."""
    stripped = name.strip() if isinstance(name, str) else ""
    if not stripped:
        raise ScenarioError("The scenario is empty; give one such as '1080p30-h264'.")
    if len(stripped) > 200:
        raise ScenarioError("The scenario name is longer than 200 characters.")
    size: tuple[int, int] | None = None
    fps: int | None = None
    codec: str | None = None
    tags: list[str] = []
    for token in stripped.lower().split("-"):
        if not token:
            raise ScenarioError(f"Scenario {stripped!r} has an empty part (two '-' in a row?).")
        if not token.isprintable() or any(c.isspace() or c in "/\\" for c in token):
            raise ScenarioError(
                f"Scenario part {token!r} must not contain spaces, control characters or slashes."
            )
        token_size: tuple[int, int] | None = None
        token_fps: int | None = None
        if named := _NAMED_RE.match(token):
            token_size = NAMED_RESOLUTIONS[named.group(1)]
            token_fps = _fps(named.group(2), token) if named.group(2) else None
        elif sized := _SIZE_RE.match(token):
            width, height = int(sized.group(1)), int(sized.group(2))
            if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
                raise ScenarioError(
                    f"Resolution {token!r} must be between {MIN_SIDE} and {MAX_SIDE} pixels a side."
                )
            if width % 2 or height % 2:
                raise ScenarioError(
                    f"Resolution {token!r} must have even width and height (4:2:0 video)."
                )
            token_size = (width, height)
            token_fps = _fps(sized.group(3), token) if sized.group(3) else None
        elif rate := _FPS_RE.match(token):
            token_fps = _fps(rate.group(1), token)
        elif token in CODECS:
            if codec is not None:
                raise ScenarioError(f"Scenario {stripped!r} names two codecs; give one.")
            codec = CODECS[token]
            continue
        elif (meant := lookalikes.suggestion(token, _NAMED_TOKENS, _CODEC_TOKENS)) is not None:
            raise ScenarioError(
                f"Scenario part {token!r} is not a resolution, frame rate or codec ffleet knows; "
                f"did you mean {meant!r}? (Free-form tags must not look like one.)"
            )
        else:
            tags.append(token)
            continue
        if token_size is not None:
            if size is not None:
                raise ScenarioError(f"Scenario {stripped!r} names two resolutions; give one.")
            size = token_size
        if token_fps is not None:
            if fps is not None:
                raise ScenarioError(f"Scenario {stripped!r} names two frame rates; give one.")
            fps = token_fps
    width, height = size or DEFAULT_RESOLUTION
    return Scenario(
        name=stripped,
        width=width,
        height=height,
        fps=fps or DEFAULT_FPS,
        codec=codec or DEFAULT_CODEC,
        tags=tuple(tags),
    )


def scenario_reading(name: str) -> ScenarioReading | None:
    """How `name` parses, for the job's `understood` field; None for a name stored by an
    older version that this grammar now refuses (the job itself is left as it is)."""
    try:
        parsed = parse_scenario(name)
    except ScenarioError:
        return None
    return ScenarioReading(
        resolution=f"{parsed.width}x{parsed.height}",
        fps=parsed.fps,
        codec=parsed.codec,
        tags=list(parsed.tags),
    )


MAX_PARAMETER_CHARS = 1024  # a path or URL; longer text is refused unechoed


def _text(key: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ScenarioError(f"Parameter {key!r} must be a string or a number.")
    text = str(value).strip()
    if len(text) > MAX_PARAMETER_CHARS or not text.isprintable():
        raise ScenarioError(
            f"Parameter {key!r} must be printable text of at most {MAX_PARAMETER_CHARS} characters."
        )
    return text


def _duration(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        try:
            seconds = parse_duration(_text("duration", value))
        except ValueError as exc:
            raise ScenarioError(f"Parameter 'duration': {exc}.") from None
    if not MIN_DURATION_S <= seconds <= MAX_DURATION_S:  # also rejects NaN
        raise ScenarioError(
            f"Parameter 'duration' must be between {MIN_DURATION_S:g} and "
            f"{MAX_DURATION_S:g} seconds."
        )
    return seconds


def _bitrate(value: object) -> int:
    text = _text("bitrate", value).lower()
    match = _BITRATE_RE.match(text)
    if match is None:
        raise ScenarioError(
            f"Parameter 'bitrate' {text!r} is not a bitrate; use e.g. 5000k, 15M or 800000 (bit/s)."
        )
    bps = round(float(match.group(1)) * _BITRATE_UNITS[match.group(2)])
    if not MIN_BITRATE_BPS <= bps <= MAX_BITRATE_BPS:
        raise ScenarioError("Parameter 'bitrate' must be between 10k and 1G bit/s.")
    return bps


def _count(key: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ScenarioError(f"Parameter {key!r} must be an integer from {low} to {high}.")
    return value


def _noise_threshold(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ScenarioError(
            "Parameter 'noise_threshold' must be a fraction above 0 and at most 1 (0.05 = 5%)."
        )
    return float(value)


def _cpu_affinity(value: object) -> tuple[int, ...]:
    """A list of CPU numbers, or `taskset -c` text such as "0-3,6"."""
    try:
        if isinstance(value, list):
            cpus = {int(cpu) for cpu in value if not isinstance(cpu, bool)}
            if len(cpus) != len(value):
                raise ValueError
        else:
            cpus = set()
            for part in _text("cpu_affinity", value).split(","):
                low, _, high = part.partition("-")
                cpus.update(range(int(low), int(high or low) + 1))
    except (ValueError, TypeError):
        raise ScenarioError(
            "Parameter 'cpu_affinity' must list CPU numbers: [0, 1] or \"0-3,6\"."
        ) from None
    if not cpus or min(cpus) < 0 or max(cpus) > 4095:
        raise ScenarioError("Parameter 'cpu_affinity' must name CPUs between 0 and 4095.")
    return tuple(sorted(cpus))


def _sha256(value: object) -> str:
    text = _text("input_sha256", value).lower()
    if not _SHA256_RE.match(text):
        raise ScenarioError("Parameter 'input_sha256' must be 64 hexadecimal digits.")
    return text


def _choice(key: str, value: object, choices: Sequence[str]) -> str:
    text = _text(key, value).lower()
    if text not in choices:
        raise ScenarioError(f"Parameter {key!r} must be one of {', '.join(choices)}; got {text!r}.")
    return text


def _output(value: object) -> str:
    text = _text("output", value)
    if text.lower() in ("null", "file"):
        return text.lower()
    parts = urlsplit(text)
    if parts.scheme.lower() in ("rtmp", "rtmps") and parts.netloc and text.isprintable():
        if " " in text:
            raise ScenarioError("Parameter 'output': the RTMP URL must not contain spaces.")
        return text
    raise ScenarioError(
        "Parameter 'output' must be 'null' (encode only), 'file' (keep the encoded file) "
        f"or an rtmp:// or rtmps:// URL; got {text!r}."
    )


def _preset(value: object, codec: str, engine: str) -> str:
    preset = _text("preset", value).lower()
    encoders = candidate_encoders(codec, engine)
    if any(accepts_preset(encoder, preset) for encoder in encoders):
        return preset
    valid = sorted({p for e in encoders for p in presets_of(e)}, key=_preset_order)
    if not valid:
        raise ScenarioError(f"Engine {engine!r} takes no preset; leave 'preset' out.")
    raise ScenarioError(
        f"Preset {preset!r} does not suit {codec} with engine {engine!r}; "
        f"use one of: {', '.join(valid)}."
    )


def _preset_order(preset: str) -> tuple[int, int, str]:
    """Sort presets readably: numbers numerically, x26x names fastest first, then the rest."""
    if preset.isdigit():
        return (0, int(preset), preset)
    if preset in X26X_PRESETS:
        return (1, X26X_PRESETS.index(preset), preset)
    return (2, 0, preset)


def build_job_spec(scenario: str, parameters: Mapping[str, object] | None) -> JobSpec:
    """Validate a scenario and its parameters into a `JobSpec`; raises `ScenarioError`."""
    parsed = parse_scenario(scenario)
    params = dict(parameters or {})
    unknown = sorted(str(key) for key in params if key not in PARAMETERS)
    if unknown:
        raise ScenarioError(
            f"Unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(PARAMETERS)}."
        )
    given = {key: value for key, value in params.items() if value is not None}
    engine = _choice("engine", given["engine"], ENGINES) if "engine" in given else "auto"
    if not candidate_encoders(parsed.codec, engine):
        raise ScenarioError(f"There is no {engine} encoder for {parsed.codec}; use another engine.")
    input_path = None
    if "input" in given:
        input_path = _text("input", given["input"])
        if not input_path:
            raise ScenarioError("Parameter 'input' must be a non-empty file path.")
    output = _output(given["output"]) if "output" in given else "null"
    quality = (
        _choice("quality", given["quality"], QUALITY_METRICS) if "quality" in given else "none"
    )
    if quality != "none" and output not in ("null", "file"):
        raise ScenarioError(
            "Quality measurement compares a local encoded file with the source; "
            "it cannot be combined with a streaming output."
        )
    if "input_sha256" in given and input_path is None:
        raise ScenarioError("Parameter 'input_sha256' pins an input file; give 'input' too.")
    return JobSpec(
        scenario=parsed,
        duration_s=_duration(given["duration"]) if "duration" in given else DEFAULT_DURATION_S,
        bitrate_bps=_bitrate(given["bitrate"]) if "bitrate" in given else None,
        preset=_preset(given["preset"], parsed.codec, engine) if "preset" in given else None,
        engine=engine,
        input=input_path,
        output=output,
        quality=quality,
        warmup=_count("warmup", given["warmup"], 0, MAX_RUNS) if "warmup" in given else 0,
        repeats=_count("repeats", given["repeats"], 1, MAX_RUNS) if "repeats" in given else 1,
        noise_threshold=_noise_threshold(given["noise_threshold"])
        if "noise_threshold" in given
        else DEFAULT_NOISE_THRESHOLD,
        cpu_affinity=_cpu_affinity(given["cpu_affinity"]) if "cpu_affinity" in given else None,
        nice=_count("nice", given["nice"], 0, 19) if "nice" in given else None,
        input_sha256=_sha256(given["input_sha256"]) if "input_sha256" in given else None,
    )


_PIXELS_720P = 1280 * 720
_CODEC_COST = {"h264": 1.0, "hevc": 4.0, "vp9": 3.0, "av1": 4.0}
_SLOW_PRESETS = {"fast": 4.0, "medium": 4.0, "slow": 16.0, "slower": 16.0, "veryslow": 16.0}
_QUALITY_COST = {"none": 0.0, "psnr": 1.0, "ssim": 1.0, "vmaf": 4.0}


def _preset_cost(preset: str | None) -> float:
    """How much slower than the fast defaults a preset can be, generously."""
    if preset is None:
        return 1.0
    if preset in _SLOW_PRESETS:
        return _SLOW_PRESETS[preset]
    if preset == "good":
        return 16.0
    if preset.isdigit():  # SVT-AV1 and vp9 cpu-used: lower is slower
        level = int(preset)
        return 1.0 if level >= 6 else 4.0 if level >= 4 else 16.0 if level >= 2 else 100.0
    if preset.startswith("p") and preset[1:].isdigit():
        return 1.0 if int(preset[1:]) <= 4 else 4.0
    return 1.0


def _scale(spec: JobSpec) -> float:
    scenario = spec.scenario
    return max((scenario.width * scenario.height / _PIXELS_720P) * (scenario.fps / 30), 0.05)


def _encode_s_per_media_s(spec: JobSpec) -> float:
    """A generous bound on the wall seconds one second of video takes to encode: 2 s at
    720p30 h264 (about 6x what a 2-core machine needs), scaled by pixels, frame rate, codec
    and preset cost."""
    return 2.0 * _scale(spec) * _CODEC_COST[spec.scenario.codec] * _preset_cost(spec.preset)


def default_timeout_s(spec: JobSpec) -> float:
    """A hard bound a real run never reaches but that stops an endless or stuck input.

    60 s of start-up slack plus, per second of video and per run (warm-up and repeats), the
    encode bound above, plus the quality pass once; never less than 1.5x the duration per run,
    which a paced RTMP stream needs.
    """
    per_second = max(_encode_s_per_media_s(spec), 1.5) * spec.runs
    per_second += _scale(spec) * _QUALITY_COST[spec.quality]
    return 60.0 + spec.duration_s * per_second


MIN_STALL_TIMEOUT_S = 30.0
# Frames an encoder may hold before its first output (x264/x265 look-ahead and B-frames),
# twice over: the counters stand still that long on a healthy start.
_STALL_FRAMES = 120


def default_stall_timeout_s(spec: JobSpec, timeout_s: float) -> float:
    """How long `-progress` counters may stand still before the run counts as stuck: the
    generous time for `_STALL_FRAMES` frames, at least 30 s, at most half the hard timeout."""
    per_frame = _encode_s_per_media_s(spec) / spec.scenario.fps
    return min(max(MIN_STALL_TIMEOUT_S, _STALL_FRAMES * per_frame), timeout_s / 2)
