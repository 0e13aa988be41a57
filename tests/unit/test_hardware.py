"""Tests of hardware detection: parsers on captured outputs, detection on this machine."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pynvml  # type: ignore[import-untyped]
import pytest

from ffleet.agent import encoder_probe
from ffleet.agent.encoder_probe import (
    AccelHost,
    detect_ffmpeg,
    parse_ffmpeg_encoders,
    parse_ffmpeg_version,
    probe_command,
    probe_encoder,
    should_probe,
)
from ffleet.agent.gpus import MIB, detect_gpus, parse_nvidia_smi_csv, render_node_gpus
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
from ffleet.encoders import Device, hardware_api
from ffleet.models import GpuDescription, NodeRegistration

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hardware"

# The 29 hardware encoders in the captured n9.0.2 encoder list.
FIXTURE_HW_ENCODERS = {
    "av1_nvenc", "av1_qsv", "av1_amf", "av1_vaapi", "av1_vulkan", "ffv1_vulkan",
    "h263_v4l2m2m", "h264_amf", "h264_nvenc", "h264_qsv", "h264_v4l2m2m", "h264_vaapi",
    "h264_vulkan", "hevc_amf", "hevc_nvenc", "hevc_qsv", "hevc_v4l2m2m", "hevc_vaapi",
    "hevc_vulkan", "mjpeg_qsv", "mjpeg_vaapi", "mpeg2_qsv", "mpeg2_vaapi", "mpeg4_v4l2m2m",
    "prores_ks_vulkan", "vp8_v4l2m2m", "vp8_vaapi", "vp9_vaapi", "vp9_qsv",
}  # fmt: skip

NO_ACCEL = AccelHost(system="linux", nvidia_gpu=False, render_node=None, video_devices=False)


def nvidia(index: int, name: str, memory: int | None, driver: str | None) -> GpuDescription:
    return GpuDescription(index, name, memory, driver, vendor="nvidia")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


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


def test_parse_nvidia_smi_two_gpus() -> None:
    assert parse_nvidia_smi_csv(fixture("nvidia-smi-2gpu.csv")) == [
        nvidia(0, "NVIDIA GeForce RTX 4090", 24564 * MIB, "550.54.14"),
        nvidia(1, "NVIDIA RTX A4000", 16376 * MIB, "550.54.14"),
    ]


def test_parse_nvidia_smi_unavailable_fields_are_none() -> None:
    assert parse_nvidia_smi_csv("NVIDIA GH200 480GB, [N/A], [Not Supported]\n\n") == [
        nvidia(0, "NVIDIA GH200 480GB", None, None)
    ]


def test_parse_nvidia_smi_rejects_other_output() -> None:
    assert parse_nvidia_smi_csv("") == []
    with pytest.raises(ValueError):
        parse_nvidia_smi_csv("No devices were found\n")


def test_parse_ffmpeg_version() -> None:
    text = fixture("ffmpeg-version-n9.0.2.txt")
    assert parse_ffmpeg_version(text) == "n9.0.2-17-g2a571b6068-20260930"
    distro = "ffmpeg version 6.1.1-3ubuntu5 Copyright (c) 2000-2023 the FFmpeg developers\n"
    assert parse_ffmpeg_version(distro) == "6.1.1-3ubuntu5"
    assert parse_ffmpeg_version("bash: ffmpeg: command not found\n") == ""


def test_parse_ffmpeg_encoders_lists_video_encoders_only() -> None:
    names = parse_ffmpeg_encoders(fixture("ffmpeg-encoders-n9.0.2.txt"))
    assert len(names) == 139
    assert len(set(names)) == 139
    assert names[:3] == ["a64multi", "a64multi5", "alias_pix"]
    assert names[-1] == "zmbv"
    for video in ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "h264_nvenc", "ffv1"):
        assert video in names
    # the legend line " V..... = Video", audio and subtitle encoders
    for other in ("=", "aac", "libopus", "flac", "ass", "webvtt"):
        assert other not in names


def test_hardware_api() -> None:
    names = parse_ffmpeg_encoders(fixture("ffmpeg-encoders-n9.0.2.txt"))
    assert {name for name in names if hardware_api(name)} == FIXTURE_HW_ENCODERS
    assert hardware_api("h264_nvenc") == "nvenc"
    assert hardware_api("prores_ks_vulkan") == "vulkan"
    assert hardware_api("hevc_videotoolbox") == "videotoolbox"
    assert hardware_api("h264_mf") == "mf"
    assert hardware_api("libx264") is None
    assert hardware_api("mpeg4") is None


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


# --- probe planning -----------------------------------------------------------------------


def planned(host: AccelHost) -> set[str]:
    return {name for name in FIXTURE_HW_ENCODERS if should_probe(hardware_api(name) or "", host)}


def test_nothing_is_probed_without_accelerators() -> None:
    assert planned(NO_ACCEL) == set()


def test_nvidia_only_linux_probes_nvenc_and_vulkan() -> None:
    host = AccelHost(system="linux", nvidia_gpu=True, render_node=None, video_devices=False)
    assert planned(host) == {
        "av1_nvenc", "h264_nvenc", "hevc_nvenc",
        "av1_vulkan", "ffv1_vulkan", "h264_vulkan", "hevc_vulkan", "prores_ks_vulkan",
    }  # fmt: skip


def test_dri_probes_vaapi_qsv_amf_vulkan_but_not_nvenc() -> None:
    host = AccelHost(
        "linux", nvidia_gpu=False, render_node="/dev/dri/renderD128", video_devices=False
    )
    families = {hardware_api(name) for name in planned(host)}
    assert families == {"vaapi", "qsv", "amf", "vulkan"}


def test_v4l2m2m_needs_video_devices_and_videotoolbox_needs_macos() -> None:
    arm_board = AccelHost("linux", nvidia_gpu=False, render_node=None, video_devices=True)
    assert {hardware_api(n) for n in planned(arm_board)} == {"v4l2m2m"}
    mac = AccelHost("darwin", nvidia_gpu=False, render_node=None, video_devices=False)
    assert should_probe("videotoolbox", mac)
    assert not should_probe("videotoolbox", NO_ACCEL)
    assert not should_probe("vaapi", mac)


def test_unknown_family_is_probed() -> None:
    assert should_probe("rkmpp", NO_ACCEL)


def test_probe_command_software_frames() -> None:
    argv = probe_command("/opt/ffmpeg", "h264_nvenc")
    assert argv[0] == "/opt/ffmpeg"
    assert "-init_hw_device" not in argv
    assert "-vf" not in argv
    assert argv[argv.index("-i") + 1] == "color=size=256x256:duration=0.1"
    assert argv[-5:] == ["-c:v", "h264_nvenc", "-f", "null", "-"]


def test_probe_command_uploads_for_vaapi_and_vulkan() -> None:
    vaapi = probe_command("ffmpeg", "hevc_vaapi", "/dev/dri/renderD129")
    assert vaapi[vaapi.index("-init_hw_device") + 1] == "vaapi=hw:/dev/dri/renderD129"
    assert vaapi[vaapi.index("-vf") + 1] == "format=nv12,hwupload"
    # global options must come before the input
    assert vaapi.index("-init_hw_device") < vaapi.index("-i") < vaapi.index("-vf")
    vulkan = probe_command("ffmpeg", "av1_vulkan")
    assert vulkan[vulkan.index("-init_hw_device") + 1] == "vulkan=hw"


def test_probe_encoder_runs_a_real_encode() -> None:
    ffmpeg = default_ffmpeg_path()
    assert probe_encoder(ffmpeg, "libx264")
    assert not probe_encoder(ffmpeg, "no_such_encoder")
    assert not probe_encoder("/nonexistent/ffmpeg", "libx264")


def test_detect_ffmpeg_probes_only_plausible_encoders(monkeypatch: pytest.MonkeyPatch) -> None:
    probed: list[str] = []

    def fake_probe(ffmpeg: str, encoder: str, render_node: str | None = None) -> bool:
        probed.append(encoder)
        return encoder == "h264_nvenc"

    monkeypatch.setattr(encoder_probe, "probe_encoder", fake_probe)
    host = AccelHost("linux", nvidia_gpu=True, render_node=None, video_devices=False)
    version, software, working = detect_ffmpeg(default_ffmpeg_path(), host)
    assert version == "n9.0.2-17-g2a571b6068-20260930"
    assert working == ["h264_nvenc"]
    assert {hardware_api(name) for name in probed} == {"nvenc", "vulkan"}
    assert "libx264" in software
    assert not set(software) & FIXTURE_HW_ENCODERS


# --- GPU detection ------------------------------------------------------------------------


def no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> None:
        raise pynvml.NVMLError_LibraryNotFound()

    monkeypatch.setattr(pynvml, "nvmlInit", fail)


def test_no_nvml_and_no_nvidia_smi_means_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    no_nvml(monkeypatch)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert detect_gpus() == []


def test_falls_back_to_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    no_nvml(monkeypatch)
    script = tmp_path / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'test "$1" = --query-gpu=name,memory.total,driver_version || exit 9\n'
        'test "$2" = --format=csv,noheader,nounits || exit 9\n'
        f"cat '{FIXTURES / 'nvidia-smi-2gpu.csv'}'\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(shutil, "which", lambda name: str(script))
    gpus = detect_gpus()
    assert [gpu.name for gpu in gpus] == ["NVIDIA GeForce RTX 4090", "NVIDIA RTX A4000"]


def test_failing_nvidia_smi_means_no_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    no_nvml(monkeypatch)
    script = tmp_path / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it couldn''t communicate'\nexit 9\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(shutil, "which", lambda name: str(script))
    assert detect_gpus() == []


class FakeMemory:
    total = 80 * GIB


def test_nvml_is_preferred(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: calls.append("init"))
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: calls.append("shutdown"))
    monkeypatch.setattr(pynvml, "nvmlSystemGetDriverVersion", lambda: "570.86.15")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 2)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda index: index)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda handle: f"NVIDIA H100 #{handle}")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryInfo", lambda handle: FakeMemory())
    monkeypatch.setattr(shutil, "which", lambda name: pytest.fail("nvidia-smi used"))
    assert detect_gpus() == [
        nvidia(0, "NVIDIA H100 #0", 80 * GIB, "570.86.15"),
        nvidia(1, "NVIDIA H100 #1", 80 * GIB, "570.86.15"),
    ]
    assert calls == ["init", "shutdown"]


# --- render-node GPUs ---------------------------------------------------------------------

DRI_HOST = AccelHost(
    "linux", nvidia_gpu=False, render_node="/dev/dri/renderD128", video_devices=False
)


def fake_drm(root: Path, vendor: str, device: str, driver: str | None) -> Path:
    """A /sys/class/drm tree with renderD128 -> a PCI device, as the kernel lays it out."""
    pci = root / "devices" / "pci0000:00" / "0000:00:02.0"
    pci.mkdir(parents=True)
    (pci / "vendor").write_text(vendor + "\n")
    (pci / "device").write_text(device + "\n")
    if driver is not None:
        (root / "drivers" / driver).mkdir(parents=True)
        (pci / "driver").symlink_to(root / "drivers" / driver)
    drm = root / "class" / "drm"
    (drm / "renderD128").mkdir(parents=True)
    (drm / "renderD128" / "device").symlink_to(pci)
    return drm


@pytest.mark.parametrize(
    ("vendor", "device", "driver", "expected"),
    [
        ("0x8086", "0x56a0", "i915", ("intel", "Intel GPU 8086:56a0", "i915")),
        ("0x1002", "0x73bf", "amdgpu", ("amd", "AMD GPU 1002:73bf", "amdgpu")),
        ("0x1af4", "0x1050", None, ("0x1af4", "GPU 1af4:1050", None)),
    ],
)
def test_a_working_vaapi_or_qsv_encoder_lists_the_render_node_gpu(
    tmp_path: Path,
    vendor: str,
    device: str,
    driver: str | None,
    expected: tuple[str, str, str | None],
) -> None:
    drm = fake_drm(tmp_path, vendor, device, driver)
    for working in (["h264_vaapi"], ["libx264", "hevc_qsv"]):
        (gpu,) = render_node_gpus(working, DRI_HOST, 1, drm)
        assert (gpu.vendor, gpu.name, gpu.driver) == expected
        assert (gpu.index, gpu.device, gpu.memory_bytes) == (1, "/dev/dri/renderD128", None)
        assert not gpu.is_nvidia


def test_no_render_node_gpu_without_proof_or_for_nvidia(tmp_path: Path) -> None:
    drm = fake_drm(tmp_path, "0x8086", "0x56a0", "i915")
    assert render_node_gpus(["h264_nvenc", "h264_vulkan"], DRI_HOST, 0, drm) == []
    assert render_node_gpus(["h264_vaapi"], NO_ACCEL, 0, drm) == []
    nvidia_drm = fake_drm(tmp_path / "nv", "0x10de", "0x2684", "nvidia")
    assert render_node_gpus(["h264_vaapi"], DRI_HOST, 0, nvidia_drm) == []


def test_unreadable_sysfs_still_lists_a_non_nvidia_gpu(tmp_path: Path) -> None:
    (gpu,) = render_node_gpus(["h264_vaapi"], DRI_HOST, 0, tmp_path)
    assert (gpu.vendor, gpu.name, gpu.driver) == ("unknown", "GPU", None)
    assert not gpu.is_nvidia


def test_accel_host_devices() -> None:
    assert NO_ACCEL.devices == frozenset()
    assert DRI_HOST.devices == {Device.RENDER_NODE}
    both = AccelHost(
        "linux", nvidia_gpu=True, render_node="/dev/dri/renderD128", video_devices=True
    )
    assert both.devices == {Device.NVIDIA_GPU, Device.RENDER_NODE, Device.VIDEO_NODE}
    windows = AccelHost("windows", nvidia_gpu=False, render_node="x", video_devices=True)
    assert windows.devices == {Device.WINDOWS}


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
