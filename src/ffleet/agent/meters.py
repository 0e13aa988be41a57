"""Energy and GPU meters that run alongside an FFmpeg child.

Both report what the hardware counters say or, when they cannot, None with the reason; they
never estimate. RAPL counts the whole CPU package (every process on it, not only FFmpeg), so
energy figures are comparable between runs on an otherwise idle node.
"""

from __future__ import annotations

import importlib
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POWERCAP_ROOT = Path("/sys/class/powercap")
# Top-level package domains only: `intel-rapl:0:0` (core) and friends are already counted in
# their package. AMD kernels expose the same `intel-rapl` names.
_PACKAGE_DIR = re.compile(r"^intel-rapl:\d+$")


@dataclass
class _Domain:
    energy_path: Path
    max_range_uj: int | None
    last_uj: int
    total_uj: int = 0


class EnergyMeter:
    """CPU package energy between `start()` and `stop()`, from the RAPL powercap counters.

    The counters wrap at `max_energy_range_uj`; a background poll every `poll_interval_s`
    folds each step into a running total, so a job longer than one wrap period stays right.
    """

    def __init__(self, root: Path = POWERCAP_ROOT, poll_interval_s: float = 5.0) -> None:
        self._root = root
        self._interval = poll_interval_s
        self._domains: list[_Domain] = []
        self._reason: str | None = None
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._domains, self._reason = [], None
        try:
            self._domains = self._discover()
        except (OSError, ValueError) as exc:
            self._reason = _read_failure(exc)
            return
        if not self._domains:
            return
        self._halt.clear()
        self._thread = threading.Thread(target=self._poll, name="ffleet-rapl", daemon=True)
        self._thread.start()

    def stop(self) -> tuple[float | None, str | None]:
        """Joules used since `start()`, or None and why they could not be read."""
        if self._thread is not None:
            self._halt.set()
            self._thread.join()
            self._thread = None
        if self._reason is None and self._domains:
            self._sample()
        if self._reason is not None:
            return None, self._reason
        if not self._domains:
            return None, "RAPL unavailable: no package domains were found"
        return sum(domain.total_uj for domain in self._domains) / 1e6, None

    def joules_so_far(self) -> float | None:
        """The running total the poll has folded so far (a live reading while a job runs);
        None when energy cannot be measured."""
        with self._lock:
            if self._reason is not None or not self._domains:
                return None
            return sum(domain.total_uj for domain in self._domains) / 1e6

    def _discover(self) -> list[_Domain]:
        if not self._root.is_dir():
            self._reason = (
                f"RAPL unavailable: {self._root} does not exist (no powercap driver, "
                "a CPU without RAPL, or a virtual machine)"
            )
            return []
        domains = []
        for directory in sorted(self._root.iterdir()):
            if not _PACKAGE_DIR.match(directory.name):
                continue
            name_file = directory / "name"
            # `psys` covers the whole platform including the packages: counting it too would
            # double the figure.
            if name_file.exists() and not name_file.read_text().strip().startswith("package"):
                continue
            range_file = directory / "max_energy_range_uj"
            max_range = int(range_file.read_text()) if range_file.exists() else None
            energy_path = directory / "energy_uj"
            domains.append(_Domain(energy_path, max_range, int(energy_path.read_text())))
        if not domains:
            self._reason = f"RAPL unavailable: no package domains (intel-rapl:N) in {self._root}"
        return domains

    def _poll(self) -> None:
        while not self._halt.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        with self._lock:
            if self._reason is not None:
                return
            for domain in self._domains:
                try:
                    now = int(domain.energy_path.read_text())
                except (OSError, ValueError) as exc:
                    self._reason = _read_failure(exc)
                    return
                step = now - domain.last_uj
                if step < 0:
                    if domain.max_range_uj is None:
                        self._reason = (
                            f"RAPL counter {domain.energy_path} wrapped and its "
                            "max_energy_range_uj is unreadable"
                        )
                        return
                    step += domain.max_range_uj
                domain.total_uj += step
                domain.last_uj = now


def _read_failure(exc: OSError | ValueError) -> str:
    if isinstance(exc, PermissionError):
        return (
            f"RAPL unreadable: permission denied on {exc.filename} (energy_uj is root-only "
            "since Linux 5.10; run the agent as root or grant read access)"
        )
    return f"RAPL unreadable: {exc}"


@dataclass(frozen=True)
class GpuReading:
    """Averages over the samples taken; a field is None when the GPU does not report it."""

    utilization_percent: float | None
    encoder_utilization_percent: float | None
    power_watts: float | None
    energy_joules: float | None
    samples: int
    unavailable: dict[str, str] = field(default_factory=dict)


_GPU_FIELDS = ("utilization_percent", "encoder_utilization_percent", "power_watts")


class GpuSampler:
    """Samples one NVIDIA GPU's utilisation, NVENC utilisation and power through NVML.

    `nvml` defaults to the `pynvml` module; tests pass a stand-in.
    """

    def __init__(self, device_index: int = 0, interval_s: float = 0.2, nvml: Any = None) -> None:
        self._index = device_index
        self._interval = interval_s
        self._nvml = nvml
        self._handle: Any = None
        self._reason: str | None = None
        self._values: dict[str, list[float]] = {}
        self._unsupported: dict[str, str] = {}
        self._energy_start_mj: float | None = None
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._handle, self._reason = None, None
        self._values = {key: [] for key in _GPU_FIELDS}
        self._unsupported = {}
        try:
            if self._nvml is None:
                self._nvml = importlib.import_module("pynvml")
            self._nvml.nvmlInit()
        except Exception as exc:  # ImportError, NVMLError (no driver), OSError (no library)
            self._reason = f"no NVIDIA GPU / NVML unavailable: {exc}"
            return
        try:
            count = int(self._nvml.nvmlDeviceGetCount())
            if self._index >= count:
                raise LookupError(f"GPU {self._index} requested, {count} present")
            self._handle = self._nvml.nvmlDeviceGetHandleByIndex(self._index)
        except Exception as exc:
            self._reason = f"no NVIDIA GPU / NVML unavailable: {exc}"
            self._nvml.nvmlShutdown()
            return
        self._energy_start_mj = self._energy_mj()
        self._halt.clear()
        self._thread = threading.Thread(target=self._run, name="ffleet-nvml", daemon=True)
        self._thread.start()

    def stop(self) -> tuple[GpuReading | None, str | None]:
        """The averages since `start()`, or None and why the GPU could not be read."""
        if self._reason is not None or self._handle is None:
            return None, self._reason or "GPU sampler was not started"
        if self._thread is not None:
            self._halt.set()
            self._thread.join()
            self._thread = None
        if not self._values["utilization_percent"]:
            self._sample()  # a run shorter than one interval still gets one reading
        energy_end = self._energy_mj()
        self._nvml.nvmlShutdown()
        unavailable = dict(self._unsupported)
        energy = None
        if self._energy_start_mj is not None and energy_end is not None:
            energy = (energy_end - self._energy_start_mj) / 1000
        else:
            unavailable["energy_joules"] = "this GPU has no NVML total-energy counter"
        averages = {key: _mean(values) for key, values in self._values.items()}
        for key, value in averages.items():
            if value is None and key not in unavailable:
                unavailable[key] = "NVML returned no samples"
        reading = GpuReading(
            utilization_percent=averages["utilization_percent"],
            encoder_utilization_percent=averages["encoder_utilization_percent"],
            power_watts=averages["power_watts"],
            energy_joules=energy,
            samples=len(self._values["utilization_percent"]),
            unavailable=unavailable,
        )
        return reading, None

    def _run(self) -> None:
        while not self._halt.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        for key in _GPU_FIELDS:
            if key in self._unsupported:
                continue
            try:
                self._values[key].append(self._read(key))
            except self._nvml.NVMLError as exc:
                self._unsupported[key] = f"NVML cannot read it on this GPU: {exc}"

    def _read(self, key: str) -> float:
        nvml, handle = self._nvml, self._handle
        if key == "utilization_percent":
            return float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        if key == "encoder_utilization_percent":
            return float(nvml.nvmlDeviceGetEncoderUtilization(handle)[0])
        return float(nvml.nvmlDeviceGetPowerUsage(handle)) / 1000  # mW

    def _energy_mj(self) -> float | None:
        try:
            return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except self._nvml.NVMLError:
            return None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
