"""Placement rules as pure functions: requirements, the SQL pre-filter, preferences."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from ffleet.models import Requirements
from ffleet.scenarios import build_job_spec
from ffleet.scheduling import (
    PREFERENCE_WINDOW_S,
    NodeTraits,
    needs_gpu,
    placement_requirements,
    preference,
    should_defer,
    unmet,
    unschedulable_reason,
)

GIB = 1 << 30


def traits(
    node_id: str = "node-0000-cpu",
    *,
    has_gpu: bool = False,
    gpu_names: tuple[str, ...] = (),
    encoders: tuple[str, ...] = ("libx264",),
    ram_bytes: int = 16 * GIB,
    cpu_threads: int = 8,
    labels: dict[str, str] | None = None,
) -> NodeTraits:
    return NodeTraits(
        node_id=node_id,
        has_gpu=has_gpu,
        gpu_names=gpu_names,
        encoders=frozenset(encoders),
        ram_bytes=ram_bytes,
        cpu_threads=cpu_threads,
        labels=labels or {},
    )


CPU = traits()
NVIDIA = traits(
    "node-1111-nvidia", has_gpu=True, gpu_names=("NVIDIA L4",), encoders=("libx264", "h264_nvenc")
)
VAAPI = traits("node-2222-vaapi", gpu_names=("AMD GPU 1002:73bf",), encoders=("h264_vaapi",))

# Nodes without has_gpu, including registrations no ffleet agent would send (an NVENC encoder
# or a GPU name without has_gpu): the pre-filter must stay a relaxation for them too.
NON_NVIDIA_NODES = [
    CPU,
    VAAPI,
    traits("node-3333-qsv", encoders=("libx264", "h264_qsv", "hevc_qsv"), labels={"site": "lab"}),
    traits("node-4444-v1", encoders=()),
    traits("node-5555-odd", encoders=("h264_nvenc", "hevc_nvenc"), gpu_names=("NVIDIA L4",)),
    traits("node-6666-big", ram_bytes=256 * GIB, cpu_threads=128),
]
REQUIREMENTS = [
    None,
    Requirements(),
    Requirements(gpu=True),
    Requirements(gpu=False),
    Requirements(gpu_model="L4"),
    Requirements(gpu_model="AMD"),
    Requirements(encoders=["h264_nvenc"]),
    Requirements(encoders=["h264_vaapi"]),
    Requirements(encoders=["hevc_qsv", "libx264"]),
    Requirements(encoders=["h264_vulkan"]),
    Requirements(min_ram_bytes=64 * GIB),
    Requirements(min_cpu_threads=64),
    Requirements(labels={"site": "lab"}),
]


@pytest.mark.parametrize(
    ("req", "node", "missing"),
    [
        (None, CPU, []),
        (Requirements(gpu=True), CPU, ["a GPU"]),
        (Requirements(gpu=True), NVIDIA, []),
        (Requirements(gpu=False), NVIDIA, ["no GPU"]),
        (Requirements(gpu_model="l4"), NVIDIA, []),
        (Requirements(gpu_model="a100"), NVIDIA, ["GPU model 'a100'"]),
        (Requirements(gpu_model="AMD"), VAAPI, ["GPU model 'AMD'"]),  # gpu_model is NVIDIA
        (Requirements(encoders=["h264_vaapi"]), VAAPI, []),
        (Requirements(encoders=["h264_vaapi", "hevc_vaapi"]), VAAPI, ["encoders hevc_vaapi"]),
        (Requirements(encoders=["h264_nvenc"]), NON_NVIDIA_NODES[4], ["encoders h264_nvenc"]),
        (
            Requirements(min_ram_bytes=32 * GIB, min_cpu_threads=16, labels={"site": "lab"}),
            CPU,
            [
                f"at least {32 * GIB} bytes of RAM",
                "at least 16 CPU threads",
                "labels site=lab",
            ],
        ),
    ],
)
def test_unmet(req: Requirements | None, node: NodeTraits, missing: list[str]) -> None:
    assert unmet(req, node) == missing


@pytest.mark.parametrize(("req", "node"), list(itertools.product(REQUIREMENTS, NON_NVIDIA_NODES)))
def test_needs_gpu_is_never_stricter_than_unmet(req: Requirements | None, node: NodeTraits) -> None:
    if needs_gpu(req):
        assert unmet(req, node), "the SQL pre-filter would hide a job this node can run"


def test_needs_gpu_marks_only_nvidia_work() -> None:
    marked = [req for req in REQUIREMENTS if needs_gpu(req)]
    assert marked == [
        Requirements(gpu=True),
        Requirements(gpu_model="L4"),
        Requirements(gpu_model="AMD"),
        Requirements(encoders=["h264_nvenc"]),
    ]


def test_preference() -> None:
    lab = traits(labels={"site": "lab", "tier": "fast"})
    assert preference(None, {"site": "lab", "tier": "fast"}, {}, lab) == 2
    assert preference(None, {}, {"site": "lab"}, lab) == -100
    assert preference(None, {}, {}, NVIDIA) == -10  # GPU node, work without the GPU
    assert preference(Requirements(gpu=True), {}, {}, NVIDIA) == 0
    assert preference(Requirements(encoders=["h264_nvenc"]), {}, {}, NVIDIA) == 0
    assert preference(Requirements(encoders=["h264_vaapi"]), {}, {}, VAAPI) == 0


def test_should_defer_to_a_better_idle_node_within_the_window() -> None:
    assert should_defer(None, {}, {}, 0.0, NVIDIA, [CPU])
    assert not should_defer(None, {}, {}, PREFERENCE_WINDOW_S, NVIDIA, [CPU])
    assert not should_defer(None, {}, {}, 0.0, CPU, [NVIDIA])
    assert not should_defer(None, {}, {}, 0.0, NVIDIA, [NVIDIA])  # itself does not count
    big = Requirements(min_ram_bytes=64 * GIB)
    assert not should_defer(big, {}, {}, 0.0, traits(has_gpu=True, ram_bytes=64 * GIB), [CPU])
    lab = traits("node-7777-lab", labels={"site": "lab"})
    assert should_defer(None, {"site": "lab"}, {}, 1.0, CPU, [lab])
    assert should_defer(None, {}, {"site": "lab"}, 1.0, lab, [CPU])


def test_unschedulable_reason() -> None:
    assert unschedulable_reason(None, []) is None
    gpu = Requirements(gpu=True)
    assert unschedulable_reason(gpu, []) == "no node is registered yet"
    assert unschedulable_reason(gpu, [CPU, NVIDIA]) is None
    assert unschedulable_reason(Requirements(encoders=["h264_vaapi"]), [CPU, VAAPI]) is None
    reason = unschedulable_reason(gpu, [CPU, VAAPI])
    assert reason == (
        "no registered node satisfies the requirements "
        "(node-000 lacks a GPU | node-222 lacks a GPU)"
    )
    many = unschedulable_reason(gpu, [traits(f"node{n}") for n in range(9)]) or ""
    assert many.count(" lacks ") == 5


@pytest.mark.parametrize(
    ("scenario", "parameters", "requirements", "expected"),
    [
        ("720p", {}, None, None),
        ("720p", {"engine": "cpu"}, None, None),
        ("720p", {"engine": "cpu"}, Requirements(gpu=False), Requirements(gpu=False)),
        ("720p", {"engine": "vaapi"}, None, Requirements(encoders=["h264_vaapi"])),
        ("720p-av1", {"engine": "qsv"}, None, Requirements(encoders=["av1_qsv"])),
        (
            "720p-hevc",
            {"engine": "nvenc"},
            Requirements(encoders=["libx264"], labels={"a": "b"}),
            Requirements(encoders=["libx264", "hevc_nvenc"], labels={"a": "b"}),
        ),
        (
            "720p",
            {"engine": "vaapi"},
            Requirements(encoders=["h264_vaapi"]),
            Requirements(encoders=["h264_vaapi"]),
        ),
    ],
)
def test_placement_requirements(
    scenario: str,
    parameters: dict[str, object],
    requirements: Requirements | None,
    expected: Requirements | None,
) -> None:
    given = msgspec.json.encode(requirements)
    spec = build_job_spec(scenario, parameters)
    assert placement_requirements(requirements, spec) == expected
    assert msgspec.json.encode(requirements) == given  # the user's struct is left alone
