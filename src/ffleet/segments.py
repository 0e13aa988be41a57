"""Cutting a video into segments at keyframes and joining encoded segments, without
re-encoding either way, and checking that the join is exact.

Only FFmpeg is needed (the bundled build has no ffprobe): the stream facts come from its
`-i` banner, frame counts from the `framecrc` muxer (one line per packet with `-c copy`, one
per decoded frame without). Cuts use the segment muxer with stream copy, which can only cut
at a keyframe: each segment starts on one, so it decodes on its own and its encode does too.
"""

from __future__ import annotations

import csv
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_S = 3600.0  # any one cut, join or check; a stuck FFmpeg must not hold the splitter
_VIDEO = re.compile(r"Stream #\S+.*?: Video: (\w+).*?, (\d+)x(\d+)[ ,].*?, ([\d.]+) fps")
_AUDIO = re.compile(r"Stream #\S+.*?: Audio: (\w+)")


class MediaError(Exception):
    """FFmpeg could not read, cut or join a file; the message says what it reported."""


@dataclass(frozen=True)
class MediaInfo:
    codec: str
    width: int
    height: int
    fps: float
    frames: int
    audio_codec: str | None

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


@dataclass(frozen=True)
class Segment:
    index: int
    start_s: float
    end_s: float
    path: Path


def run_ffmpeg(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run FFmpeg to the end (bounded by TIMEOUT_S), its output captured."""
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MediaError(f"FFmpeg did not finish: {exc}") from None


def _tail(text: str) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-4:])


def count_frames(ffmpeg: str, path: Path, *, decode: bool) -> tuple[int, str]:
    """Video frames of `path` and FFmpeg's error output; `decode` decodes every frame (the
    clean-decode check), otherwise packets are only counted."""
    copy = [] if decode else ["-c", "copy"]
    argv = [ffmpeg, "-v", "error", "-nostdin", "-i", str(path), "-map", "0:v:0", *copy]
    frames = 0
    with subprocess.Popen(
        [*argv, "-f", "framecrc", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        for line in child.stdout:
            if line.strip() and not line.startswith("#"):
                frames += 1
        errors = child.stderr.read()
        code = child.wait(TIMEOUT_S)
    if code != 0:
        raise MediaError(f"FFmpeg could not read {path.name}: {_tail(errors)}")
    return frames, errors.strip()


def probe(ffmpeg: str, path: Path) -> MediaInfo:
    banner = run_ffmpeg([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)]).stderr
    video = _VIDEO.search(banner)
    if video is None:
        raise MediaError(f"no video stream found in the input: {_tail(banner)}")
    audio = _AUDIO.search(banner)
    frames, _ = count_frames(ffmpeg, path, decode=False)
    return MediaInfo(
        codec=video.group(1),
        width=int(video.group(2)),
        height=int(video.group(3)),
        fps=float(video.group(4)),
        frames=frames,
        audio_codec=audio.group(1) if audio else None,
    )


def cut(ffmpeg: str, source: Path, segment_s: float, out_dir: Path) -> list[Segment]:
    """The source's video in segments of about `segment_s`, each cut at the first keyframe
    at or after its planned start (stream copy: nothing is re-encoded)."""
    listing = out_dir / "segments.csv"
    done = run_ffmpeg(
        [
            ffmpeg,
            "-v",
            "error",
            "-nostdin",
            "-y",
            "-i",
            str(source),
            "-map",
            "0:v:0",
            "-c",
            "copy",
            "-f",
            "segment",
            "-segment_time",
            f"{segment_s:g}",
            "-segment_format",
            "matroska",
            "-reset_timestamps",
            "1",
            "-segment_list",
            str(listing),
            "-segment_list_type",
            "csv",
            str(out_dir / "segment%05d.mkv"),
        ]
    )
    if done.returncode != 0:
        raise MediaError(f"cutting the input failed: {_tail(done.stderr)}")
    with listing.open(newline="") as handle:
        rows = list(csv.reader(handle))
    return [
        Segment(index, float(start), float(end), out_dir / name)
        for index, (name, start, end) in enumerate(rows)
    ]


def extract_audio(ffmpeg: str, source: Path, target: Path) -> Path:
    """The source's first audio stream as it is (stream copy), once for the whole file."""
    argv = [ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(source), "-map", "0:a:0"]
    done = run_ffmpeg([*argv, "-c", "copy", "-f", "matroska", str(target)])
    if done.returncode != 0:
        raise MediaError(f"extracting the audio failed: {_tail(done.stderr)}")
    return target


def join(ffmpeg: str, parts: Sequence[Path], audio: Path | None, target: Path, muxer: str) -> Path:
    """Concatenate encoded segments (stream copy) and mux the audio back in."""
    listing = target.with_name(f"{target.name}.concat")
    listing.write_text("".join(f"file '{part.resolve()}'\n" for part in parts))
    argv = [ffmpeg, "-v", "error", "-nostdin", "-y", "-f", "concat", "-safe", "0"]
    argv += ["-i", str(listing)]
    maps = ["-map", "0:v:0"]
    if audio is not None:
        argv += ["-i", str(audio)]
        maps += ["-map", "1:a:0"]
    done = run_ffmpeg([*argv, *maps, "-c", "copy", "-f", muxer, str(target)])
    listing.unlink(missing_ok=True)
    if done.returncode != 0:
        raise MediaError(f"joining the segments failed: {_tail(done.stderr)}")
    return target


def verify(ffmpeg: str, joined: Path, expected_frames: int, fps: float) -> dict[str, object]:
    """Decode the whole joined file: its frame count, duration, stream facts, and whether
    any frame (so any segment boundary) failed to decode. `exact` when all agree."""
    info = probe(ffmpeg, joined)
    frames, errors = count_frames(ffmpeg, joined, decode=True)
    return {
        "frames": frames,
        "expected_frames": expected_frames,
        "duration_s": frames / fps,
        "codec": info.codec,
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "audio_codec": info.audio_codec,
        "decode_errors": errors or None,
        "exact": frames == expected_frames and not errors,
    }
