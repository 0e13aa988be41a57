"""Fault injection: real masters, agents and FFmpeg, broken on purpose, judged by the API.

Each test starts its own fleet, injects one fault (`kill -9` of an agent or of the master,
`SIGSTOP`, an input that never ends, a cancel, random kills under load) and then checks the
final state the way an operator would: job status, attempts and stored results over HTTP,
plus the agent's work dir (spool) and its processes. The promises under test are the README's
Reliability section: no submitted job is lost, none completes twice, a stale result is
refused, and a hung or canceled FFmpeg does not outlive its job.

Timings are shrunk so that faults recover in seconds: a node timeout of 2-3 s, a backoff of
200 ms (capped at 1 s) and agents that beat every 300 ms. Jobs are tiny test-pattern encodes.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.integration.conftest import Fleet
from tests.processes import AgentProcess, MasterProcess, epoch, wait_until

pytestmark = pytest.mark.integration

TINY = "160x90-h264"
SMALL = "320x240-h264"
# About 2-3 s of encoding at 320x240 on a 2-core machine (~20x realtime): long enough to be
# caught mid-job, short enough to finish well inside a test.
A_FEW_SECONDS = {"duration": 50}
NEVER_ENDS = {"duration": 3600}
FAST_RETRY = ("--backoff-base", "200ms", "--backoff-cap", "1s")
BEAT = "300ms"
FINAL = ("completed", "failed", "canceled")


# ---------------------------------------------------------------------------- helpers


def listed(master: MasterProcess, collection: str, **params: str) -> list[dict[str, Any]]:
    """GET /jobs or /results (with these query parameters): the items of the reply."""
    reply = master.api.get(f"/{collection}", params=params)
    assert reply.status_code == 200, reply.text
    found: list[dict[str, Any]] = reply.json()[collection]
    return found


def count_by_status(master: MasterProcess) -> collections.Counter[str]:
    return collections.Counter(job["status"] for job in listed(master, "jobs"))


def agent_of(agents: Iterable[AgentProcess], node_id: str | None) -> AgentProcess:
    (found,) = [agent for agent in agents if agent.node_id == node_id]
    return found


def ffmpeg_using(work_dir: Path) -> list[int]:
    """Every live FFmpeg on this machine working in `work_dir` (its output file is there),
    whoever its parent is now: one orphaned by a dead agent is found too."""
    marker = str(work_dir)
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        info = proc.info
        if info["status"] == psutil.STATUS_ZOMBIE or "ffmpeg" not in (info["name"] or ""):
            continue
        if any(marker in arg for arg in info["cmdline"] or ()):
            found.append(proc.pid)
    return found


def fast_master(fleet: Fleet, node_timeout: str = "2s") -> MasterProcess:
    """A master that declares a silent node lost after `node_timeout` and retries fast."""
    return fleet.master(node_timeout=node_timeout, extra_args=list(FAST_RETRY))


def fast_agent(fleet: Fleet, master: MasterProcess, name: str) -> AgentProcess:
    return fleet.agent(master, name=name, heartbeat_interval=BEAT)


def caught_mid_encode(
    fleet: Fleet,
) -> tuple[MasterProcess, dict[str, Any], AgentProcess, AgentProcess]:
    """A fast master, two agents and a job of a few seconds, returned once its FFmpeg runs:
    (master, job, the agent running it, the other agent)."""
    master = fast_master(fleet)
    agents = [fast_agent(fleet, master, "agent-a"), fast_agent(fleet, master, "agent-b")]
    job = master.submit(SMALL, parameters=A_FEW_SECONDS)
    running = master.wait_job(job["id"], ["running"], timeout=30)
    busy = agent_of(agents, running["node_id"])
    (idle,) = [agent for agent in agents if agent is not busy]
    wait_until(busy.ffmpeg_pids, timeout=15, message="FFmpeg to start on the busy agent")
    return master, job, busy, idle


# ---------------------------------------------------------------------------- agent faults


def test_agent_killed_mid_job_the_job_completes_on_another(fleet: Fleet) -> None:
    master, job, victim, survivor = caught_mid_encode(fleet)

    victim.kill()  # SIGKILL, and its FFmpeg with it: the machine is gone

    done = master.wait_job(job["id"], FINAL, timeout=60)
    assert done["status"] == "completed", done
    assert done["node_id"] == survivor.node_id
    first, second = done["attempts"]
    assert (first["node_id"], first["outcome"]) == (victim.node_id, "failed"), first
    assert "stopped sending heartbeats" in first["error"], first
    assert (second["node_id"], second["outcome"]) == (survivor.node_id, "completed"), second
    (result,) = listed(master, "results", job_id=job["id"])  # nothing from the dead attempt
    assert (result["status"], result["attempt"], result["node_id"]) == (
        "completed",
        2,
        survivor.node_id,
    )
    assert result["metrics"]["frames"] > 0
    nodes = {node["id"]: node["status"] for node in master.nodes()}
    assert nodes[victim.node_id] == "offline"
    assert not ffmpeg_using(victim.work_dir)


def test_stopped_agent_comes_back_and_its_stale_result_is_refused(fleet: Fleet) -> None:
    """SIGSTOP past the node timeout: the master re-runs the job elsewhere; the frozen agent's
    late result (for an attempt that ended) gets a 409 and lands in spool/rejected/.

    Only the agent is stopped: its FFmpeg runs in its own session and finishes meanwhile, so
    the agent has a finished result the moment it resumes. The master is paused while the
    agent wakes up, so the agent's first heartbeat cannot tell it to abandon the attempt
    before the worker has spooled and sent the result: the 409 path is taken every time,
    not only when the worker wins a race against the heartbeat thread.
    """
    master, job, frozen, other = caught_mid_encode(fleet)

    frozen.send_signal(signal.SIGSTOP)
    try:
        done = master.wait_job(job["id"], FINAL, timeout=60)
        assert done["status"] == "completed", done
        assert done["node_id"] == other.node_id
        assert [a["outcome"] for a in done["attempts"]] == ["failed", "completed"], done
        assert "stopped sending heartbeats" in done["attempts"][0]["error"]
        # The frozen agent's FFmpeg ran to its end too (a zombie until the agent reaps it).
        wait_until(
            lambda: not frozen.ffmpeg_pids(), timeout=60, message="the first FFmpeg to finish"
        )
        assert frozen.spooled() == []

        master.send_signal(signal.SIGSTOP)
        try:
            frozen.send_signal(signal.SIGCONT)
            wait_until(frozen.spooled, timeout=15, message="the stale result to be spooled")
        finally:
            master.send_signal(signal.SIGCONT)
    finally:
        frozen.send_signal(signal.SIGCONT)

    stale = f"{job['id']}-1.json"
    wait_until(
        lambda: [p.name for p in frozen.rejected()] == [stale],
        timeout=30,
        message=lambda: f"the stale result in spool/rejected/\n{frozen.log_tail()}",
    )
    assert frozen.spooled() == []
    # The agent logs the refusal just after it moved the file.
    refused = wait_until(
        lambda: [line for line in frozen.log_text().splitlines() if "refused by the" in line],
        timeout=10,
        message=lambda: f"the agent to log the refusal\n{frozen.log_tail()}",
    )
    assert "409" in refused[0] and "not current" in refused[0], refused
    kept = json.loads((frozen.work_dir / "spool" / "rejected" / stale).read_text())
    assert (kept["attempt"], kept["status"]) == (1, "completed")
    # The job is as it was: completed once, by the other node; the stale result is not stored.
    again = master.job(job["id"])
    assert again["status"] == "completed" and again["node_id"] == other.node_id
    (result,) = listed(master, "results", job_id=job["id"])
    assert (result["attempt"], result["node_id"]) == (2, other.node_id)
    # The frozen agent is a working node again.
    wait_until(
        lambda: {n["id"]: n["status"] for n in master.nodes()}[frozen.node_id] == "available",
        timeout=15,
        message="the resumed node to be available",
    )
    assert frozen.running


def test_endless_input_times_out_retries_with_backoff_then_fails(fleet: Fleet) -> None:
    master = fleet.master(node_timeout="3s", extra_args=["--backoff-base", "500ms"])
    agent = fast_agent(fleet, master, "agent")
    job = master.submit(TINY, parameters=NEVER_ENDS, timeout_s=2, max_attempts=2)

    done = master.wait_job(job["id"], FINAL, timeout=60)

    assert done["status"] == "failed", done
    assert "timed out" in done["error"], done
    assert done["retry_count"] == 2
    first, second = done["attempts"]
    for attempt in (first, second):
        assert attempt["outcome"] == "failed", attempt
        assert "timed out after 2 s" in attempt["error"], attempt
        assert attempt["node_id"] == agent.node_id
    # The retry waited at least the fixed half of the first backoff step (500 ms / 2).
    assert epoch(second["started_at"]) - epoch(first["ended_at"]) >= 0.25, done["attempts"]
    assert not any(r["status"] == "completed" for r in listed(master, "results", job_id=job["id"]))
    # Both FFmpegs were killed at the bound, and the agent is free for the next job.
    wait_until(lambda: not ffmpeg_using(agent.work_dir), timeout=15, message="FFmpeg killed")
    follow = master.submit(TINY, parameters={"duration": 1})
    after = master.wait_job(follow["id"], FINAL, timeout=60)
    assert after["status"] == "completed", after
    assert after["node_id"] == agent.node_id
    assert agent.running
    assert not ffmpeg_using(agent.work_dir)


def test_cancel_stops_ffmpeg_and_the_agent_takes_the_next_job(fleet: Fleet) -> None:
    master = fast_master(fleet)
    agent = fast_agent(fleet, master, "agent")
    job = master.submit(SMALL, parameters=NEVER_ENDS)
    master.wait_job(job["id"], ["running"], timeout=30)
    following = master.submit(TINY, parameters={"duration": 1})  # queued behind it
    pids = wait_until(agent.ffmpeg_pids, timeout=15, message="FFmpeg to start")
    ffmpeg = [psutil.Process(pid) for pid in pids]

    canceled = master.api.post(f"/jobs/{job['id']}/cancel")
    assert canceled.status_code == 200, canceled.text

    wait_until(
        lambda: not any(proc.is_running() for proc in ffmpeg),
        timeout=10,
        message="the canceled FFmpeg to exit within 10 s",
    )
    done = master.wait_job(job["id"], FINAL, timeout=15)
    assert done["status"] == "canceled", done
    assert done["result"]["status"] == "canceled"
    assert done["attempts"][-1]["outcome"] == "canceled"
    after = master.wait_job(following["id"], FINAL, timeout=30)
    assert after["status"] == "completed", after
    assert after["node_id"] == agent.node_id
    assert not ffmpeg_using(agent.work_dir)


# ---------------------------------------------------------------------------- master faults


class Submitter(threading.Thread):
    """Submits jobs one by one over its own HTTP connection until `target` were accepted,
    tolerating a master that is down; only a 201 counts as submitted."""

    def __init__(self, url: str, target: int, job: dict[str, Any]) -> None:
        super().__init__(name="submitter", daemon=True)
        self.url = url
        self.target = target
        self.job = job
        self.accepted: list[str] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5.0) as api:
            while len(self.accepted) < self.target and not self.stop.is_set():
                try:
                    reply = api.post("/jobs", json=self.job)
                except httpx.TransportError as exc:  # no reply: not counted
                    self.errors.append(repr(exc))
                    self.stop.wait(0.1)
                    continue
                if reply.status_code == 201:
                    self.accepted.append(reply.json()["id"])
                else:
                    self.errors.append(f"{reply.status_code} {reply.text}")
                self.stop.wait(0.05)


def test_master_kill_9_under_load_loses_and_repeats_nothing(fleet: Fleet) -> None:
    """kill -9 of the master (SQLite) while jobs stream in and two agents work them off, then
    a restart on the same port and database. Every job whose submission got a 201 completes,
    exactly once; a submission that got no reply is not counted (it may or may not exist)."""
    master = fast_master(fleet, "3s")
    agents = [fast_agent(fleet, master, "agent-a"), fast_agent(fleet, master, "agent-b")]
    # Jobs of a few tenths of a second each: submissions outpace the two agents, so the kill
    # finds jobs queued, jobs running and results on their way.
    job = {"scenario": SMALL, "parameters": {"duration": 6}}
    submitter = Submitter(master.url, target=40, job=job)
    submitter.start()
    try:
        # Kill it mid-stream: jobs queued, some running, results flowing.
        wait_until(
            lambda: len(submitter.accepted) >= 15 and count_by_status(master)["completed"] >= 3,
            timeout=60,
            message="submissions and results to flow",
        )
        before = len(submitter.accepted)
        master.kill()  # SIGKILL mid-stream
        wait_until(lambda: submitter.errors, timeout=10, message="the submitter to see the outage")
        master.start()  # same port, same database
        submitter.join(timeout=90)
        assert not submitter.is_alive(), f"submitter stuck at {len(submitter.accepted)}"
    finally:
        submitter.stop.set()
    accepted = submitter.accepted
    assert before < len(accepted) == 40  # it kept going after the restart

    def settled() -> bool:
        statuses = {job["id"]: job["status"] for job in listed(master, "jobs")}
        return all(statuses.get(job_id) in FINAL for job_id in accepted)

    wait_until(
        settled,
        timeout=90,
        interval=0.5,
        message=lambda: f"all jobs to finish: {count_by_status(master)}",
    )
    statuses = {job["id"]: job["status"] for job in listed(master, "jobs")}
    not_completed = {i: statuses.get(i) for i in accepted if statuses.get(i) != "completed"}
    assert not not_completed, f"accepted jobs lost or not completed: {not_completed}"
    completed = collections.Counter(
        r["job_id"] for r in listed(master, "results", limit="1000") if r["status"] == "completed"
    )
    twice = {job_id: n for job_id, n in completed.items() if n > 1}
    assert not twice, f"completed more than once: {twice}"
    assert all(completed[job_id] == 1 for job_id in accepted)
    # Whatever an agent kept through the outage was delivered.
    wait_until(
        lambda: not any(a.undelivered(master) for a in agents),
        timeout=15,
        message="spools delivered",
    )
    assert all(agent.running for agent in agents)


# ---------------------------------------------------------------------------- soak


# A longer soak on demand: FFLEET_SOAK_JOBS=3000 FFLEET_SOAK_BUDGET_S=600 FFLEET_SOAK_SEED=7
SOAK_JOBS = int(os.environ.get("FFLEET_SOAK_JOBS", "600"))
SOAK_SEED = int(os.environ.get("FFLEET_SOAK_SEED", "20240611"))
SOAK_BUDGET_S = float(os.environ.get("FFLEET_SOAK_BUDGET_S", "110"))


def test_soak_random_agent_kills_lose_and_repeat_nothing(fleet: Fleet, tmp_path: Path) -> None:
    """600 tiny jobs over 3 agents while a seeded RNG kill -9s and restarts agents (same work
    dir: same node id and spool), one at a time, every 0.3-1.2 s, each back after 0.1-2.5 s
    (before or after the node timeout). Every job must complete exactly once.

    max_attempts is raised to 5: a job unlucky enough to be on two or three killed agents must
    not be failed by the retry budget, since this checks loss and duplication, not the policy.
    """
    rng = random.Random(SOAK_SEED)
    master = fast_master(fleet)
    agents = [fast_agent(fleet, master, f"agent-{i}") for i in range(3)]
    started = time.monotonic()
    ids: list[str] = []
    for first in range(0, SOAK_JOBS, 100):
        batch = [
            {"scenario": TINY, "parameters": {"duration": 0.2}, "max_attempts": 5}
            for _ in range(first, min(first + 100, SOAK_JOBS))
        ]
        reply = master.api.post("/jobs/batch", json={"jobs": batch})
        assert reply.status_code == 201, reply.text
        ids += [job["id"] for job in reply.json()["jobs"]]

    def finished() -> int:
        reply = master.api.get("/jobs", params={"status": "completed", "limit": 1})
        return int(reply.json()["total"])

    kills = 0
    deadline = started + SOAK_BUDGET_S
    while finished() < SOAK_JOBS and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.3, 1.2))
        victim = rng.choice(agents)
        victim.kill()
        kills += 1
        # Some come back before the node timeout (re-registration ends the attempt), some
        # after it (the reaper does).
        time.sleep(rng.uniform(0.1, 2.5))
        victim.start()
    wait_until(
        lambda: finished() == SOAK_JOBS,
        timeout=max(5.0, deadline - time.monotonic()),
        interval=0.5,
        message=lambda: f"every job to complete: {count_by_status(master)}",
    )
    wall = time.monotonic() - started

    details = [master.job(job_id) for job_id in ids]
    outcomes = collections.Counter(
        f"{a['outcome']}: {_node_free(a['error'] or '')}".rstrip(": ")
        for d in details
        for a in d["attempts"]
    )
    attempts = sum(len(d["attempts"]) for d in details)
    completed = collections.Counter(
        r["job_id"] for r in listed(master, "results", limit="1000") if r["status"] == "completed"
    )
    figures = {
        "jobs": SOAK_JOBS,
        "agents": len(agents),
        "kills": kills,
        "attempts": attempts,
        "retries": attempts - SOAK_JOBS,
        "max_attempts_of_one_job": max(len(d["attempts"]) for d in details),
        "attempt_outcomes": dict(outcomes.most_common()),
        "rejected_stale_results": sum(len(agent.rejected()) for agent in agents),
        "wall_seconds": round(wall, 1),
        "jobs_per_second": round(SOAK_JOBS / wall, 2),
        "seed": SOAK_SEED,
    }
    (tmp_path / "soak.json").write_text(json.dumps(figures, indent=2))
    print(f"soak figures: {json.dumps(figures)}")

    assert kills >= 5, figures
    # Restarted on the same work dir, each agent stayed the node it was.
    assert sorted(n["id"] for n in master.nodes()) == sorted(str(a.node_id) for a in agents)
    assert count_by_status(master) == {"completed": SOAK_JOBS}, figures
    assert all(d["status"] == "completed" for d in details), figures
    assert set(completed) == set(ids), figures
    twice = {job_id: n for job_id, n in completed.items() if n != 1}
    assert not twice, f"completed more than once: {twice}; {figures}"
    wait_until(
        lambda: not any(a.undelivered(master) for a in agents),
        timeout=15,
        message=f"the spools to empty; {figures}",
    )
    assert not any(ffmpeg_using(agent.work_dir) for agent in agents), figures


def _node_free(error: str) -> str:
    """An attempt's error without the node id in it, so the figures group by cause."""
    words = error.split()
    if len(words) > 1 and words[0] == "node":
        words[1] = "N"
    return " ".join(words)
