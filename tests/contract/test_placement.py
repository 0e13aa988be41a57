"""Placement contract: the store's SQL pre-filter never hides a job the Python rule allows.

For every node of a small, varied fleet and every kind of job, `claim` must hand out exactly
the jobs `scheduling.unmet()` finds nothing missing for, and a job no node can run must say why.
"""

from __future__ import annotations

from typing import Any

import pytest

from ffleet import scheduling
from ffleet.models import GpuDescription, JobRequest, Node, NodeRegistration, Requirements
from ffleet.scenarios import build_job_spec
from ffleet.store import Store
from ffleet.store.placement import claimer
from ffleet.store.rows import traits_from_row
from ffleet.store.sql import SqlStore

T0 = 1_800_000_000.0
GIB = 1 << 30
BASE_ENCODERS = ["libx264", "libx265", "libvpx-vp9", "libsvtav1"]

NODES: dict[str, NodeRegistration] = {
    "nvidia": NodeRegistration(
        has_gpu=True,
        gpu_type="NVIDIA L4",
        gpus=[GpuDescription(0, "NVIDIA L4", 23 * GIB, "570.86.15", vendor="nvidia")],
        encoders=[*BASE_ENCODERS, "h264_nvenc", "hevc_nvenc", "av1_nvenc"],
        cpu_threads=32,
        ram_bytes=64 * GIB,
    ),
    "vaapi": NodeRegistration(  # an AMD machine: has_gpu means NVIDIA, so it is False
        gpus=[GpuDescription(0, "AMD GPU 1002:73bf", None, "amdgpu", "amd", "/dev/dri/renderD128")],
        encoders=["libx264", "h264_vaapi", "hevc_vaapi"],
        cpu_threads=8,
        ram_bytes=16 * GIB,
    ),
    "qsv": NodeRegistration(
        gpus=[
            GpuDescription(0, "Intel GPU 8086:56a0", None, "i915", "intel", "/dev/dri/renderD128")
        ],
        encoders=[*BASE_ENCODERS, "h264_qsv", "hevc_qsv", "av1_qsv", "h264_vaapi"],
        cpu_threads=16,
        ram_bytes=32 * GIB,
        labels={"site": "lab"},
    ),
    "cpu": NodeRegistration(
        encoders=BASE_ENCODERS,
        cpu_threads=4,
        ram_bytes=8 * GIB,
        ffmpeg_version="7.1",
        ffmpeg_sha256="ab" * 32,
    ),
    "v1.0": NodeRegistration(cpu_threads=8, ram_bytes=16 * GIB),  # registers no encoders
    "v1.0-gpu": NodeRegistration(has_gpu=True, gpu_type="Tesla T4", cpu_threads=8),
}

# job kind -> (scenario, parameters, requirements, the nodes that can run it)
JOBS: dict[str, tuple[str, dict[str, Any], Requirements | None, set[str]]] = {
    "plain": ("360p-h264", {}, None, set(NODES)),
    "v1.0 scenario": ("test-1080p", {}, None, set(NODES)),
    "engine cpu": ("360p-h264", {"engine": "cpu"}, None, set(NODES)),
    "gpu": ("360p", {}, Requirements(gpu=True), {"nvidia", "v1.0-gpu"}),
    "no gpu": ("360p", {}, Requirements(gpu=False), {"vaapi", "qsv", "cpu", "v1.0"}),
    "gpu model": ("360p", {}, Requirements(gpu_model="t4"), {"v1.0-gpu"}),
    "absent gpu model": ("360p", {}, Requirements(gpu_model="H100"), set()),
    "vaapi encoder": ("360p", {}, Requirements(encoders=["h264_vaapi"]), {"vaapi", "qsv"}),
    "nvenc encoder": ("360p", {}, Requirements(encoders=["hevc_nvenc"]), {"nvidia"}),
    "cpu encoder": ("360p", {}, Requirements(encoders=["libsvtav1"]), {"nvidia", "qsv", "cpu"}),
    "engine vaapi": ("360p-hevc", {"engine": "vaapi"}, None, {"vaapi"}),
    "engine qsv": ("360p-av1", {"engine": "qsv"}, None, {"qsv"}),
    "engine nvenc": ("360p-h264", {"engine": "nvenc"}, None, {"nvidia"}),
    "engine vaapi, no such node": ("360p-vp9", {"engine": "vaapi"}, None, set()),
    "engine and label": (
        "360p-h264",
        {"engine": "vaapi"},
        Requirements(labels={"site": "lab"}),
        {"qsv"},
    ),
    "ram": ("360p", {}, Requirements(min_ram_bytes=32 * GIB), {"nvidia", "qsv"}),
    "threads": ("360p", {}, Requirements(min_cpu_threads=16), {"nvidia", "qsv"}),
    "label": ("360p", {}, Requirements(labels={"site": "lab"}), {"qsv"}),
    "absent label": ("360p", {}, Requirements(labels={"site": "mars"}), set()),
    "ffmpeg build": ("360p", {}, Requirements(ffmpeg_sha256="AB" * 32), {"cpu"}),
    "ffmpeg version": ("360p", {}, Requirements(ffmpeg_version="7.1"), {"cpu"}),
    "absent ffmpeg build": ("360p", {}, Requirements(ffmpeg_sha256="cd" * 32), set()),
}


def submit(store: Store, now: float = T0) -> dict[str, str]:
    """Create one job of every kind; returns job id -> kind."""
    kinds = list(JOBS)
    requests = [
        JobRequest(scenario=JOBS[k][0], parameters=JOBS[k][1], requirements=JOBS[k][2])
        for k in kinds
    ]
    return {job.id: kind for job, kind in zip(store.create_jobs(requests, now), kinds, strict=True)}


def traits(node: Node) -> scheduling.NodeTraits:
    return scheduling.NodeTraits(
        node_id=node.id,
        has_gpu=node.has_gpu,
        gpu_names=[gpu.name for gpu in node.gpus] or ([node.gpu_type] if node.gpu_type else []),
        encoders=frozenset(node.encoders),
        ram_bytes=node.ram_bytes,
        cpu_threads=node.cpu_threads,
        labels=node.labels,
        ffmpeg_sha256=node.ffmpeg_sha256,
        ffmpeg_version=node.ffmpeg_version,
    )


def placement(kind: str) -> Requirements | None:
    scenario, parameters, requirements, _ = JOBS[kind]
    return scheduling.placement_requirements(requirements, build_job_spec(scenario, parameters))


@pytest.mark.parametrize("node_name", list(NODES))
def test_claim_hands_out_exactly_what_unmet_allows(store: Store, node_name: str) -> None:
    node = store.register_node(NODES[node_name], T0)
    kinds = submit(store)
    claimed = set()
    while (job := store.claim(node.id, T0 + 1)) is not None:
        claimed.add(kinds[job.id])
    runnable = {kind for kind in JOBS if not scheduling.unmet(placement(kind), traits(node))}
    assert runnable == {kind for kind, job in JOBS.items() if node_name in job[3]}
    assert claimed == runnable


@pytest.mark.parametrize("nodes_first", [True, False], ids=["nodes-first", "jobs-first"])
def test_a_job_no_node_can_run_says_why(store: Store, nodes_first: bool) -> None:
    kinds = {} if nodes_first else submit(store)
    fleet = [store.register_node(reg, T0) for reg in NODES.values()]
    kinds = kinds or submit(store)
    for job_id, kind in kinds.items():
        job = store.get_job(job_id).job
        nobody = all(scheduling.unmet(placement(kind), traits(node)) for node in fleet)
        assert nobody == (not JOBS[kind][3]), kind
        assert (job.unschedulable_reason is not None) == nobody, kind


def test_the_engine_shows_in_the_job_requirements(store: Store) -> None:
    request = JobRequest(
        scenario="360p-hevc",
        parameters={"engine": "vaapi"},
        requirements=Requirements(min_cpu_threads=2),
    )
    (job,) = store.create_jobs([request], T0)
    assert job.requirements == Requirements(encoders=["hevc_vaapi"], min_cpu_threads=2)
    assert store.get_job(job.id).job.requirements == job.requirements


@pytest.mark.parametrize("node_name", list(NODES))
def test_a_claim_reads_the_node_traits_its_registration_stored(
    store: Store, node_name: str
) -> None:
    """`claim_first` carries the node's traits as one JSON array per engine: decoded, they are
    the traits read from the node's own columns."""
    assert isinstance(store, SqlStore)
    node = store.register_node(NODES[node_name], T0)
    with store.db.transaction() as tx:
        first = tx.one("claim_first", {"id": node.id, "now": T0})
        stored = tx.one("node_get", {"id": node.id})
    assert first is not None and stored is not None
    assert first["seq"] is None and not first["busy"]  # an empty queue, a free node
    assert claimer(first) == traits_from_row(stored)
