"""Placement rules: which nodes may run a job, and which of them it prefers.

Pure functions over plain values so that every store applies exactly the same rules. Hard
requirements filter; preferences (GPU nodes kept for GPU work, affinity, anti-affinity) only
rank, and stop applying once a job has waited `PREFERENCE_WINDOW_S`, so they can never starve it.

"GPU" here means what a node's `has_gpu` says: an NVIDIA GPU was found (the v1.0 meaning).
Intel and AMD GPUs are reached through their encoders (`h264_vaapi`, `hevc_qsv`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from ffleet import encoders
from ffleet.models import Requirements
from ffleet.scenarios import JobSpec

if TYPE_CHECKING:
    from ffleet.scenarios import JobSpec

PREFERENCE_WINDOW_S = 10.0
NO_NODE_YET = "no node is registered yet"  # why a job fits no node before any node joined


@dataclass(frozen=True)
class NodeTraits:
    """What placement needs to know about a node."""

    node_id: str
    has_gpu: bool
    gpu_names: Sequence[str]
    encoders: frozenset[str]
    ram_bytes: int
    cpu_threads: int
    labels: Mapping[str, str]
    ffmpeg_sha256: str | None = None
    ffmpeg_version: str | None = None


@dataclass(frozen=True, slots=True)
class PassOver:
    """Why the claim walk passes over a job for one node: the rule (LACKS, REFUSED, PREFERS,
    MEASURED), the first unmet requirement or the better node's id, and for a deferral the end
    of the preference window. The store's walk decides it; `explain` only puts it in words."""

    rule: str
    detail: str = ""
    until: float = 0.0


# The rules of `PassOver`: a requirement unmet; the node's agent refused the job; an idle node
# preferred by labels or GPU use; an idle node measured better for a job with `placement`.
LACKS, REFUSED, PREFERS, MEASURED = "lacks", "refused", "prefers", "measured"


def placement_requirements(requirements: Requirements | None, spec: JobSpec) -> Requirements | None:
    """The requirements a job is placed by: the user's plus the encoder its engine needs.

    Without this an `engine=vaapi` job could go to a CPU-only node and fail there for good
    although another node could run it. `auto` and `cpu` add nothing (see
    `encoders.required_encoder`).
    """
    encoder = encoders.required_encoder(spec.scenario.codec, spec.engine)
    if encoder is None:
        return requirements
    if requirements is None:
        return Requirements(encoders=[encoder])
    if encoder in requirements.encoders:
        return requirements
    return msgspec.structs.replace(requirements, encoders=[*requirements.encoders, encoder])


def needs_gpu(req: Requirements | None) -> bool:
    """Whether only a node with an NVIDIA GPU can run the job: the stores' SQL pre-filter.

    It must never be stricter than `unmet`: true only when `unmet` finds something missing on
    every node whose `has_gpu` is false, or a job some node could run would never reach it.
    """
    if req is None:
        return False
    return bool(req.gpu or req.gpu_model or any(encoders.needs_nvidia(enc) for enc in req.encoders))


def unmet(req: Requirements | None, node: NodeTraits) -> list[str]:
    """The requirements `node` fails, in words; empty when it can run the job.

    `gpu_model` and NVIDIA-only encoders also need `has_gpu`, which keeps `needs_gpu` exact.
    """
    if req is None:
        return []
    missing: list[str] = []
    if req.gpu and not node.has_gpu:
        missing.append("a GPU")
    if req.gpu is False and node.has_gpu:
        missing.append("no GPU")
    if req.gpu_model and not (
        node.has_gpu and any(req.gpu_model.lower() in name.lower() for name in node.gpu_names)
    ):
        missing.append(f"GPU model {req.gpu_model!r}")
    lacking = [
        enc
        for enc in req.encoders
        if enc not in node.encoders or (encoders.needs_nvidia(enc) and not node.has_gpu)
    ]
    if lacking:
        missing.append("encoders " + ", ".join(lacking))
    if node.ram_bytes < req.min_ram_bytes:
        missing.append(f"at least {req.min_ram_bytes} bytes of RAM")
    if node.cpu_threads < req.min_cpu_threads:
        missing.append(f"at least {req.min_cpu_threads} CPU threads")
    wrong = [f"{k}={v}" for k, v in req.labels.items() if node.labels.get(k) != v]
    if wrong:
        missing.append("labels " + ", ".join(wrong))
    if req.ffmpeg_sha256 and node.ffmpeg_sha256 != req.ffmpeg_sha256.lower():
        missing.append(f"the FFmpeg build with SHA-256 {req.ffmpeg_sha256[:12]}...")
    if req.ffmpeg_version and node.ffmpeg_version != req.ffmpeg_version:
        missing.append(f"FFmpeg version {req.ffmpeg_version!r}")
    return missing


def unschedulable_reason(req: Requirements | None, nodes: Iterable[NodeTraits]) -> str | None:
    """Why no registered node could ever run the job, or None if one could."""
    if req is None:
        return None
    gaps: list[str] = []
    for node in nodes:
        missing = unmet(req, node)
        if not missing:
            return None
        gaps.append(f"{node.node_id[:8]} lacks {'; '.join(missing)}")
    if not gaps:
        return NO_NODE_YET
    return "no registered node satisfies the requirements (" + " | ".join(gaps[:5]) + ")"


def preference(
    req: Requirements | None, affinity: Mapping[str, str], anti: Mapping[str, str], node: NodeTraits
) -> int:
    """Higher is better. Affinity labels matched count up, anti-affinity matches count down hard,
    and a GPU node is a worse home for work that does not need its GPU."""
    score = sum(1 for k, v in affinity.items() if node.labels.get(k) == v)
    score -= 100 * sum(1 for k, v in anti.items() if node.labels.get(k) == v)
    if node.has_gpu and not needs_gpu(req):
        score -= 10
    return score


def should_defer(
    req: Requirements | None,
    affinity: Mapping[str, str],
    anti: Mapping[str, str],
    waited_s: float,
    claimer: NodeTraits,
    idle_others: Iterable[NodeTraits],
) -> bool:
    """True when an idle node that can run the job would be a better home than `claimer`.

    Preferences lapse after PREFERENCE_WINDOW_S of waiting, so an idle-but-silent node can
    delay a job only briefly.
    """
    if waited_s >= PREFERENCE_WINDOW_S:
        return False
    mine = preference(req, affinity, anti, claimer)
    return any(
        preference(req, affinity, anti, other) > mine and not unmet(req, other)
        for other in idle_others
        if other.node_id != claimer.node_id
    )
