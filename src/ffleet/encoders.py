"""The encoder catalogue: engines, encoder names, preset families and the device each needs.

The master validates parameters and places jobs with it, the agent chooses, probes and drives
encoders with it; keeping all of it here means the two sides can never disagree about what
`engine=vaapi` or `h264_nvenc` requires.

Vocabulary: an *engine* is what a job's `engine` parameter names (`cpu`, `nvenc`, `qsv`,
`vaapi`, or `auto` to pick one); a *hardware API* is the FFmpeg hardware family an encoder
name belongs to (`h264_nvenc` -> `nvenc`, `prores_ks_vulkan` -> `vulkan`); an encoder's
*preset family* is its hardware API, or for a CPU encoder its own name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Device(StrEnum):
    """Something a hardware encoder needs from the machine before it can possibly work."""

    NVIDIA_GPU = "nvidia-gpu"  # found by the NVIDIA driver (NVML or nvidia-smi)
    RENDER_NODE = "render-node"  # a Linux DRM render node, /dev/dri/renderD*
    VIDEO_NODE = "video-node"  # a Linux V4L2 device, /dev/video*
    WINDOWS = "windows"  # the Windows media and GPU APIs
    MACOS = "macos"  # Apple's VideoToolbox


@dataclass(frozen=True)
class HardwareApi:
    """An FFmpeg hardware-encoder family.

    `devices`: the API can work when the machine has any one of them; None when no rule is
    known, so its encoders are always probed (a wrong skip would hide a working encoder).
    `uploads`: its encoders take only frames already in device memory.
    """

    devices: frozenset[Device] | None
    uploads: bool = False


_ANY_GPU = frozenset({Device.WINDOWS, Device.RENDER_NODE})

# Every hardware API FFmpeg names its encoders after (`<codec>_<api>`, older `nvenc_<codec>`).
HARDWARE_APIS: dict[str, HardwareApi] = {
    "nvenc": HardwareApi(frozenset({Device.NVIDIA_GPU})),
    "vaapi": HardwareApi(frozenset({Device.RENDER_NODE}), uploads=True),
    "qsv": HardwareApi(_ANY_GPU),
    "amf": HardwareApi(_ANY_GPU),
    "vulkan": HardwareApi(_ANY_GPU | {Device.NVIDIA_GPU}, uploads=True),
    "v4l2m2m": HardwareApi(frozenset({Device.VIDEO_NODE})),
    "videotoolbox": HardwareApi(frozenset({Device.MACOS})),
    "d3d12va": HardwareApi(frozenset({Device.WINDOWS}), uploads=True),
    "mf": HardwareApi(frozenset({Device.WINDOWS})),  # Windows Media Foundation
    "mediacodec": HardwareApi(None),
    "omx": HardwareApi(None),
    "rkmpp": HardwareApi(None),
}
# APIs that encode on the GPU behind the render node: a working encoder proves that GPU.
RENDER_NODE_GPU_APIS = frozenset({"vaapi", "qsv"})

ENGINES = ("auto", "cpu", "nvenc", "vaapi", "qsv")
HARDWARE_ENGINES = ("nvenc", "qsv", "vaapi")
# Order in which engine=auto tries engines: hardware first, the CPU last.
AUTO_ORDER = ("nvenc", "qsv", "vaapi", "cpu")
CODEC_NAMES = ("h264", "hevc", "vp9", "av1")

# Encoder per (codec, engine); a missing pair means no such encoder exists in FFmpeg.
ENGINE_ENCODERS: dict[tuple[str, str], str] = {
    ("h264", "cpu"): "libx264",
    ("hevc", "cpu"): "libx265",
    ("vp9", "cpu"): "libvpx-vp9",
    ("av1", "cpu"): "libsvtav1",
    ("h264", "nvenc"): "h264_nvenc",
    ("hevc", "nvenc"): "hevc_nvenc",
    ("av1", "nvenc"): "av1_nvenc",
    **{(codec, hw): f"{codec}_{hw}" for codec in CODEC_NAMES for hw in ("qsv", "vaapi")},
}

X26X_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
_QSV_PRESETS = ("veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# Presets per preset family; a family missing here takes no preset.
PRESETS: dict[str, tuple[str, ...]] = {
    "libx264": X26X_PRESETS,
    "libx265": X26X_PRESETS,
    "libvpx-vp9": ("realtime", "good", *(str(n) for n in range(9))),
    "libsvtav1": tuple(str(n) for n in range(14)),
    "nvenc": tuple(f"p{n}" for n in range(1, 8)),
    "qsv": _QSV_PRESETS,
    "vaapi": (),
}
# The fast defaults, so that a benchmark without a preset finishes promptly.
DEFAULT_PRESETS: dict[str, str | None] = {
    "libx264": "veryfast",
    "libx265": "veryfast",
    "libvpx-vp9": "realtime",
    "libsvtav1": "10",
    "nvenc": "p2",
    "qsv": "veryfast",
    "vaapi": None,
}


def hardware_api(encoder: str) -> str | None:
    """The hardware API an encoder drives (one `_`-separated part of its name), or None for
    a software encoder."""
    return next((part for part in encoder.split("_") if part in HARDWARE_APIS), None)


def encoder_family(encoder: str) -> str:
    """The preset family of an encoder: its own name for CPU encoders, else the hw API."""
    return hardware_api(encoder) or encoder


def encoder_engine(encoder: str) -> str:
    """`cpu`, `nvenc`, `qsv` or `vaapi` for an encoder name (APIs no engine names count as cpu)."""
    api = hardware_api(encoder)
    return api if api in HARDWARE_ENGINES else "cpu"


def presets_of(encoder: str) -> tuple[str, ...]:
    return PRESETS.get(encoder_family(encoder), ())


def accepts_preset(encoder: str, preset: str | None) -> bool:
    """Whether `encoder` can take `preset` (None, the default, suits every encoder)."""
    return preset is None or preset in presets_of(encoder)


def candidate_encoders(codec: str, engine: str) -> list[str]:
    """Encoders that may run `codec` under `engine`, in the order engine=auto prefers."""
    engines = AUTO_ORDER if engine == "auto" else (engine,)
    return [ENGINE_ENCODERS[(codec, e)] for e in engines if (codec, e) in ENGINE_ENCODERS]


def required_encoder(codec: str, engine: str) -> str | None:
    """The encoder a node must have to run `codec` under a hardware `engine`.

    None for `auto` (any node has some encoder) and `cpu`: v1.0 agents register no encoder
    list, and they must keep receiving CPU work.
    """
    return ENGINE_ENCODERS.get((codec, engine)) if engine in HARDWARE_ENGINES else None


def needs_nvidia(encoder: str) -> bool:
    """Whether the encoder can only run with an NVIDIA GPU (a node's `has_gpu`)."""
    api = hardware_api(encoder)
    return api is not None and HARDWARE_APIS[api].devices == frozenset({Device.NVIDIA_GPU})


def can_work_with(api: str, devices: frozenset[Device]) -> bool:
    """Whether encoders of `api` may work on a machine that has `devices` (unknown APIs: yes)."""
    known = HARDWARE_APIS.get(api)
    return known is None or known.devices is None or bool(known.devices & devices)
