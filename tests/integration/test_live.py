"""Live means live: with the default 30 s heartbeat, a running job's progress reaches the master
and a cancel reaches FFmpeg within about a second (the agent beats every --progress-interval
while a job runs), while an idle agent still sends nothing between its 30 s heartbeats."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Fleet, MasterProcess, wait_until

pytestmark = pytest.mark.integration

HEARTBEAT_ROUTE = "/nodes/{node_id}/heartbeat"
# Far below the 30 s heartbeat, far above the ~1 s expected: load cannot make it flaky, and
# a progress report that waited for the heartbeat cannot pass.
LIVE_BOUND_S = 10.0


def heartbeats(master: MasterProcess) -> float:
    """Heartbeat requests the master has served, from its own /metrics."""
    text = master.api.get("/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ffleet_http_requests_total" and sample.labels["route"] == HEARTBEAT_ROUTE
    )


def test_progress_and_cancel_are_live_and_idle_agents_stay_quiet(fleet: Fleet) -> None:
    master = fleet.master()
    agent = fleet.agent(master, heartbeat_interval="30s")
    time.sleep(2.0)
    assert heartbeats(master) == 0  # idle: nothing before the first 30 s heartbeat

    job = master.submit("320x240-h264", parameters={"duration": 600})
    running = master.wait_job(job["id"], ["running"])

    def progressed() -> bool:
        progress = master.job(job["id"]).get("progress") or {}
        return bool(progress.get("percent"))

    wait_until(progressed, timeout=LIVE_BOUND_S, message="progress without waiting for a beat")
    assert running["node_id"] == agent.node_id
    before_cancel = heartbeats(master)
    assert before_cancel >= 1

    asked = time.monotonic()
    master.api.post(f"/jobs/{job['id']}/cancel").raise_for_status()
    wait_until(lambda: not agent.ffmpeg_pids(), timeout=LIVE_BOUND_S, message="FFmpeg to end")
    killed_after = time.monotonic() - asked
    master.wait_job(job["id"], ["canceled"])
    print(f"cancel reached FFmpeg after {killed_after:.2f} s")
