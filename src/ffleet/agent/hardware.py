"""Detect this machine's hardware and FFmpeg capabilities for registration with the master.

The master schedules work and compares benchmark numbers across nodes, so what an agent
reports must be read from the machine, never guessed: a value that cannot be read is left
empty. Here: the CPU, memory and battery, and the `Hardware` record that gathers them with
the GPUs (see gpus) and the working encoders (see encoder_probe), as registered and as shown
at start-up. Parsers of the raw sources (/proc files) are pure functions so they can be
tested on captured outputs; the ``detect_*`` functions feed them live data.
"""

from __future__ import annotations

import platform
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg  # type: ignore[import-untyped]
import psutil

from ffleet.agent.encoder_probe import detect_accel_host, detect_ffmpeg
from ffleet.agent.gpus import detect_gpus, render_node_gpus
from ffleet.agent.host_reads import read_text
from ffleet.models import GpuDescription, NodeRegistration, NodeType

GIB = 1024**3

# Software encoders worth naming in the start-up summary.
_NOTABLE_ENCODERS = ("libx264", "libx265", "libsvtav1", "libaom-av1", "libvpx-vp9")


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


# --- CPU, memory, battery -----------------------------------------------------------------


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


def classify_node(threads: int, ram_bytes: int, has_battery: bool) -> NodeType:
    """Coarse node class the master uses to group comparable machines."""
    if has_battery:
        return "laptop"
    if threads > 16 and ram_bytes > 32 * GIB:
        return "server"
    return "desktop"


def detect_cpu() -> tuple[int, str]:
    """(logical CPUs, model); /proc/cpuinfo on Linux, psutil/platform elsewhere."""
    text = read_text("/proc/cpuinfo")
    if text is not None:
        try:
            return parse_cpuinfo(text)
        except ValueError:
            pass
    return psutil.cpu_count(logical=True) or 0, platform.processor()


def detect_ram() -> int:
    """Total RAM in bytes; /proc/meminfo on Linux, psutil elsewhere."""
    text = read_text("/proc/meminfo")
    if text is not None:
        try:
            return parse_meminfo(text)
        except ValueError:
            pass
    return int(psutil.virtual_memory().total)


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
        kind = read_text(str(supply / "type"))
        scope = read_text(str(supply / "scope"))
        is_battery = kind is not None and kind.strip() == "Battery"
        if is_battery and (scope is None or scope.strip() != "Device"):
            return True
    return False


def detect_battery() -> bool:
    if sys.platform.startswith("linux"):
        return linux_has_battery()
    sensors_battery = getattr(psutil, "sensors_battery", None)
    return sensors_battery is not None and sensors_battery() is not None


# --- the whole machine --------------------------------------------------------------------


def default_ffmpeg_path() -> str:
    """The FFmpeg bundled with imageio-ffmpeg: the same build on every node, so results compare.

    Raises RuntimeError when imageio-ffmpeg has no binary for this platform.
    """
    return str(imageio_ffmpeg.get_ffmpeg_exe())


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
