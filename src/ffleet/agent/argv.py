"""The FFmpeg command lines for a job: which encoder runs it, and the encode and quality argvs.

Every command is an argv list, never a shell string: nothing in a job's parameters can reach a
shell. The encode always reports through `-progress pipe:1` (see `progress.py`).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ffleet.encoders import (
    DEFAULT_PRESETS,
    accepts_preset,
    candidate_encoders,
    encoder_engine,
    encoder_family,
)
from ffleet.scenarios import JobSpec, ScenarioError

_CRF = {"libx264": "23", "libx265": "28", "libvpx-vp9": "31", "libsvtav1": "35"}
_NVENC_CQ = {"h264": "23", "hevc": "28", "av1": "32"}
_CONTAINERS = {"h264": "mp4", "hevc": "mp4", "av1": "mp4", "vp9": "webm"}
_QUALITY_FILTERS = {"psnr": "psnr=shortest=1", "ssim": "ssim=shortest=1", "vmaf": "libvmaf"}


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


def is_stream(output: str) -> bool:
    """Whether a job's `output` is a stream URL rather than `null` or `file`."""
    return output not in ("null", "file")


def _seconds(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".")


# Demuxers a job's input file may be read with: plain containers and elementary streams.
# Playlists (hls, dash, concat), image sequences and `tee`-like formats are left out: they name
# further files, and one inside the input directory could make FFmpeg read one outside it.
INPUT_DEMUXERS = "mov,matroska,avi,flv,mpegts,mpeg,ivf,yuv4mpegpipe,h264,hevc,obu,wav"


def _source_args(spec: JobSpec) -> list[str]:
    """Input options for the job's source: the file, or the deterministic test pattern.

    A file is opened through the `file` protocol only (no `concat:`, `subfile:`, `http:`, even
    from inside a container) and with the demuxers above only."""
    scenario = spec.scenario
    if spec.input is not None:
        return [
            "-protocol_whitelist",
            "file",
            "-format_whitelist",
            INPUT_DEMUXERS,
            "-t",
            _seconds(spec.duration_s),
            "-i",
            f"file:{spec.input}",
        ]
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
    streaming = is_stream(spec.output)
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


def quality_argv(spec: JobSpec, ffmpeg: str, encoded: Path) -> list[str]:
    """Compare the encoded file with the same source, frame by frame, on the CPU.

    Frames are paired by index, never by timestamp: WebM stores times in 1 ms units, so a
    33.333 ms frame step becomes 33 or 34 ms and a pairing by time puts some encoded frames
    beside the wrong source frame (VP9 scored 29 dB where it deserved 41). Both streams are
    renumbered 0, 1, 2, ... in a time base of one frame, which is exact for every container.
    """
    measure = _QUALITY_FILTERS[spec.quality]
    if spec.quality == "vmaf":
        measure += f"=shortest=1:n_threads={os.cpu_count() or 1}"
    align = f"settb=1/{spec.scenario.fps},setpts=N,format=yuv420p"
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


def redact(text: str, output: str) -> str:
    """Hide an RTMP URL's stream key (last path segment) and credentials in recorded text."""
    if not is_stream(output):
        return text
    parts = urlsplit(output)
    head = parts.path.rpartition("/")[0]
    netloc = parts.netloc.rpartition("@")[2]
    return text.replace(output, urlunsplit((parts.scheme, netloc, f"{head}/<redacted>", "", "")))
