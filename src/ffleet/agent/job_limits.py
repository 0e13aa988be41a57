"""What an agent refuses to run: streams to hosts it does not allow, and jobs bigger than it.

A streaming `output` makes the agent open a connection wherever the job says; without an
allow-list a fleet is a relay into every network its agents reach (SSRF). And FFmpeg's memory
grows with the frame size times the frames its encoder holds: 8192x8192 with a slow preset
passed 10 GiB in 25 s. The agent checks both before FFmpeg starts, and refuses with a reason
instead of being exhausted.
"""

from __future__ import annotations

import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ffleet.agent.argv import is_stream
from ffleet.scenarios import JobSpec, ScenarioError

MIB = 2**20
BASE_MEMORY_BYTES = 256 * MIB  # FFmpeg, its libraries and buffers before any frame
# Frames an encoder holds at once (lookahead, reference and B-frames), generously.
_FRAMES_HELD = {"slow": 120, "slower": 120, "veryslow": 160, "placebo": 250}
DEFAULT_FRAMES_HELD = 60
BYTES_PER_PIXEL = 3.0  # a 4:2:0 frame is 1.5 bytes a pixel; encoders keep copies
ENCODED_BITS_PER_PIXEL = 0.5  # a high upper bound of what a constant-quality encode writes


class NotOnThisAgent(ScenarioError):
    """A job this agent will not run; another agent (more memory, other allowed hosts) may."""


@dataclass(frozen=True)
class ResourceLimits:
    max_memory_bytes: int  # most memory one job's FFmpeg may be expected to take
    min_free_disk_bytes: int  # free space to keep in the work dir after an encoded file


def estimated_memory(spec: JobSpec) -> int:
    scenario = spec.scenario
    frames = _FRAMES_HELD.get(spec.preset or "", DEFAULT_FRAMES_HELD)
    return int(BASE_MEMORY_BYTES + scenario.width * scenario.height * BYTES_PER_PIXEL * frames)


def estimated_output(spec: JobSpec) -> int:
    """Bytes of the encoded file: the bitrate's, or a generous constant-quality bound."""
    if spec.bitrate_bps is not None:
        return int(spec.bitrate_bps * spec.duration_s / 8)
    scenario = spec.scenario
    pixels = scenario.width * scenario.height * scenario.fps * spec.duration_s
    return int(pixels * ENCODED_BITS_PER_PIXEL / 8)


def check_resources(spec: JobSpec, limits: ResourceLimits, work_dir: Path) -> None:
    """Raises NotOnThisAgent when the job would not fit this agent's memory or disk."""
    memory = estimated_memory(spec)
    if memory > limits.max_memory_bytes:
        raise NotOnThisAgent(
            f"This job needs about {memory / 2**30:.1f} GiB of memory; this agent allows "
            f"{limits.max_memory_bytes / 2**30:.1f} GiB (--max-job-memory)."
        )
    if is_stream(spec.output):
        return  # nothing is written here
    probe = work_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    size = estimated_output(spec)
    if size + limits.min_free_disk_bytes > free:
        raise NotOnThisAgent(
            f"This job may write about {size / MIB:.0f} MiB; the work dir has {free / MIB:.0f} "
            f"MiB free and keeps {limits.min_free_disk_bytes / MIB:.0f} MiB (--min-free-disk)."
        )


def check_output_host(output: str, allowed_hosts: Collection[str]) -> None:
    """A stream goes only to a host named with --allow-output-host (none by default);
    raises NotOnThisAgent otherwise."""
    if not is_stream(output):
        return
    host = (urlsplit(output).hostname or "").lower()
    if host not in {allowed.lower() for allowed in allowed_hosts}:
        shown = ", ".join(sorted(allowed_hosts)) or "none"
        raise NotOnThisAgent(
            f"This agent does not stream to {host or 'that URL'!r}; it allows: {shown} "
            "(--allow-output-host)."
        )
