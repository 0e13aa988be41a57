"""A real `ffleet master` process over real HTTP: the v1.0 flow, concurrent claims, and a
`kill -9` that must lose nothing."""

from __future__ import annotations

import signal
import sqlite3
import threading
from contextlib import closing
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Fleet
from tests.processes import MasterProcess

pytestmark = pytest.mark.integration


def register(api: httpx.Client, **extra: Any) -> str:
    body = {"type": "server", "cpu_threads": 8, "ram_bytes": 8 << 30, **extra}
    reply = api.post("/nodes/register", json=body)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def state(master: MasterProcess) -> tuple[Any, Any, Any]:
    """Everything a user can read back: nodes, jobs with attempts, results."""
    nodes = master.api.get("/nodes").json()
    jobs = master.api.get("/jobs").json()
    details = [master.job(job["id"]) for job in jobs["jobs"]]
    results = master.api.get("/results").json()
    for node in nodes["nodes"]:  # liveness is re-judged after a restart; the data is not
        node.pop("status")
    return nodes, details, results


def test_v1_flow_over_real_http(fleet: Fleet) -> None:
    master = fleet.master(store="memory")
    api = master.api
    health = api.get("/health").json()
    assert health["status"] == "healthy" and health["wakeups"] == "local"
    node_id = register(api)
    assert api.get("/nodes").json()["count"] == 1
    assert api.post(f"/nodes/{node_id}/heartbeat").status_code == 200
    assert api.post("/nodes/nope/heartbeat").status_code == 404
    job = api.post("/jobs", json={"scenario": "4K60-h264", "confidence": "auto"}).json()
    assert api.get("/jobs").json()["count"] == 1
    assert api.get("/jobs/next").status_code == 400
    claimed = api.get("/jobs/next", params={"node_id": node_id}).json()
    assert claimed["id"] == job["id"] and claimed["status"] == "running"
    assert api.get("/jobs/next", params={"node_id": node_id}).json() == {"job": None}
    done = api.post(
        "/results",
        json={"job_id": job["id"], "node_id": node_id, "status": "completed", "metrics": {"x": 1}},
    )
    assert done.status_code == 200 and done.json() == {"status": "success"}
    assert master.job(job["id"])["status"] == "completed"
    assert "job" in master.log_text() and node_id in master.log_text()


def test_concurrent_http_claims_hand_out_each_job_once(fleet: Fleet) -> None:
    # The claimers never heartbeat: the node timeout must outlast the whole run, or the reaper
    # rightly hands their jobs out again on a slow machine.
    master = fleet.master(node_timeout="10m")
    total = 1000
    for start in range(0, total, 250):
        batch = [{"scenario": "360p-h264"} for _ in range(start, start + 250)]
        assert master.api.post("/jobs/batch", json={"jobs": batch}).status_code == 201
    claimed: list[str] = []
    lock = threading.Lock()
    failures: list[str] = []

    def claimer() -> None:
        with httpx.Client(base_url=master.url, timeout=30) as api:
            node_id = register(api)
            while True:
                reply = api.get("/jobs/next", params={"node_id": node_id})
                if reply.status_code != 200:
                    failures.append(reply.text)
                    return
                body = reply.json()
                if "id" not in body:
                    return
                with lock:
                    claimed.append(body["id"])

    threads = [threading.Thread(target=claimer) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures
    assert len(claimed) == total and len(set(claimed)) == total
    assert master.api.get("/jobs", params={"status": "running"}).json()["total"] == total


def test_kill_9_and_restart_keeps_every_node_job_status_and_result(fleet: Fleet) -> None:
    master = fleet.master(node_timeout="1h")
    api = master.api
    node_id = register(api, labels={"rack": "r1"})
    ids = [master.submit("720p-h264", parameters={"duration": 2})["id"] for _ in range(6)]
    done, failed, running = (
        api.get("/jobs/next", params={"node_id": node_id}).json() for _ in "abc"
    )
    api.post(
        "/results",
        json={
            "job_id": done["id"],
            "node_id": node_id,
            "attempt": 1,
            "status": "completed",
            "metrics": {"fps": 42.0},
            "analyzer_output": {"recommendation": "fine"},
        },
    )
    api.post(
        "/results",
        json={
            "job_id": failed["id"],
            "node_id": node_id,
            "attempt": 1,
            "status": "failed",
            "error": "Unknown encoder",
        },
    )
    api.post(f"/jobs/{ids[-1]}/cancel")
    before = state(master)

    master.restart()  # SIGKILL, then the same port and database

    after = state(master)
    assert after == before
    statuses = {job["id"]: job["status"] for job in after[1]}
    assert statuses[done["id"]] == "completed" and statuses[failed["id"]] == "failed"
    assert statuses[running["id"]] == "running" and statuses[ids[-1]] == "canceled"
    assert master.job(done["id"])["result"]["metrics"] == {"fps": 42.0}
    # The attempt that was running survives the restart and can still report.
    reply = api.post(
        "/results",
        json={"job_id": running["id"], "node_id": node_id, "attempt": 1, "status": "completed"},
    )
    assert reply.status_code == 200


def test_kill_9_right_after_a_reply_finds_its_change_in_the_file(fleet: Fleet) -> None:
    """Concurrent submissions share a commit (group_commit.py); the master is killed the moment
    the 150th reply arrives. Every job a reply acknowledged is in the database file: no reply
    leaves before its commit, whichever request of the group it answers."""
    master = fleet.master()
    acknowledged: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    def submitter() -> None:
        with httpx.Client(base_url=master.url, timeout=10) as api:
            while True:
                try:
                    reply = api.post("/jobs", json={"scenario": "360p-h264"})
                except httpx.TransportError:
                    return  # killed: this request may or may not have been stored
                if reply.status_code != 201:
                    return
                with lock:
                    acknowledged.append(reply.json()["id"])
                    if len(acknowledged) == 150:
                        master.send_signal(signal.SIGKILL)
                        enough.set()

    threads = [threading.Thread(target=submitter) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert enough.is_set(), master.log_tail()
    master.kill()  # reap it
    path = master.store.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM jobs")}
    assert not set(acknowledged) - stored
