"""Tests of agent/gpus.py: nvidia-smi's output parsed, NVML preferred over it, and the GPU
behind a render node listed only when an encoder proved it works."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pynvml  # type: ignore[import-untyped]
import pytest

from ffleet.agent.gpus import MIB, detect_gpus, parse_nvidia_smi_csv, render_node_gpus
from ffleet.agent.hardware import GIB
from tests.unit.hardware_samples import DRI_HOST, FIXTURES, NO_ACCEL, fixture, nvidia

# --- nvidia-smi output --------------------------------------------------------------------


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
