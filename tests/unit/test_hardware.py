"""Tests of agent/hardware.py: /proc parsers on captured outputs, node classification, the
battery read, whole detection on this machine, and the registration and summary built from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ffleet.agent.gpus import MIB
from ffleet.agent.hardware import (
    GIB,
    Hardware,
    classify_node,
    default_ffmpeg_path,
    detect_hardware,
    format_summary,
    linux_has_battery,
    parse_cpuinfo,
    parse_meminfo,
    registration_payload,
)
from ffleet.encoders import hardware_api
from ffleet.models import GpuDescription, NodeRegistration
from tests.unit.hardware_samples import fixture, nvidia

# --- parsers ------------------------------------------------------------------------------


def test_parse_cpuinfo_x86() -> None:
    assert parse_cpuinfo(fixture("cpuinfo-amd-epyc-2t.txt")) == (2, "AMD EPYC")


def test_parse_cpuinfo_raspberry_pi_uses_board_model() -> None:
    assert parse_cpuinfo(fixture("cpuinfo-rpi4-aarch64.txt")) == (
        4,
        "Raspberry Pi 4 Model B Rev 1.1",
    )


def test_parse_cpuinfo_falls_back_to_hardware_then_empty() -> None:
    soc = "processor\t: 0\nBogoMIPS\t: 38.40\n\nHardware\t: Allwinner sun8i Family\n"
    assert parse_cpuinfo(soc) == (1, "Allwinner sun8i Family")
    assert parse_cpuinfo("processor\t: 0\nprocessor\t: 1\nBogoMIPS\t: 50.00\n") == (2, "")


def test_parse_cpuinfo_without_processors_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_cpuinfo("")


def test_parse_meminfo() -> None:
    assert parse_meminfo(fixture("meminfo.txt")) == 24683656 * 1024


def test_parse_meminfo_without_total_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_meminfo("MemFree:        24172788 kB\n")


@pytest.mark.parametrize(
    ("threads", "ram", "battery", "expected"),
    [
        (64, 256 * GIB, True, "laptop"),
        (4, 8 * GIB, True, "laptop"),
        (17, 32 * GIB + 1, False, "server"),
        (17, 32 * GIB, False, "desktop"),
        (16, 128 * GIB, False, "desktop"),
        (2, 24 * GIB, False, "desktop"),
    ],
)
def test_classify_node(threads: int, ram: int, battery: bool, expected: str) -> None:
    assert classify_node(threads, ram, battery) == expected


# --- battery ------------------------------------------------------------------------------


def power_supply(root: Path, name: str, kind: str, scope: str | None = None) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "type").write_text(kind + "\n")
    if scope is not None:
        (root / name / "scope").write_text(scope + "\n")


def test_laptop_battery_is_found(tmp_path: Path) -> None:
    power_supply(tmp_path, "AC", "Mains")
    power_supply(tmp_path, "BAT0", "Battery", "System")
    assert linux_has_battery(tmp_path)


def test_peripheral_batteries_do_not_count(tmp_path: Path) -> None:
    power_supply(tmp_path, "AC", "Mains")
    power_supply(tmp_path, "hid-00:1f:20:aa:bb:cc-battery", "Battery", "Device")
    power_supply(tmp_path, "ucsi-source-psy-USBC000:001", "USB")
    assert not linux_has_battery(tmp_path)
    assert not linux_has_battery(tmp_path / "missing")


# --- whole detection and presentation -----------------------------------------------------


def test_detect_hardware_on_this_machine() -> None:
    hw = detect_hardware()
    assert hw.cpu_threads >= 1
    assert hw.ram_bytes > 0
    assert hw.hostname
    assert hw.os and hw.arch
    assert hw.node_type in {"laptop", "desktop", "server"}
    assert hw.node_type == classify_node(hw.cpu_threads, hw.ram_bytes, hw.has_battery)
    assert hw.ffmpeg_path == default_ffmpeg_path()
    assert hw.ffmpeg_version
    assert "libx264" in hw.encoders
    assert all(hardware_api(name) is None for name in hw.encoders)
    assert all(hardware_api(name) for name in hw.hw_encoders)
    assert hw.has_gpu == any(gpu.vendor == "nvidia" for gpu in hw.gpus)


def test_broken_ffmpeg_path_leaves_ffmpeg_fields_empty() -> None:
    hw = detect_hardware("/nonexistent/ffmpeg")
    assert hw.ffmpeg_path == "/nonexistent/ffmpeg"
    assert (hw.ffmpeg_version, hw.encoders, hw.hw_encoders) == ("", (), ())
    assert "NOT WORKING" in format_summary(hw)


SAMPLE = Hardware(
    hostname="enc-01",
    cpu_threads=32,
    cpu_model="AMD Ryzen 9 7950X 16-Core Processor",
    ram_bytes=64 * GIB,
    gpus=(nvidia(0, "NVIDIA GeForce RTX 4090", 24564 * MIB, "550.54.14"),),
    node_type="server",
    os="linux",
    arch="x86_64",
    has_battery=False,
    ffmpeg_path="/opt/ffmpeg",
    ffmpeg_version="n9.0.2-17-g2a571b6068-20260930",
    encoders=("libx264", "libx265"),
    hw_encoders=("h264_nvenc",),
)


def test_gpu_properties() -> None:
    assert SAMPLE.has_gpu
    assert SAMPLE.gpu_type == "NVIDIA GeForce RTX 4090"
    bare = Hardware(**{**SAMPLE.__dict__, "gpus": ()})
    assert not bare.has_gpu
    assert bare.gpu_type is None


def test_registration_payload() -> None:
    registration = registration_payload(
        SAMPLE, "http://10.0.0.7:8701", {"os": "ubuntu", "rack": "b"}, slots=2, node_id="n-1"
    )
    assert registration == NodeRegistration(
        address="http://10.0.0.7:8701",
        type="server",
        cpu_threads=32,
        cpu_model="AMD Ryzen 9 7950X 16-Core Processor",
        has_gpu=True,
        gpu_type="NVIDIA GeForce RTX 4090",
        ram_bytes=64 * GIB,
        labels={"os": "ubuntu", "arch": "x86_64", "hostname": "enc-01", "rack": "b"},
        id="n-1",
        hostname="enc-01",
        ffmpeg_version="n9.0.2-17-g2a571b6068-20260930",
        encoders=["libx264", "libx265", "h264_nvenc"],
        gpus=[nvidia(0, "NVIDIA GeForce RTX 4090", 24564 * MIB, "550.54.14")],
        slots=2,
    )


def test_an_intel_gpu_is_listed_but_is_not_has_gpu() -> None:
    intel = GpuDescription(0, "Intel GPU 8086:56a0", None, "i915", "intel", "/dev/dri/renderD128")
    hw = Hardware(**{**SAMPLE.__dict__, "gpus": (intel,), "hw_encoders": ("h264_vaapi",)})
    registration = registration_payload(hw, "http://10.0.0.7:8701", {})
    assert (registration.has_gpu, registration.gpu_type) == (False, None)
    assert registration.gpus == [intel]
    assert "GPU 0:     Intel GPU 8086:56a0, memory unknown, driver i915" in format_summary(hw)
    both = Hardware(**{**SAMPLE.__dict__, "gpus": (intel, *SAMPLE.gpus)})
    assert (both.has_gpu, both.gpu_type) == (True, "NVIDIA GeForce RTX 4090")


def test_format_summary() -> None:
    text = format_summary(SAMPLE)
    assert "enc-01 (linux/x86_64, server)" in text
    assert "AMD Ryzen 9 7950X 16-Core Processor, 32 threads" in text
    assert "64.0 GiB" in text
    assert "NVIDIA GeForce RTX 4090, 24.0 GiB, driver 550.54.14" in text
    assert "n9.0.2-17-g2a571b6068-20260930 (/opt/ffmpeg)" in text
    assert "2 software (libx264, libx265)" in text
    assert "h264_nvenc" in text
