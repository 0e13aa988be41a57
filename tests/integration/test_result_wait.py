"""A result whose reply waits for the next job, with real masters and agents: the job it
receives, a stop on either side while it waits, and a reply lost with a job claimed into it."""

from __future__ import annotations

import json
import signal
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Fleet, MasterProcess, wait_until

pytestmark = pytest.mark.integration

TINY = "320x240-h264"
SHORT = {"duration": 1}
ENDLESS = {"duration": 600}  # ~30 s of encoding: long enough to be caught running
# Far below the 30 s the agent's result waits for a next job, far above a prompt stop.
PROMPT_S = 10.0


def served(master: MasterProcess, route: str, method: str) -> float:
    """Requests the master has answered on `route`, from its own /metrics."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(master.api.get("/metrics").text)
        for sample in family.samples
        if sample.name == "ffleet_http_requests_total"
        and (sample.labels["route"], sample.labels["method"]) == (route, method)
    )


def waiting(master: MasterProcess) -> float:
    """Job requests (polls and results) the master holds open now."""
    for family in text_string_to_metric_families(master.api.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "ffleet_long_poll_waiters":
                return sample.value
    raise AssertionError("no ffleet_long_poll_waiters gauge")


def test_a_slot_takes_its_next_job_in_its_results_reply_while_another_runs(
    fleet: Fleet,
) -> None:
    master = fleet.master()
    fleet.agent(master, extra_args=["--slots", "2"])
    short = master.submit(TINY, parameters=SHORT)
    endless = master.submit(TINY, parameters=ENDLESS)
    master.wait_job(short["id"], ["completed"])
    master.wait_job(endless["id"], ["running"])
    # One slot runs; the other's result waits at the master (both slots' polls claimed).
    wait_until(lambda: waiting(master) == 1, timeout=15, message="the result to wait")
    polls = served(master, "/jobs/next", "GET")

    following = master.submit(TINY, parameters=SHORT)

    assert master.wait_job(following["id"], ["completed", "failed"])["status"] == "completed"
    assert served(master, "/jobs/next", "GET") == polls  # it came in the result's reply
    assert master.job(endless["id"])["status"] == "running"
    assert master.api.post(f"/jobs/{endless['id']}/cancel").status_code == 200
    assert master.wait_job(endless["id"], ["canceled", "failed"])["status"] == "canceled"
    wait_until(lambda: waiting(master) == 2, timeout=15, message="both results to wait")

    # A stopping master hands out no more work: the held replies end at once, with no job.
    master.send_signal(signal.SIGTERM)
    master.wait(timeout=PROMPT_S)
    assert "2 waiting job request(s) answered" in master.log_text()


def test_an_agent_stopped_while_its_result_waits_stops_at_once_and_loses_nothing(
    fleet: Fleet,
) -> None:
    master = fleet.master()
    agent = fleet.agent(master)
    first = master.submit(TINY, parameters=SHORT)
    master.wait_job(first["id"], ["completed"])
    wait_until(lambda: waiting(master) == 1, timeout=15, message="the result to wait")
    assert served(master, "/jobs/next", "GET") == 1  # what waits is the result, not a poll

    agent.send_signal(signal.SIGTERM)

    assert agent.wait(timeout=PROMPT_S) == 0
    # The connection is gone: the job that wakes the held result is not claimed into it.
    later = master.submit(TINY, parameters=SHORT)
    wait_until(lambda: waiting(master) == 0, timeout=15, message="the held result to end")
    assert master.job(later["id"])["status"] == "pending"
    # Its reply never came, so the stop sent the result again, answered at once as the
    # duplicate it is: nothing is left in the spool for a next start that may never come.
    assert agent.spooled() == [] and agent.rejected() == []
    assert "(already stored)" in agent.log_text()
    agent.start()
    assert master.wait_job(later["id"], ["completed", "failed"])["status"] == "completed"


def test_a_job_claimed_into_a_lost_reply_is_handed_back(fleet: Fleet) -> None:
    master = fleet.master(node_timeout="60s")  # the node stays online: only the claim is lost
    registered = master.api.post("/nodes/register", json={"cpu_threads": 2, "slots": 1})
    node_id = registered.json()["id"]
    first = master.submit(TINY, parameters=SHORT)
    claimed = master.api.get("/jobs/next", params={"node_id": node_id}).json()
    assert claimed["id"] == first["id"]
    result = {"job_id": first["id"], "node_id": node_id, "attempt": 1, "status": "completed"}
    body = json.dumps({**result, "claim_next": True, "claim_wait": 30}).encode()

    with socket.create_connection(("127.0.0.1", master.port)) as lost:
        head = "POST /results HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        lost.sendall(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)
        wait_until(lambda: waiting(master) == 1, timeout=15, message="the result to wait")
        assert master.job(first["id"])["status"] == "completed"  # stored before the wait
        second = master.submit(TINY, parameters=SHORT)
        master.wait_job(second["id"], ["running"])  # claimed into the reply, never read

    again = master.api.post("/results", json={**result, "claim_next": True, "claim_wait": 0.5})
    assert again.json() == {"status": "success", "duplicate": True, "job": None}

    def handed_back() -> bool:
        beat = master.api.post(f"/nodes/{node_id}/heartbeat", json={"jobs": []})
        assert beat.status_code == 200
        return master.job(second["id"])["status"] == "pending"

    wait_until(handed_back, timeout=30, interval=0.5, message="the lost claim to come back")
    attempt = master.job(second["id"])["attempts"][-1]
    assert (attempt["outcome"], attempt["error"]) == (
        "released",
        "the agent never received the job",
    )
