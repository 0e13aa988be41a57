"""Detect this machine's hardware and FFmpeg capabilities for registration with the master.

The master schedules work and compares benchmark numbers across nodes, so what an agent
reports must be read from the machine, never guessed: a value that cannot be read is left
empty. Parsers of the raw sources (/proc files, nvidia-smi and FFmpeg output) are pure
functions so they can be tested on captured outputs; the ``detect_*`` functions feed them
live data.
"""

from __future__ import annotations

import platform
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg  # type: ignore[import-untyped]
import psutil
import pynvml  # type: ignore[import-untyped]

from ffleet.encoders import HARDWARE_APIS, RENDER_NODE_GPU_APIS, Device, can_work_with, hardware_api
from ffleet.models import GpuDescription, NodeRegistration, NodeType

GIB = 1024**3
MIB = 1024**2

# Anything slower than this is a hung driver or binary; the agent must still start.
COMMAND_TIMEOUT_S = 10.0

# A hardware encoder in FFmpeg's list only means the build knows it, so each is probed with
# a real encode before it is advertised.
_PROBE_SOURCE = "color=size=256x256:duration=0.1"

# Software encoders worth naming in the start-up summary.
_NOTABLE_ENCODERS = ("libx264", "libx265", "libsvtav1", "libaom-av1", "libvpx-vp9")

_UNAVAILABLE = frozenset({"", "[n/a]", "n/a", "[not supported]", "[unknown error]"})

DRM_CLASS = Path("/sys/class/drm")
_PCI_VENDORS = {"0x8086": "intel", "0x1002": "amd", "0x10de": "nvidia"}
_VENDOR_LABELS = {"intel": "Intel", "amd": "AMD"}
_PCI_IDS = ("vendor", "device")


@dataclass(frozen=True)
class Hardware:
    """Everything the master needs to know about a node to schedule and compare its work."""

    hostname: str
    cpu_threads: int
    cpu_model: str
    ram_bytes: int
    gpus: tuple[GpuDescription, ...]  # NVIDIA GPUs first, then a render node's GPU
    node_type: NodeType
    os: str
    arch: str
    has_battery: bool
    ffmpeg_path: str
    ffmpeg_version: str
    encoders: tuple[str, ...]
    hw_encoders: tuple[str, ...]

    @property
    def has_gpu(self) -> bool:
        """An NVIDIA GPU was found: what `has_gpu` has meant to the master since v1.0."""
        return any(gpu.is_nvidia for gpu in self.gpus)

    @property
    def gpu_type(self) -> str | None:
        """Name of the first NVIDIA GPU; the registry keeps one GPU type per node."""
        return next((gpu.name for gpu in self.gpus if gpu.is_nvidia), None)


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


# --- pure parsers -------------------------------------------------------------------------


def _key_values(text: str) -> list[tuple[str, str]]:
    pairs = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            pairs.append((key.strip(), value.strip()))
    return pairs


def parse_cpuinfo(text: str) -> tuple[int, str]:
    """Return (logical CPUs, CPU model) from /proc/cpuinfo.

    x86 has "model name"; ARM boards often only have "Model" (the board) or "Hardware"
    (the SoC); POWER and MIPS use "cpu" and "cpu model". The model is "" when none exists.
    Raises ValueError when the text lists no processor.
    """
    pairs = _key_values(text)
    threads = sum(1 for key, _ in pairs if key == "processor")
    if threads == 0:
        raise ValueError("no processor entries in cpuinfo")
    first: dict[str, str] = {}
    for key, value in pairs:
        first.setdefault(key, value)
    model = next(
        (
            first[key]
            for key in ("model name", "Model", "Hardware", "cpu model", "cpu")
            if first.get(key)
        ),
        "",
    )
    return threads, model


def parse_meminfo(text: str) -> int:
    """Return total RAM in bytes from /proc/meminfo (MemTotal is given in KiB)."""
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    if match is None:
        raise ValueError("no MemTotal in meminfo")
    return int(match.group(1)) * 1024


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


def classify_node(threads: int, ram_bytes: int, has_battery: bool) -> NodeType:
    """Coarse node class the master uses to group comparable machines."""
    if has_battery:
        return "laptop"
    if threads > 16 and ram_bytes > 32 * GIB:
        return "server"
    return "desktop"


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


# --- live detection -----------------------------------------------------------------------


def _run(argv: Sequence[str]) -> str | None:
    """Stdout of a successful command, or None when it is missing, fails or hangs."""
    try:
        result = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def detect_cpu() -> tuple[int, str]:
    """(logical CPUs, model); /proc/cpuinfo on Linux, psutil/platform elsewhere."""
    text = _read_text("/proc/cpuinfo")
    if text is not None:
        try:
            return parse_cpuinfo(text)
        except ValueError:
            pass
    return psutil.cpu_count(logical=True) or 0, platform.processor()


def detect_ram() -> int:
    """Total RAM in bytes; /proc/meminfo on Linux, psutil elsewhere."""
    text = _read_text("/proc/meminfo")
    if text is not None:
        try:
            return parse_meminfo(text)
        except ValueError:
            pass
    return int(psutil.virtual_memory().total)


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
    output = _run([exe, query, "--format=csv,noheader,nounits"])
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


def linux_has_battery(power_supply: Path = Path("/sys/class/power_supply")) -> bool:
    """Whether the machine itself runs on a battery.

    A wireless mouse or gamepad also shows up as a "Battery" power supply, with scope
    "Device"; those must not turn a desktop into a laptop (psutil counts them).
    """
    try:
        supplies = list(power_supply.iterdir())
    except OSError:
        return False
    for supply in supplies:
        kind = _read_text(str(supply / "type"))
        scope = _read_text(str(supply / "scope"))
        is_battery = kind is not None and kind.strip() == "Battery"
        if is_battery and (scope is None or scope.strip() != "Device"):
            return True
    return False


def detect_battery() -> bool:
    if sys.platform.startswith("linux"):
        return linux_has_battery()
    sensors_battery = getattr(psutil, "sensors_battery", None)
    return sensors_battery is not None and sensors_battery() is not None


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
    vendor_id, device_id = ((_read_text(str(sysfs / f)) or "").strip().lower() for f in _PCI_IDS)
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
    return _run(probe_command(ffmpeg, encoder, render_node)) is not None


def default_ffmpeg_path() -> str:
    """The FFmpeg bundled with imageio-ffmpeg: the same build on every node, so results compare.

    Raises RuntimeError when imageio-ffmpeg has no binary for this platform.
    """
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def detect_ffmpeg(ffmpeg: str, host: AccelHost) -> tuple[str, list[str], list[str]]:
    """(version, software encoders, working hardware encoders); empty when FFmpeg won't run.

    Hardware encoders are probed one after another: consumer NVIDIA cards cap concurrent
    NVENC sessions, so parallel probes could fail on hardware that works.
    """
    version = parse_ffmpeg_version(_run([ffmpeg, "-version"]) or "")
    listed = parse_ffmpeg_encoders(_run([ffmpeg, "-hide_banner", "-encoders"]) or "")
    software = [name for name in listed if hardware_api(name) is None]
    hardware = [
        name
        for name in listed
        if (api := hardware_api(name)) is not None
        and should_probe(api, host)
        and probe_encoder(ffmpeg, name, host.render_node)
    ]
    return version, software, hardware


def usable_encoders(ffmpeg: str) -> tuple[str, ...]:
    """Software encoders plus the hardware ones that really work here.

    Raises RuntimeError when FFmpeg cannot run, so a broken binary is reported, not hidden.
    """
    version, software, hardware = detect_ffmpeg(ffmpeg, detect_accel_host(detect_gpus()))
    if not version:
        raise RuntimeError(f"cannot run FFmpeg at {ffmpeg}")
    return (*software, *hardware)


def detect_hardware(ffmpeg_path: str | None = None) -> Hardware:
    """Detect this machine; ``ffmpeg_path`` overrides the bundled FFmpeg."""
    ffmpeg = ffmpeg_path or default_ffmpeg_path()
    threads, model = detect_cpu()
    ram = detect_ram()
    battery = detect_battery()
    nvidia = detect_gpus()
    host = detect_accel_host(nvidia)
    version, software, hardware = detect_ffmpeg(ffmpeg, host)
    gpus = [*nvidia, *render_node_gpus(hardware, host, index=len(nvidia))]
    return Hardware(
        hostname=socket.gethostname(),
        cpu_threads=threads,
        cpu_model=model,
        ram_bytes=ram,
        gpus=tuple(gpus),
        node_type=classify_node(threads, ram, battery),
        os=platform.system().lower(),
        arch=platform.machine(),
        has_battery=battery,
        ffmpeg_path=ffmpeg,
        ffmpeg_version=version,
        encoders=tuple(software),
        hw_encoders=tuple(hardware),
    )


# --- presentation -------------------------------------------------------------------------


def registration_payload(
    hw: Hardware,
    address: str,
    labels: dict[str, str],
    *,
    slots: int | None = None,
    node_id: str | None = None,
) -> NodeRegistration:
    """Body of POST /nodes/register; user labels override the automatic ones."""
    return NodeRegistration(
        address=address,
        type=hw.node_type,
        cpu_threads=hw.cpu_threads,
        cpu_model=hw.cpu_model,
        has_gpu=hw.has_gpu,
        gpu_type=hw.gpu_type,
        ram_bytes=hw.ram_bytes,
        labels={"os": hw.os, "arch": hw.arch, "hostname": hw.hostname, **labels},
        id=node_id,
        hostname=hw.hostname,
        ffmpeg_version=hw.ffmpeg_version,
        encoders=[*hw.encoders, *hw.hw_encoders],
        gpus=list(hw.gpus),
        slots=slots,
    )


def _gib(value: int) -> str:
    return f"{value / GIB:.1f} GiB"


def format_summary(hw: Hardware) -> str:
    """Human-readable summary the agent prints at start-up."""
    lines = [
        f"Host:      {hw.hostname} ({hw.os}/{hw.arch}, {hw.node_type})",
        f"CPU:       {hw.cpu_model or 'unknown model'}, {hw.cpu_threads} threads",
        f"RAM:       {_gib(hw.ram_bytes)}",
    ]
    if not hw.gpus:
        lines.append("GPU:       none")
    for gpu in hw.gpus:
        memory = _gib(gpu.memory_bytes) if gpu.memory_bytes is not None else "memory unknown"
        driver = f"driver {gpu.driver}" if gpu.driver else "driver unknown"
        lines.append(f"GPU {gpu.index}:     {gpu.name}, {memory}, {driver}")
    notable = [name for name in _NOTABLE_ENCODERS if name in hw.encoders]
    lines += [
        f"Battery:   {'yes' if hw.has_battery else 'no'}",
        f"FFmpeg:    {hw.ffmpeg_version or 'NOT WORKING'} ({hw.ffmpeg_path})",
        f"Encoders:  {len(hw.encoders)} software ({', '.join(notable) or 'no common codec'})",
        f"HW encode: {', '.join(hw.hw_encoders) if hw.hw_encoders else 'none'}",
    ]
    return "\n".join(lines)
