"""`ffleet agent --metrics-port`: a running job's progress, fps and FFmpeg usage, then the count
of finished jobs, read from the agent's own endpoint as Prometheus scrapes it."""

from __future__ import annotations

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Fleet, free_port, wait_until

pytestmark = pytest.mark.integration


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_agent_metrics_show_the_running_job_then_count_it(fleet: Fleet) -> None:
    master = fleet.master()
    port = free_port()
    agent = fleet.agent(master, extra_args=["--metrics-port", str(port)])
    url = f"http://127.0.0.1:{port}/metrics"
    idle = scrape(url)
    assert idle["ffleet_agent_running_jobs"] == [({}, 0.0)]
    assert idle["ffleet_agent_node_info"] == [({"node": agent.node_id}, 1.0)]
    job = master.submit("320x240-h264", parameters={"duration": 600})

    def running() -> dict[str, list[tuple[dict[str, str], float]]] | None:
        seen = scrape(url)
        progress = seen.get("ffleet_agent_job_progress_ratio", [])
        fps = seen.get("ffleet_agent_job_fps", [])
        busy = seen["ffleet_agent_ffmpeg_processes"][0][1] >= 1
        return seen if busy and progress and progress[0][1] > 0 and fps and fps[0][1] > 0 else None

    seen = wait_until(running, timeout=30, message="the job's progress on the agent's endpoint")
    labels, ratio = seen["ffleet_agent_job_progress_ratio"][0]
    assert labels == {"job_id": job["id"], "scenario": "320x240-h264"} and 0 < ratio < 1
    assert seen["ffleet_agent_job_fps"][0][1] > 0
    assert seen["ffleet_agent_ffmpeg_rss_bytes"][0][1] > 1 << 20
    assert seen["ffleet_agent_ffmpeg_cpu_seconds"][0][1] > 0

    httpx.post(f"{master.url}/jobs/{job['id']}/cancel", timeout=5).raise_for_status()
    master.wait_job(job["id"], ["canceled"])
    done = scrape(url)
    counted = {labels["status"]: value for labels, value in done["ffleet_agent_jobs_total"]}
    assert counted == {"completed": 0, "failed": 0, "canceled": 1}
    assert done["ffleet_agent_running_jobs"] == [({}, 0.0)]
    assert done["ffleet_agent_job_cpu_seconds_total"][0][1] > 0


def test_agent_metrics_listen_on_loopback_only_by_default(fleet: Fleet) -> None:
    master = fleet.master()
    port = free_port()
    fleet.agent(master, extra_args=["--metrics-port", str(port)])
    listening = [
        conn.laddr
        for conn in psutil.net_connections("tcp")
        if conn.status == "LISTEN" and conn.laddr.port == port
    ]
    assert [address.ip for address in listening] == ["127.0.0.1"]
