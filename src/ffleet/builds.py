"""The fleet's FFmpeg builds: which one most nodes run, and which nodes run another.

Figures from different builds are not comparable (another libx264, other configure flags), so
`ffleet nodes` marks the odd ones out and a matrix with `same_build: true` pins the majority's
binary for every job.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from ffleet.models import Node


def majority_build(nodes: Iterable[Node]) -> str | None:
    """The SHA-256 most nodes report (ties: the first node's); None when none reports one."""
    counts = Counter(node.ffmpeg_sha256 for node in nodes if node.ffmpeg_sha256)
    if not counts:
        return None
    return counts.most_common(1)[0][0]


def differs(node: Node, majority: str | None) -> bool:
    """Whether `node` runs a build other than the majority's (an unknown build differs)."""
    return majority is not None and node.ffmpeg_sha256 != majority
