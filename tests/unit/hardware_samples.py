"""What the hardware-detection tests share: captured outputs and the hosts they probe."""

from __future__ import annotations

from pathlib import Path

from ffleet.agent.encoder_probe import AccelHost
from ffleet.models import GpuDescription

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hardware"

NO_ACCEL = AccelHost(system="linux", nvidia_gpu=False, render_node=None, video_devices=False)
DRI_HOST = AccelHost(
    "linux", nvidia_gpu=False, render_node="/dev/dri/renderD128", video_devices=False
)


def nvidia(index: int, name: str, memory: int | None, driver: str | None) -> GpuDescription:
    return GpuDescription(index, name, memory, driver, vendor="nvidia")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")
