"""The agent's own Prometheus endpoint (`ffleet agent --metrics-port P`), off by default.

It shows what only the agent sees while a job runs: its progress and fps, and what the FFmpeg
processes use right now (read with psutil when Prometheus scrapes, so an idle agent pays
nothing). Finished jobs add to counters: jobs by status, and the CPU time and energy their
results measured. It binds 127.0.0.1 unless told otherwise: it has no authentication.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil
from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ffleet.models import Progress, ResultSubmission

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunningJob:
    """What the exporter reads of one running job."""

    job_id: str
    scenario: str
    progress: Progress | None


def ffmpeg_usage(parent: psutil.Process) -> tuple[int, float, int]:
    """FFmpeg processes under `parent`: how many, CPU seconds used so far, resident bytes."""
    count, cpu, rss = 0, 0.0, 0
    for child in parent.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # it may exit between listing and reading
            if "ffmpeg" not in child.name().lower():
                continue
            times = child.cpu_times()
            memory = child.memory_info()
            count, cpu, rss = count + 1, cpu + times.user + times.system, rss + memory.rss
    return count, cpu, rss


class _LiveCollector(Collector):
    def __init__(self, node_id: Callable[[], str | None], running: Callable[[], list[RunningJob]]):
        self.node_id = node_id
        self.running = running
        self.process = psutil.Process()

    def collect(self) -> Iterator[Metric]:
        node = self.node_id()
        if node is not None:
            info = GaugeMetricFamily(
                "ffleet_agent_node_info", "The node id this agent serves as.", labels=["node"]
            )
            info.add_metric([node], 1)
            yield info
        jobs = self.running()
        yield GaugeMetricFamily("ffleet_agent_running_jobs", "Jobs running now.", value=len(jobs))
        progress = GaugeMetricFamily(
            "ffleet_agent_job_progress_ratio",
            "How far each running job is, 0 to 1.",
            labels=["job_id", "scenario"],
        )
        fps = GaugeMetricFamily(
            "ffleet_agent_job_fps",
            "Each running job's encoding speed.",
            labels=["job_id", "scenario"],
        )
        for job in jobs:
            seen = job.progress
            if seen is not None and seen.percent is not None:
                progress.add_metric([job.job_id, job.scenario], seen.percent / 100)
            if seen is not None and seen.fps is not None:
                fps.add_metric([job.job_id, job.scenario], seen.fps)
        yield progress
        yield fps
        count, cpu, rss = ffmpeg_usage(self.process)
        yield GaugeMetricFamily(
            "ffleet_agent_ffmpeg_processes", "FFmpeg processes running now.", value=count
        )
        yield GaugeMetricFamily(
            "ffleet_agent_ffmpeg_cpu_seconds",
            "CPU seconds (user + system) the running FFmpeg processes used so far.",
            value=cpu,
        )
        yield GaugeMetricFamily(
            "ffleet_agent_ffmpeg_rss_bytes",
            "Resident memory of the running FFmpeg processes.",
            value=rss,
        )


class ExporterError(Exception):
    """The metrics port cannot be served (in use, or an address this machine lacks)."""


class AgentExporter:
    """Every series of one agent; `job_finished` is called once per result it sends."""

    def __init__(
        self, node_id: Callable[[], str | None], running: Callable[[], list[RunningJob]]
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_LiveCollector(node_id, running))
        self.jobs = Counter(
            "ffleet_agent_jobs", "Jobs finished, by status.", ["status"], registry=self.registry
        )
        self.cpu = Counter(
            "ffleet_agent_job_cpu_seconds",
            "CPU seconds finished jobs' FFmpeg processes used.",
            registry=self.registry,
        )
        self.energy = Counter(
            "ffleet_agent_job_energy_joules",
            "CPU package energy finished jobs used, where RAPL measured it.",
            registry=self.registry,
        )
        for status in ("completed", "failed", "canceled"):
            self.jobs.labels(status)  # present at 0 from the start: rate() needs a first sample

    def job_finished(self, result: ResultSubmission) -> None:
        self.jobs.labels(result.status).inc()
        metrics = result.metrics
        user, system = metrics.get("cpu_user_seconds"), metrics.get("cpu_system_seconds")
        if isinstance(user, int | float) and isinstance(system, int | float):  # both, or none
            self.cpu.inc(user + system)
        energy = metrics.get("energy_joules")
        if isinstance(energy, int | float):
            self.energy.inc(energy)

    @contextlib.contextmanager
    def serving(self, host: str, port: int) -> Iterator[None]:
        """Serve /metrics on host:port from a background thread while the block runs."""
        try:
            server, thread = start_http_server(port, host, registry=self.registry)
        except OSError as exc:
            raise ExporterError(f"cannot serve metrics on {host}:{port}: {exc}") from None
        log.info("agent metrics on http://%s:%d/metrics", host, port)
        try:
            yield
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5.0)
