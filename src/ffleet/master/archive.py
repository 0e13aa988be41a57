"""Completed results' figures pushed to VictoriaMetrics (`ffleet master --victoriametrics-url`).

Each completed result becomes a few samples (fps, CPU-seconds and energy per frame, quality,
bitrate, wall time) labelled with what the result is comparable by (node, scenario, codec,
encoder, resolution, FFmpeg build) and stamped with the job's completion time, sent in
Prometheus text format to VictoriaMetrics' `/api/v1/import/prometheus`.

The result is already stored when it is queued here, so the archive can only ever miss a copy:
the request never waits for VictoriaMetrics, the queue is bounded (when full, the newest
samples are dropped and counted), and a failed push is retried with backoff, oldest first.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ffleet.models import ResultSubmission
from ffleet.scenarios import ScenarioError, parse_scenario
from ffleet.store import JobAfterResult

log = logging.getLogger("ffleet.master")

IMPORT_PATH = "/api/v1/import/prometheus"
QUEUE_LIMIT = 100_000  # samples: about 10 MB, hours of a large fleet's results
BATCH_LIMIT = 5_000
RETRY_FIRST_S = 1.0
RETRY_CAP_S = 60.0
PUSH_TIMEOUT_S = 10.0

# Every sample name the archive writes (the dashboards' test checks their queries against it).
RESULT_METRICS = (
    "ffleet_result_fps",
    "ffleet_result_cpu_seconds_per_frame",
    "ffleet_result_energy_joules_per_frame",
    "ffleet_result_quality_score",
    "ffleet_result_bitrate_bps",
    "ffleet_result_wall_seconds",
)


def _number(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _per_frame(total: float | None, frames: float | None) -> float | None:
    return None if total is None or not frames else total / frames


def figures(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The figures of one result's `metrics` that were measured, by metric name."""
    frames = _number(metrics, "frames")
    user, system = _number(metrics, "cpu_user_seconds"), _number(metrics, "cpu_system_seconds")
    cpu = None if user is None or system is None else user + system
    values = {
        "ffleet_result_fps": _number(metrics, "fps"),
        "ffleet_result_cpu_seconds_per_frame": _per_frame(cpu, frames),
        "ffleet_result_energy_joules_per_frame": _per_frame(
            _number(metrics, "energy_joules"), frames
        ),
        "ffleet_result_quality_score": _number(metrics, "quality_score"),
        "ffleet_result_bitrate_bps": _number(metrics, "bitrate_bps"),
        "ffleet_result_wall_seconds": _number(metrics, "wall_seconds"),
    }
    return {name: value for name, value in values.items() if value is not None}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def result_labels(result: ResultSubmission, job: JobAfterResult) -> dict[str, str]:
    try:
        scenario = parse_scenario(job.scenario)
        codec, resolution = scenario.codec, f"{scenario.width}x{scenario.height}"
    except ScenarioError:
        codec = resolution = "unknown"
    metrics = result.metrics
    labels = {
        "node": result.node_id,
        "scenario": job.scenario,
        "codec": codec,
        "encoder": str(metrics.get("encoder") or "unknown"),
        "resolution": resolution,
        "ffmpeg": str(metrics.get("ffmpeg_version") or "unknown"),
    }
    if metrics.get("quality_metric"):
        labels["quality_metric"] = str(metrics["quality_metric"])
    return labels


def sample_lines(result: ResultSubmission, job: JobAfterResult, completed_at: float) -> list[str]:
    """One completed result as Prometheus text lines with a millisecond timestamp."""
    labels = result_labels(result, job)
    text = ",".join(f'{key}="{_escape(value)}"' for key, value in sorted(labels.items()))
    stamp = int(completed_at * 1000)
    return [
        f"{name}{{{text}}} {value!r} {stamp}" for name, value in figures(result.metrics).items()
    ]


class ResultArchive:
    """A bounded queue of sample lines and the task that pushes them."""

    def __init__(self, url: str, client: httpx.AsyncClient | None = None) -> None:
        self.url = url.rstrip("/") + IMPORT_PATH
        self.client = client or httpx.AsyncClient(timeout=PUSH_TIMEOUT_S)
        self.queue: deque[str] = deque()
        self.dropped = 0
        self.pushed = 0
        self._ready = asyncio.Event()

    def add(self, result: ResultSubmission, job: JobAfterResult, completed_at: float) -> None:
        """Queue a completed result's samples; never waits, drops what does not fit."""
        lines = sample_lines(result, job, completed_at)
        room = QUEUE_LIMIT - len(self.queue)
        if len(lines) > room:
            if self.dropped == 0:
                log.warning("VictoriaMetrics queue full: dropping samples until it drains")
            self.dropped += len(lines) - room
            lines = lines[:room]
        self.queue.extend(lines)
        if lines:
            self._ready.set()

    async def run(self) -> None:
        """Push batches for as long as the app runs; a failed batch is sent again."""
        delay = RETRY_FIRST_S
        while True:
            await self._ready.wait()
            batch = [self.queue[i] for i in range(min(BATCH_LIMIT, len(self.queue)))]
            try:
                reply = await self.client.post(self.url, content="\n".join(batch) + "\n")
                reply.raise_for_status()
            except httpx.HTTPError as exc:
                log.warning("VictoriaMetrics push failed (%s); retrying in %g s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP_S)
                continue
            delay = RETRY_FIRST_S
            for _ in batch:
                self.queue.popleft()
            self.pushed += len(batch)
            if not self.queue:
                self._ready.clear()

    async def close(self) -> None:
        await self.client.aclose()


class ArchiveCollector(Collector):
    """The archive's own health on the master's /metrics."""

    def __init__(self, archive: ResultArchive) -> None:
        self.archive = archive

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "ffleet_archive_queued_samples",
            "Result samples waiting to be pushed to VictoriaMetrics.",
            value=len(self.archive.queue),
        )
        yield CounterMetricFamily(
            "ffleet_archive_pushed_samples",
            "Result samples VictoriaMetrics accepted.",
            value=self.archive.pushed,
        )
        yield CounterMetricFamily(
            "ffleet_archive_dropped_samples",
            "Result samples dropped because the queue was full (the results stay stored).",
            value=self.archive.dropped,
        )
