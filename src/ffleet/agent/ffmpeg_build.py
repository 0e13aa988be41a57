"""Which FFmpeg build a node runs: its version, the SHA-256 of the binary and its configuration.

Two nodes that both say "FFmpeg 7.1" may still run different code (another libx264, other
configure flags), so a figure compared across nodes names the exact binary. The binary is
hashed once per version of the file (see file_hashes) when the agent starts; every result
repeats the identity, so a stored result says what produced it on its own.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ffleet.agent.file_hashes import HASHES

VERSION_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class FfmpegBuild:
    """None in a field that could not be read; `problem` then says why."""

    version: str | None
    sha256: str | None
    configuration: str | None
    problem: str | None = None


def parse_version_output(text: str) -> tuple[str | None, str | None]:
    """The version word and the `configuration:` line of `ffmpeg -version`."""
    version = configuration = None
    for line in text.splitlines():
        words = line.split()
        if version is None and len(words) >= 3 and words[1] == "version":
            version = words[2]
        elif line.startswith("configuration:"):
            configuration = line.partition(":")[2].strip()
    return version, configuration


def identify(ffmpeg: str) -> FfmpegBuild:
    """The identity of the binary `ffmpeg` names (a path or a name on PATH)."""
    located = shutil.which(ffmpeg) or ffmpeg
    try:
        sha256, _ = HASHES.sha256(Path(located))
    except OSError as exc:
        return FfmpegBuild(None, None, None, f"cannot read the FFmpeg binary: {exc}")
    known = _BY_DIGEST.get(sha256)
    if known is None:
        known = _BY_DIGEST[sha256] = _ask(located, sha256)
    return known


_BY_DIGEST: dict[str, FfmpegBuild] = {}  # one `-version` run per binary, not per job


def _ask(located: str, sha256: str) -> FfmpegBuild:
    try:
        done = subprocess.run(
            [located, "-hide_banner", "-version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return FfmpegBuild(None, sha256, None, f"`ffmpeg -version` failed: {exc}")
    version, configuration = parse_version_output(done.stdout)
    if done.returncode != 0 or version is None:
        problem = f"`ffmpeg -version` gave no version (exit code {done.returncode})"
        return FfmpegBuild(None, sha256, configuration, problem)
    return FfmpegBuild(version, sha256, configuration)
