"""This machine's GPUs: NVIDIA ones from the driver (NVML, else nvidia-smi), and the GPU
behind a render node once one of its encoders worked.

Only the NVIDIA driver's word sets a node's `has_gpu` (what it has meant since v1.0); an
Intel or AMD GPU is listed from sysfs, and only after a VAAPI or QSV encode proved it there.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pynvml  # type: ignore[import-untyped]

from ffleet.agent.encoder_probe import AccelHost
from ffleet.agent.host_reads import command_output, read_text
from ffleet.encoders import RENDER_NODE_GPU_APIS, hardware_api
from ffleet.models import GpuDescription

MIB = 1024**2

_UNAVAILABLE = frozenset({"", "[n/a]", "n/a", "[not supported]", "[unknown error]"})

DRM_CLASS = Path("/sys/class/drm")
_PCI_VENDORS = {"0x8086": "intel", "0x1002": "amd", "0x10de": "nvidia"}
_VENDOR_LABELS = {"intel": "Intel", "amd": "AMD"}
_PCI_IDS = ("vendor", "device")


def _optional(value: str) -> str | None:
    value = value.strip()
    return None if value.lower() in _UNAVAILABLE else value


def parse_nvidia_smi_csv(text: str) -> list[GpuDescription]:
    """Parse ``nvidia-smi --query-gpu=name,memory.total,driver_version
    --format=csv,noheader,nounits`` (one line per GPU in index order; memory in MiB)."""
    gpus: list[GpuDescription] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        # Split from the right: the name is the only field that could hold a comma.
        fields = line.rsplit(",", 2)
        if len(fields) != 3:
            raise ValueError(f"unexpected nvidia-smi line: {line!r}")
        name, memory, driver = (_optional(field) for field in fields)
        gpus.append(
            GpuDescription(
                index=len(gpus),
                name=name or "",
                memory_bytes=int(float(memory) * MIB) if memory is not None else None,
                driver=driver,
                vendor="nvidia",
            )
        )
    return gpus


def _nvml_gpus() -> list[GpuDescription]:
    pynvml.nvmlInit()
    try:
        driver = _optional(str(pynvml.nvmlSystemGetDriverVersion()))
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            gpus.append(
                GpuDescription(
                    index=index,
                    name=str(pynvml.nvmlDeviceGetName(handle)),
                    memory_bytes=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                    driver=driver,
                    vendor="nvidia",
                )
            )
        return gpus
    finally:
        pynvml.nvmlShutdown()


def _nvidia_smi_gpus() -> list[GpuDescription]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    query = "--query-gpu=name,memory.total,driver_version"
    output = command_output([exe, query, "--format=csv,noheader,nounits"])
    if output is None:
        return []
    try:
        return parse_nvidia_smi_csv(output)
    except ValueError:
        return []


def detect_gpus() -> list[GpuDescription]:
    """NVIDIA GPUs via NVML, else via nvidia-smi; none when neither library nor tool works."""
    try:
        return _nvml_gpus()
    except pynvml.NVMLError:
        return _nvidia_smi_gpus()


def render_node_gpus(
    working: Sequence[str], host: AccelHost, index: int, drm: Path = DRM_CLASS
) -> list[GpuDescription]:
    """The GPU behind the render node, once a VAAPI or QSV encoder worked on it (the proof it
    is there), described from sysfs: PCI vendor and device ids, kernel driver.

    None for an NVIDIA card: the NVIDIA driver describes it, and only that sets `has_gpu`.
    """
    node = host.render_node
    if node is None or not any(hardware_api(name) in RENDER_NODE_GPU_APIS for name in working):
        return []
    sysfs = drm / Path(node).name / "device"
    vendor_id, device_id = ((read_text(str(sysfs / f)) or "").strip().lower() for f in _PCI_IDS)
    vendor = _PCI_VENDORS.get(vendor_id, vendor_id or "unknown")
    if vendor == "nvidia":
        return []
    try:
        driver: str | None = (sysfs / "driver").readlink().name
    except OSError:
        driver = None
    ids = ":".join(part.removeprefix("0x") for part in (vendor_id, device_id) if part)
    name = " ".join(part for part in (_VENDOR_LABELS.get(vendor), "GPU", ids) if part)
    return [GpuDescription(index=index, name=name, driver=driver, vendor=vendor, device=node)]
