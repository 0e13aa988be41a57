from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ffleet.agent.meters import EnergyMeter, GpuSampler
from tests.processes import wait_until


def _domain(root: Path, name: str, label: str, energy: int, max_range: int | None) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "name").write_text(f"{label}\n")
    (directory / "energy_uj").write_text(f"{energy}\n")
    if max_range is not None:
        (directory / "max_energy_range_uj").write_text(f"{max_range}\n")
    return directory / "energy_uj"


def _count(counter: Path, energy: int) -> None:
    """Sets a fake counter as sysfs does, in one step: a poll running meanwhile must never
    read the half-written file that `write_text` leaves between its truncate and its write."""
    staged = counter.with_suffix(".new")
    staged.write_text(f"{energy}\n")
    staged.replace(counter)


def test_energy_counts_package_domains_only(tmp_path: Path) -> None:
    package0 = _domain(tmp_path, "intel-rapl:0", "package-0", 1_000_000, 10**9)
    package1 = _domain(tmp_path, "intel-rapl:1", "package-1", 5_000_000, 10**9)
    core = _domain(tmp_path, "intel-rapl:0:0", "core", 0, 10**9)
    psys = _domain(tmp_path, "intel-rapl:2", "psys", 0, 10**9)
    meter = EnergyMeter(tmp_path)
    meter.start()
    _count(package0, 4_000_000)  # +3 J
    _count(package1, 5_500_000)  # +0.5 J
    _count(core, 2_000_000)  # already inside package-0
    _count(psys, 9_000_000)  # covers the packages
    joules, reason = meter.stop()
    assert reason is None
    assert joules == pytest.approx(3.5)


def test_energy_wraps_around(tmp_path: Path) -> None:
    counter = _domain(tmp_path, "intel-rapl:0", "package-0", 9_000_000, 10_000_000)
    meter = EnergyMeter(tmp_path)
    meter.start()
    _count(counter, 500_000)
    joules, reason = meter.stop()
    assert reason is None
    assert joules == pytest.approx(1.5)  # 10 J range: 9 J -> 10 J, then 0 -> 0.5 J


def test_energy_poll_catches_several_wraps(tmp_path: Path) -> None:
    counter = _domain(tmp_path, "intel-rapl:0", "package-0", 9_000_000, 10_000_000)
    meter = EnergyMeter(tmp_path, poll_interval_s=0.01)
    meter.start()
    _count(counter, 5_000_000)  # wrapped once: +6 J
    wait_until(lambda: meter.joules_so_far() == pytest.approx(6.0), timeout=10)
    _count(counter, 1_000_000)  # wrapped again: +6 J
    joules, reason = meter.stop()
    assert reason is None
    assert joules == pytest.approx(12.0)


def test_energy_backwards_without_range_is_reported(tmp_path: Path) -> None:
    counter = _domain(tmp_path, "intel-rapl:0", "package-0", 9_000_000, None)
    meter = EnergyMeter(tmp_path)
    meter.start()
    _count(counter, 1_000)
    joules, reason = meter.stop()
    assert joules is None
    assert reason is not None and "wrapped" in reason


def test_energy_without_powercap(tmp_path: Path) -> None:
    meter = EnergyMeter(tmp_path / "absent")
    meter.start()
    joules, reason = meter.stop()
    assert joules is None
    assert reason is not None and "does not exist" in reason


def test_energy_without_package_domains(tmp_path: Path) -> None:
    _domain(tmp_path, "intel-rapl:0:0", "core", 0, 10**9)
    meter = EnergyMeter(tmp_path)
    meter.start()
    joules, reason = meter.stop()
    assert joules is None
    assert reason is not None and "no package domains" in reason


def test_energy_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = _domain(tmp_path, "intel-rapl:0", "package-0", 1, 10**9)
    real_read = Path.read_text

    def read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        if self == counter:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    meter = EnergyMeter(tmp_path)
    meter.start()
    joules, reason = meter.stop()
    assert joules is None
    assert reason is not None and "permission denied" in reason and str(counter) in reason


def test_energy_counter_vanishing_midway(tmp_path: Path) -> None:
    counter = _domain(tmp_path, "intel-rapl:0", "package-0", 1, 10**9)
    meter = EnergyMeter(tmp_path)
    meter.start()
    counter.unlink()
    joules, reason = meter.stop()
    assert joules is None
    assert reason is not None and "RAPL unreadable" in reason


class _NVMLError(Exception):
    pass


class _FakeNvml:
    """Stands in for pynvml: one GPU at 50% load, NVENC at 30%, 120 W."""

    NVMLError = _NVMLError

    def __init__(self, gpus: int = 1, power: bool = True, energy: bool = True) -> None:
        self.gpus, self.power, self.energy = gpus, power, energy
        self.energy_mj = 1_000_000
        self.shutdowns = 0
        self.polls = 0

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return self.gpus

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object:
        return ("gpu", index)

    def nvmlDeviceGetUtilizationRates(self, handle: object) -> SimpleNamespace:
        self.polls += 1
        return SimpleNamespace(gpu=50, memory=10)

    def nvmlDeviceGetEncoderUtilization(self, handle: object) -> list[int]:
        return [30, 167000]

    def nvmlDeviceGetPowerUsage(self, handle: object) -> int:
        if not self.power:
            raise _NVMLError("Not Supported")
        return 120_000

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: object) -> int:
        if not self.energy:
            raise _NVMLError("Not Supported")
        self.energy_mj += 2_500
        return self.energy_mj


def test_gpu_sampler_averages_samples() -> None:
    nvml = _FakeNvml()
    sampler = GpuSampler(interval_s=0.01, nvml=nvml)
    sampler.start()
    wait_until(lambda: nvml.polls >= 2, timeout=10)
    reading, reason = sampler.stop()
    assert reason is None and reading is not None
    assert reading.samples >= 2
    assert reading.utilization_percent == 50
    assert reading.encoder_utilization_percent == 30
    assert reading.power_watts == 120
    assert reading.energy_joules == pytest.approx(2.5)
    assert reading.unavailable == {}
    assert nvml.shutdowns == 1


def test_gpu_sampler_short_run_still_samples_once() -> None:
    sampler = GpuSampler(interval_s=60, nvml=_FakeNvml())
    sampler.start()
    reading, _ = sampler.stop()
    assert reading is not None and reading.samples == 1


def test_gpu_sampler_reports_unsupported_fields() -> None:
    nvml = _FakeNvml(power=False, energy=False)
    sampler = GpuSampler(interval_s=0.01, nvml=nvml)
    sampler.start()
    wait_until(lambda: nvml.polls >= 1, timeout=10)
    reading, reason = sampler.stop()
    assert reason is None and reading is not None
    assert reading.power_watts is None and reading.energy_joules is None
    assert "Not Supported" in reading.unavailable["power_watts"]
    assert "energy" in reading.unavailable["energy_joules"]
    assert reading.utilization_percent == 50


def test_gpu_sampler_without_gpus() -> None:
    nvml = _FakeNvml(gpus=0)
    sampler = GpuSampler(nvml=nvml)
    sampler.start()
    reading, reason = sampler.stop()
    assert reading is None
    assert reason is not None and reason.startswith("no NVIDIA GPU / NVML unavailable")
    assert nvml.shutdowns == 1


def test_gpu_sampler_when_nvml_fails_to_initialise() -> None:
    nvml = _FakeNvml()

    def broken_init() -> None:
        raise _NVMLError("Driver Not Loaded")

    nvml.nvmlInit = broken_init  # type: ignore[method-assign]
    sampler = GpuSampler(nvml=nvml)
    sampler.start()
    reading, reason = sampler.stop()
    assert reading is None
    assert reason == "no NVIDIA GPU / NVML unavailable: Driver Not Loaded"


def test_gpu_sampler_with_the_real_nvml() -> None:
    """On a machine without an NVIDIA GPU the real pynvml must yield a reason, not a crash."""
    sampler = GpuSampler(interval_s=0.01)
    sampler.start()
    reading, reason = sampler.stop()
    assert (reading is None) != (reason is None)
    if reading is None:
        assert reason is not None and reason.startswith("no NVIDIA GPU / NVML unavailable")
