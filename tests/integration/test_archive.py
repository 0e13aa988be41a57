"""`ffleet master --victoriametrics-url`: completed results reach a real VictoriaMetrics server,
even one that was down when they were stored, and are queried back with their labels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.support import unavailable
from tests.processes import HttpServer, epoch

from .conftest import Fleet, free_port, wait_until

pytestmark = pytest.mark.integration

VICTORIA_METRICS = shutil.which("victoria-metrics")


def victoria_metrics(tmp: Path) -> HttpServer:
    if VICTORIA_METRICS is None:
        unavailable("victoria-metrics is not installed (Debian package victoria-metrics)")
    assert VICTORIA_METRICS is not None
    port = free_port()
    argv = [VICTORIA_METRICS, f"-httpListenAddr=127.0.0.1:{port}"]
    argv += [f"-storageDataPath={tmp / 'vm-data'}", "-retentionPeriod=100y"]
    return HttpServer("victoria-metrics", argv, port, tmp / "victoria-metrics.log")


def exported(server: HttpServer) -> list[dict[str, Any]]:
    server.api.get("/internal/force_flush").raise_for_status()  # make fresh samples searchable
    reply = server.api.get("/api/v1/export", params={"match[]": '{__name__=~"ffleet_result_.*"}'})
    reply.raise_for_status()
    return [json.loads(line) for line in reply.text.splitlines() if line.strip()]


def test_results_reach_victoriametrics_even_if_it_was_down_when_they_were_stored(
    fleet: Fleet, tmp_path: Path
) -> None:
    archive = victoria_metrics(tmp_path)
    master = fleet.master(extra_args=["--victoriametrics-url", archive.url])
    agent = fleet.agent(master)
    job = master.submit("320x240-h264", parameters={"duration": 1})
    done = master.wait_job(job["id"], ["completed", "failed"])
    assert done["status"] == "completed", done  # stored and answered with the archive down
    try:
        archive.start()
        series = wait_until(
            lambda: exported(archive), timeout=60, message="samples in VictoriaMetrics"
        )
        by_name = {entry["metric"]["__name__"]: entry for entry in series}
        assert {"ffleet_result_fps", "ffleet_result_cpu_seconds_per_frame"} <= set(by_name)
        fps = by_name["ffleet_result_fps"]
        labels = {key: value for key, value in fps["metric"].items() if key != "__name__"}
        metrics = done["result"]["metrics"]
        assert labels == {
            "node": agent.node_id,
            "scenario": "320x240-h264",
            "codec": "h264",
            "encoder": "libx264",
            "resolution": "320x240",
            "ffmpeg": metrics["ffmpeg_version"],
        }
        assert fps["values"] == [pytest.approx(metrics["fps"])]
        assert fps["timestamps"] == [pytest.approx(epoch(done["completed_at"]) * 1000, abs=1)]
        pushed = master.api.get("/metrics").text
        assert "ffleet_archive_queued_samples 0.0" in pushed
        assert "ffleet_archive_dropped_samples_total 0.0" in pushed
    finally:
        archive.close()
        print(archive.log_tail())
