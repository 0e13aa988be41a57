"""Several `ffleet master` processes on one PostgreSQL database serving one fleet: wake-ups
across masters, one leader, agents that fail over, and a soak under kill -9.

Recheck intervals are long (30 s) so that only a NOTIFY can explain a quick claim across
masters; node timeouts are short (3 s) so that a lost node or leader shows within a test.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import store_url
from tests.processes import epoch

from .conftest import AgentProcess, Fleet, MasterProcess, wait_until

pytestmark = pytest.mark.integration

TINY = "320x240-h264"
LEASE = "2s"
# The soak's length: short by default to keep the suite's time; CI or a person may ask more.
SOAK_S = float(os.environ.get("FFLEET_SOAK_S", "30"))


@pytest.fixture
def database(tmp_path: Path) -> str:
    return store_url("postgres", tmp_path)


def start_masters(
    fleet: Fleet, database: str, count: int, lease: str = LEASE
) -> list[MasterProcess]:
    masters = [
        fleet.master(
            name=f"master{i}",
            store=database,
            extra_args=["--leader-lease", lease, "--recheck-interval", "30s"],
        )
        for i in range(count)
    ]
    for master in masters:  # the listener's probe answers a moment after the master is up
        wait_until(
            lambda m=master: health(m)["wakeups"] == "notify",
            timeout=10,
            interval=0.1,
            message=lambda m=master: f"LISTEN/NOTIFY wake-ups\n{m.log_tail()}",
        )
    return masters


def health(master: MasterProcess) -> dict[str, Any]:
    found: dict[str, Any] = master.api.get("/health").json()
    return found


def agreed_leader(
    masters: list[MasterProcess], timeout: float = 20.0, other_than: str | None = None
) -> str:
    """The master every one of `masters` names as leader, once they agree on one (not
    `other_than`)."""

    def agreed() -> str | None:
        named = {health(m)["leader"] for m in masters}
        return named.pop() if len(named) == 1 and not named & {None, other_than} else None

    return wait_until(agreed, timeout=timeout, interval=0.1, message="masters agreeing")


def leading(masters: list[MasterProcess], leader: str) -> MasterProcess:
    return next(m for m in masters if health(m)["master"] == leader)


def test_a_job_submitted_to_one_master_wakes_an_agent_waiting_on_another(
    fleet: Fleet, database: str
) -> None:
    first, second = start_masters(fleet, database, 2)
    fleet.agent(second)  # long-polls `second` only
    time.sleep(1.0)  # the agent's long-poll is waiting now
    job = first.submit(TINY, parameters={"duration": 1})
    done = first.wait_job(job["id"], ["completed"], timeout=30)
    # The recheck would take up to 30 s; the wake-up (LISTEN/NOTIFY) takes milliseconds.
    assert epoch(done["started_at"]) - epoch(done["created_at"]) < 5.0, done


def test_kill_9_of_the_leader_hands_the_lead_on_and_its_reaper_requeues_a_dead_node(
    fleet: Fleet, database: str
) -> None:
    masters = start_masters(fleet, database, 3)
    leader = agreed_leader(masters)
    others = [m for m in masters if health(m)["master"] != leader]
    # A node that claims a job and then falls silent, registered through a follower.
    node = (
        others[0]
        .api.post(
            "/nodes/register",
            json={"address": "10.9.9.9", "type": "server", "cpu_threads": 4, "ram_bytes": 1 << 30},
        )
        .json()
    )
    job = others[0].submit(TINY, parameters={"duration": 1})
    claimed = others[1].api.get("/jobs/next", params={"node_id": node["id"]}).json()
    assert claimed["id"] == job["id"]
    killed_at = time.monotonic()
    leading(masters, leader).kill()
    agreed_leader(others, timeout=15, other_than=leader)
    assert time.monotonic() - killed_at < 2.0 + 3.0  # the lease, and a little slack for load
    requeued = others[0].wait_job(job["id"], ["pending"], timeout=20)
    # One attempt, ended once: never two leaders acting on the same job.
    assert [a["outcome"] for a in requeued["attempts"]] == ["failed"], requeued
    assert requeued["retry_count"] == 1


def test_a_leader_stopped_cleanly_resigns_and_another_leads_at_once(
    fleet: Fleet, database: str
) -> None:
    masters = start_masters(fleet, database, 2, lease="60s")
    leader = agreed_leader(masters)
    follower = next(m for m in masters if health(m)["master"] != leader)
    stopped_at = time.monotonic()
    leading(masters, leader).stop()
    assert agreed_leader([follower], 10, other_than=leader) == health(follower)["master"]
    assert time.monotonic() - stopped_at < 10.0  # far within the 60 s lease


def test_an_agent_fails_over_when_its_master_dies_and_loses_none_of_its_work(
    fleet: Fleet, database: str
) -> None:
    first, second = start_masters(fleet, database, 2)
    agent = fleet.agent(first, also=[second])
    job = second.submit(TINY, parameters={"duration": 60})
    second.wait_job(job["id"], ["running"], timeout=30)
    first.kill()  # the agent's master, mid-job, for longer than the node timeout
    done = second.wait_job(job["id"], ["completed"], timeout=60)
    assert [a["outcome"] for a in done["attempts"]] == ["completed"], done
    follow = second.submit(TINY, parameters={"duration": 1})
    second.wait_job(follow["id"], ["completed"], timeout=30)
    assert agent.undelivered(second) == [] and agent.rejected() == []


def test_soak_masters_and_agents_killed_at_random_lose_and_double_no_job(
    fleet: Fleet, database: str
) -> None:
    masters = start_masters(fleet, database, 3)
    agents = [
        fleet.agent(masters[i % 3], also=[m for m in masters if m is not masters[i % 3]])
        for i in range(4)
    ]
    rng = random.Random(12)
    acknowledged: list[str] = []
    kills = 0
    clients = [httpx.Client(base_url=m.url, timeout=5.0) for m in masters]
    end = time.monotonic() + SOAK_S
    next_kill = time.monotonic() + 3.0
    try:
        while time.monotonic() < end:
            target = rng.randrange(3)
            body = {"scenario": TINY, "parameters": {"duration": 1}}
            try:
                reply = clients[target].post(
                    "/jobs", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
                )
            except httpx.TransportError:
                reply = None  # that master is down: this job was never acknowledged
            if reply is not None and reply.status_code == 201:
                acknowledged.append(reply.json()["id"])
            if time.monotonic() >= next_kill:
                victim: MasterProcess | AgentProcess = rng.choice([*masters, *agents])
                victim.kill()  # with the FFmpeg it ran: the machine is gone
                kills += 1
                time.sleep(rng.uniform(0.2, 1.5))
                victim.start()
                next_kill = time.monotonic() + rng.uniform(2.0, 5.0)
            time.sleep(0.3)
    finally:
        for client in clients:
            client.close()
    print(f"soak: {len(acknowledged)} jobs acknowledged, {kills} processes killed")
    assert kills >= 3 and len(acknowledged) >= 20
    for job_id in acknowledged:
        done = masters[0].wait_job(job_id, ["completed"], timeout=120)
        outcomes = [a["outcome"] for a in done["attempts"]]
        assert outcomes.count("completed") == 1, done
        results = masters[0].api.get("/results", params={"job_id": job_id}).json()["results"]
        assert len(results) == 1, results
    wait_until(
        lambda: all(agent.undelivered(masters[0]) == [] for agent in agents),
        timeout=30,
        message="every spooled result delivered",
    )
