"""Which video encoders this node's FFmpeg offers: the software ones it lists, and the
hardware ones that really encode a frame here.

A hardware encoder in FFmpeg's list only means the build knows it, so each is probed with a
real encode before it is advertised; probes that cannot succeed on this machine (no device
for that API) are skipped to keep start-up fast. The parsers and the probe's argv are pure
functions, tested on captured outputs.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ffleet.agent.host_reads import command_output
from ffleet.encoders import HARDWARE_APIS, Device, can_work_with, hardware_api
from ffleet.models import GpuDescription

_PROBE_SOURCE = "color=size=256x256:duration=0.1"


@dataclass(frozen=True)
class AccelHost:
    """What a hardware encoder needs from this machine, used to skip hopeless probes."""

    system: str  # platform.system().lower()
    nvidia_gpu: bool
    render_node: str | None  # first /dev/dri/renderD*, needed by VAAPI
    video_devices: bool  # any /dev/video*, needed by V4L2 mem2mem

    @property
    def devices(self) -> frozenset[Device]:
        """The catalogue's devices this machine offers hardware encoders."""
        linux = self.system == "linux"
        offered = {
            Device.NVIDIA_GPU: self.nvidia_gpu,
            Device.RENDER_NODE: linux and self.render_node is not None,
            Device.VIDEO_NODE: linux and self.video_devices,
            Device.WINDOWS: self.system == "windows",
            Device.MACOS: self.system == "darwin",
        }
        return frozenset(device for device, present in offered.items() if present)


def parse_ffmpeg_version(text: str) -> str:
    """Return the version from ``ffmpeg -version`` ("" when the banner is missing)."""
    match = re.search(r"^ffmpeg version (\S+)", text, re.MULTILINE)
    return match.group(1) if match else ""


def parse_ffmpeg_encoders(text: str) -> list[str]:
    """Return the video encoder names listed by ``ffmpeg -hide_banner -encoders``.

    The flag legend above the "------" line looks like an entry, so only lines after it count.
    """
    names: list[str] = []
    in_table = False
    for line in text.splitlines():
        if not in_table:
            in_table = line.strip().startswith("---")
            continue
        match = re.match(r"\s*([VAS][A-Z.]{5})\s+(\S+)", line)
        if match and match.group(1).startswith("V"):
            names.append(match.group(2))
    return names


def should_probe(api: str, host: AccelHost) -> bool:
    """Whether a probe of this hardware API's encoders can possibly succeed here.

    Probing is a real encode; skipping the hopeless ones keeps agent start-up fast. Unknown
    APIs are always probed, since a wrong skip would hide a working encoder.
    """
    return can_work_with(api, host.devices)


def probe_command(ffmpeg: str, encoder: str, render_node: str | None = None) -> list[str]:
    """Argv of a one-frame test encode with ``encoder``, output discarded."""
    api = hardware_api(encoder)
    uploads = api is not None and HARDWARE_APIS[api].uploads
    argv = [ffmpeg, "-hide_banner", "-loglevel", "error"]
    if uploads:
        device = f"{api}=hw"
        if api == "vaapi" and render_node:
            device += f":{render_node}"
        argv += ["-init_hw_device", device, "-filter_hw_device", "hw"]
    argv += ["-f", "lavfi", "-i", _PROBE_SOURCE, "-frames:v", "1"]
    if uploads:
        argv += ["-vf", "format=nv12,hwupload"]
    argv += ["-c:v", encoder, "-f", "null", "-"]
    return argv


def detect_accel_host(gpus: Sequence[GpuDescription]) -> AccelHost:
    dri = Path("/dev/dri")
    render_nodes = sorted(dri.glob("renderD*")) if dri.is_dir() else []
    return AccelHost(
        system=platform.system().lower(),
        nvidia_gpu=bool(gpus),
        render_node=str(render_nodes[0]) if render_nodes else None,
        video_devices=any(Path("/dev").glob("video*")),
    )


def probe_encoder(ffmpeg: str, encoder: str, render_node: str | None = None) -> bool:
    """Whether ``encoder`` really encodes a frame here, not just appears in the build."""
    return command_output(probe_command(ffmpeg, encoder, render_node)) is not None


def detect_ffmpeg(ffmpeg: str, host: AccelHost) -> tuple[str, list[str], list[str]]:
    """(version, software encoders, working hardware encoders); empty when FFmpeg won't run.

    Hardware encoders are probed one after another: consumer NVIDIA cards cap concurrent
    NVENC sessions, so parallel probes could fail on hardware that works.
    """
    version = parse_ffmpeg_version(command_output([ffmpeg, "-version"]) or "")
    listed = parse_ffmpeg_encoders(command_output([ffmpeg, "-hide_banner", "-encoders"]) or "")
    software = [name for name in listed if hardware_api(name) is None]
    hardware = [
        name
        for name in listed
        if (api := hardware_api(name)) is not None
        and should_probe(api, host)
        and probe_encoder(ffmpeg, name, host.render_node)
    ]
    return version, software, hardware
