"""The agent end to end: a real `ffleet master`, a real `ffleet agent`, real FFmpeg.

Everything is checked through the master's API (and the agent's work dir for the spool), as
an operator would see it. Jobs are tiny (320x240) so the module stays fast on two cores.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from .conftest import AgentProcess, Fleet, MasterProcess, ffleet_executable, wait_until

pytestmark = pytest.mark.integration

TINY = "320x240-h264"
# ~30 s of encoding at 320x240: long enough to be caught running, never left to finish.
ENDLESS = {"duration": 600}


@pytest.fixture(scope="module")
def shared(module_fleet: Fleet) -> tuple[MasterProcess, AgentProcess]:
    """One master and one agent for the tests that leave both running and idle."""
    inputs = module_fleet.tmp / "inputs"
    inputs.mkdir()
    # Text in an .mp4: FFmpeg really opens it and really fails ("moov atom not found").
    (inputs / "not-a-video.mp4").write_text("this is not a video\n" * 50)
    master = module_fleet.master()
    agent = module_fleet.agent(master, extra_args=["--input-dir", str(inputs)])
    return master, agent


def test_encode_completes_with_real_metrics(shared: tuple[MasterProcess, AgentProcess]) -> None:
    master, agent = shared
    job = master.submit(TINY, parameters={"duration": 1})

    done = master.wait_job(job["id"], ["completed", "failed"])

    assert done["status"] == "completed", done
    assert done["node_id"] == agent.node_id
    result = done["result"]
    assert result["status"] == "completed"
    assert result["attempt"] == 1
    metrics = result["metrics"]
    assert metrics["frames"] > 0
    assert metrics["cpu_user_seconds"] + metrics["cpu_system_seconds"] > 0
    assert metrics["output_bytes"] > 0
    assert metrics["encoder"] == "libx264"
    assert metrics["ffmpeg_version"]
    # Accepted, so no longer spooled: the agent deletes it once the reply arrives, and the
    # reply waits for the agent's next job (or the long poll's 30 s).
    following = master.submit(TINY, parameters={"duration": 1})
    master.wait_job(following["id"], ["completed", "failed"])
    spooled = f"{job['id']}-1.json"
    wait_until(
        lambda: spooled not in {path.name for path in agent.spooled()},
        timeout=10,
        message="the result to leave the spool",
    )


def test_ffmpeg_failure_is_reported_with_stderr(
    shared: tuple[MasterProcess, AgentProcess],
) -> None:
    master, _ = shared
    job = master.submit(TINY, parameters={"duration": 1, "input": "not-a-video.mp4"})

    done = master.wait_job(job["id"], ["completed", "failed"])

    assert done["status"] == "failed", done
    assert done["retry_count"] == 1  # a broken input is permanent: no second attempt
    result = done["result"]
    assert result["status"] == "failed"
    assert "Invalid data found when processing input" in result["metrics"]["stderr_tail"]
    assert "FFmpeg failed" in done["error"]
    assert "Invalid data" in done["error"]


def test_job_timeout_kills_ffmpeg(shared: tuple[MasterProcess, AgentProcess]) -> None:
    master, agent = shared
    job = master.submit(TINY, parameters=ENDLESS, timeout_s=2, max_attempts=1)

    done = master.wait_job(job["id"], ["completed", "failed"])

    assert done["status"] == "failed", done
    assert "timed out after 2 s" in done["error"]
    wait_until(lambda: not agent.ffmpeg_pids(), timeout=15, message="FFmpeg to be killed")
    # The agent is free again: the next job runs.
    follow = master.submit(TINY, parameters={"duration": 1})
    assert master.wait_job(follow["id"], ["completed", "failed"])["status"] == "completed"


def test_cancel_reaches_the_running_ffmpeg(shared: tuple[MasterProcess, AgentProcess]) -> None:
    master, agent = shared
    job = master.submit(TINY, parameters=ENDLESS)
    master.wait_job(job["id"], ["running"])
    wait_until(agent.ffmpeg_pids, timeout=15, message="FFmpeg to start")

    canceled = master.api.post(f"/jobs/{job['id']}/cancel")
    assert canceled.status_code == 200, canceled.text

    done = master.wait_job(job["id"], ["canceled", "completed", "failed"])
    assert done["status"] == "canceled", done
    assert done["result"]["status"] == "canceled"
    wait_until(lambda: not agent.ffmpeg_pids(), timeout=15, message="FFmpeg to be killed")


def test_slots_run_jobs_side_by_side(fleet: Fleet) -> None:
    master = fleet.master()
    agent = fleet.agent(master, extra_args=["--slots", "2"])
    jobs = [master.submit(TINY, parameters=ENDLESS) for _ in range(2)]

    def both_running() -> bool:
        (node,) = master.nodes()
        return sorted(node["running_job_ids"]) == sorted(job["id"] for job in jobs)

    wait_until(both_running, timeout=15, message="both jobs to run on the one node")
    wait_until(lambda: len(agent.ffmpeg_pids()) == 2, timeout=15, message="two FFmpegs")
    for job in jobs:
        assert master.api.post(f"/jobs/{job['id']}/cancel").status_code == 200
    for job in jobs:
        assert master.wait_job(job["id"], ["canceled", "completed", "failed"])["status"] == (
            "canceled"
        )


def test_agent_waits_for_a_master_that_is_not_up_yet(fleet: Fleet) -> None:
    master = fleet.master(start=False)
    agent = fleet.agent(master, wait=False)
    wait_until(
        lambda: "unreachable at start" in agent.log_text(),
        timeout=30,
        message="the agent to report the master unreachable",
    )
    assert agent.running

    master.start()

    node_id = agent.wait_registered(master)
    job = master.submit(TINY, parameters={"duration": 1})
    done = master.wait_job(job["id"], ["completed", "failed"])
    assert done["status"] == "completed", done
    assert done["node_id"] == node_id


def test_result_survives_a_master_outage(fleet: Fleet) -> None:
    # The outage (waiting for the spool) outlasts the 3 s node timeout: a restarted master
    # must give agents a full timeout to return before it ends their leases.
    master = fleet.master()
    agent = fleet.agent(master)
    job = master.submit("720p-h264", parameters={"duration": 4})
    master.wait_job(job["id"], ["running"])

    master.kill()
    spooled = wait_until(agent.spooled, timeout=60, message="the result to be spooled")
    assert spooled[0].name == f"{job['id']}-1.json"
    master.start()

    done = master.wait_job(job["id"], ["completed", "failed"])
    assert done["status"] == "completed", done
    assert done["result"]["metrics"]["frames"] > 0
    assert done["retry_count"] == 0
    wait_until(lambda: not agent.spooled(), timeout=10, message="the spool to empty")
    assert agent.rejected() == []
    assert agent.running


def test_sigterm_releases_the_running_job(fleet: Fleet) -> None:
    master = fleet.master()
    agent = fleet.agent(master, extra_args=["--grace", "1s"])
    job = master.submit(TINY, parameters=ENDLESS)
    master.wait_job(job["id"], ["running"])
    ffmpeg = wait_until(agent.ffmpeg_pids, timeout=15, message="FFmpeg to start")

    agent.send_signal(signal.SIGTERM)

    assert agent.wait(timeout=30) == 0
    back = master.job(job["id"])
    assert back["status"] == "pending", back
    assert back["retry_count"] == 0  # handed back, not a failed attempt
    assert back["attempts"][-1]["outcome"] == "released"
    assert back["attempts"][-1]["error"] == "agent shutting down"
    assert not any(Path(f"/proc/{pid}").exists() for pid in ffmpeg)

    # Restarted on the same work dir, it is the same node, not a second one.
    node_id = agent.node_id
    assert master.api.post(f"/jobs/{job['id']}/cancel").status_code == 200
    agent.start()
    assert agent.wait_registered(master) == node_id
    assert [node["id"] for node in master.nodes()] == [node_id]


def test_progress_is_visible_while_the_job_runs(fleet: Fleet) -> None:
    master = fleet.master()
    fleet.agent(master)
    job = master.submit("640x360-h264", parameters=ENDLESS)

    def progressed() -> dict[str, object] | None:
        detail = master.job(job["id"])
        progress = detail.get("progress") or {}
        return progress if progress.get("percent") and progress.get("fps") else None

    progress = wait_until(progressed, timeout=30, message="progress in GET /jobs/{id}")
    assert 0 < float(progress["percent"]) < 100  # type: ignore[arg-type]
    master.api.post(f"/jobs/{job['id']}/cancel")
    master.wait_job(job["id"], ["canceled"])


def test_agent_reregisters_when_an_in_memory_master_forgets_it(fleet: Fleet) -> None:
    master = fleet.master(store="memory")
    agent = fleet.agent(master)
    node_id = agent.wait_registered(master)
    master.restart()  # a memory store starts empty: the node is forgotten
    assert agent.wait_registered(master) == node_id
    job = master.submit(TINY, parameters={"duration": 0.5})
    assert master.wait_job(job["id"], ["completed"])["node_id"] == node_id


def test_agent_without_register_prints_the_hardware(tmp_path: Path) -> None:
    shown = subprocess.run(
        [ffleet_executable(), "agent"], capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    assert "libx264" in shown.stdout and "CPU" in shown.stdout


@pytest.mark.parametrize(
    ("flags", "message"),
    [([], "--allow-master-as-worker"), (["--allow-master-as-worker"], "--yes")],
)
def test_agent_refuses_a_local_master_unless_told(
    fleet: Fleet, flags: list[str], message: str
) -> None:
    master = fleet.master()
    refused = subprocess.run(
        [ffleet_executable(), "agent", "--register", "--master", master.url, *flags],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert refused.returncode == 1
    assert message in refused.stderr and "WARNING" in refused.stderr.upper()
    assert master.nodes() == []
