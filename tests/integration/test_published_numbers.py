"""Numbers you can publish, end to end: a real master, real agents, real FFmpeg.

The build a node registers is the one its results name, `ffleet nodes` shows it, a job can
require it, repeats come back with their spread, and `placement: fastest` follows the
figures the master recorded for two agents, and those it measured for them.
"""

from __future__ import annotations

import re
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import imageio_ffmpeg  # type: ignore[import-untyped]
import pytest

from ffleet.agent.file_hashes import FileHashes

from .conftest import AgentProcess, Fleet, MasterProcess, ffleet_executable, wait_until

pytestmark = pytest.mark.integration

SCENARIO = "320x240-h264"
FFMPEG_SHA256 = FileHashes().sha256(Path(imageio_ffmpeg.get_ffmpeg_exe()))[0]


def test_the_build_registered_is_the_one_results_name(fleet: Fleet) -> None:
    master = fleet.master()
    agent = fleet.agent(master)
    (node,) = master.nodes()
    assert node["ffmpeg_version"]
    assert node["ffmpeg_sha256"] == FFMPEG_SHA256
    assert node["ffmpeg_configuration"].startswith("--")
    listed = subprocess.run(
        [ffleet_executable(), "nodes", "--master", master.url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert FFMPEG_SHA256[:12] in listed.stdout and "marked *" not in listed.stdout
    for sha in (FFMPEG_SHA256, "0" * 64):  # two more nodes: the majority is still ours
        fake = {"address": "10.9.9.9", "ffmpeg_version": "n0", "ffmpeg_sha256": sha}
        assert master.api.post("/nodes/register", json=fake).status_code == 201
    listed = subprocess.run(
        [ffleet_executable(), "nodes", "--master", master.url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "n0 000000000000 *" in listed.stdout
    assert (
        f"1 node(s) marked * run another FFmpeg build than the majority ({FFMPEG_SHA256[:12]})"
        in " ".join(listed.stdout.split())
    )

    pinned = {"ffmpeg_sha256": FFMPEG_SHA256}
    job = master.submit(
        SCENARIO, parameters={"duration": 1, "warmup": 1, "repeats": 2}, requirements=pinned
    )
    done = master.wait_job(job["id"], ["completed", "failed"])
    assert done["status"] == "completed", done
    assert done["node_id"] == agent.node_id
    metrics = done["result"]["metrics"]
    assert metrics["ffmpeg_sha256"] == FFMPEG_SHA256
    assert len(metrics["runs"]) == 2 and metrics["summary"]["wall_seconds"]["n"] == 2
    assert metrics["master_as_worker"] is True  # the test agents share the master's machine
    assert "master_as_worker" in done["result"]["analyzer_output"]["flags"]

    other = master.submit(SCENARIO, requirements={"ffmpeg_sha256": "1" * 64})
    assert "the FFmpeg build with SHA-256 111111111111" in other["unschedulable_reason"]


def test_placement_fastest_follows_the_recorded_figures(fleet: Fleet, tmp_path: Path) -> None:
    """Two real agents; the master has recorded one as four times faster for the scenario's
    family, and `placement: fastest` waits for that one.

    The figures are recorded through the result API rather than measured here: on a loaded
    machine nearly every run is `disturbed` (other processes took most of the CPU), and a
    disturbed run is rightly never recorded, so a measured comparison could only be skipped.
    """
    master = fleet.master(node_timeout="60s")
    ids = {name: _recorded_node(master, tmp_path, name, fps) for name, fps in FIGURES.items()}
    slow = fleet.agent(master, name="slow")
    fast = fleet.agent(master, name="fast", extra_args=FAST_AGENT_ARGS)
    assert (slow.node_id, fast.node_id) == (ids["slow"], ids["fast"])
    _fastest_waits_for_the_faster(master, ids["slow"], fast)


def test_placement_fastest_follows_the_measured_figures(fleet: Fleet) -> None:
    """Two real agents measure one family with real encodes, and `placement: fastest` then
    waits for the faster one exactly as with recorded figures. The slower one is slower by
    construction: its measuring run uses libx264's `veryslow` preset, the other's `ultrafast`
    (the preset is no part of the family, so the figures compared are of the same family).

    Skipped only when the agent itself marked every measuring run `disturbed` (a loaded
    machine): such runs are never recorded, so there is nothing measured to place by.
    """
    master = fleet.master(node_timeout="60s")
    slow = fleet.agent(master, name="slow", extra_args=["--label", "role=slow"])
    fast = fleet.agent(master, name="fast", extra_args=[*FAST_AGENT_ARGS, "--label", "role=fast"])
    _measure(master, "slow", {**MEASURE, "preset": "veryslow"})
    _measure(master, "fast", {**MEASURE, "preset": "ultrafast"})
    fps = {}
    for agent in (slow, fast):
        (figure,) = master.api.get(f"/nodes/{agent.node_id}").json()["efficiency"]
        assert figure["family"] == "h264/libx264/360p" and figure["samples"] == 1, figure
        fps[agent.name] = figure["fps"]
    assert fps["slow"] < fps["fast"], fps
    _fastest_waits_for_the_faster(master, slow.node_id, fast)


FAST_AGENT_ARGS = ["--long-poll", "1s"]  # back soon after SIGCONT, while the slower one waits
MEASURE = {"duration": 1}
TRIES = 3  # a disturbed run is not recorded: measure again before giving up


def _measure(master: MasterProcess, role: str, parameters: dict[str, Any]) -> None:
    """One undisturbed measured run on the agent labelled `role`; skip if all were disturbed."""
    for _ in range(TRIES):
        job = master.submit(
            SCENARIO, parameters=parameters, requirements={"labels": {"role": role}}
        )
        done = master.wait_job(job["id"], ["completed", "failed"], timeout=60)
        assert done["status"] == "completed", done
        if done["result"]["metrics"]["disturbed"] is False:
            return
    pytest.skip(f"the {role} agent marked all {TRIES} measuring runs disturbed: machine too loaded")


def _fastest_waits_for_the_faster(master: MasterProcess, slow_id: str, fast: AgentProcess) -> None:
    """The slower node's claim passes a `fastest` job over while the faster one is idle (it is
    stopped, not polling, so the slower one asks first), and the faster one runs it."""
    fast.send_signal(signal.SIGSTOP)  # idle in the master's eyes, but no longer asking for work
    try:
        wait_until(lambda: _long_poll_waiters(master) == 1, timeout=30, message="one waiter")
        job = master.submit(SCENARIO, parameters={"duration": 1}, placement="fastest")
        verdicts = wait_until(
            lambda: _deferred(master, job["id"], slow_id),
            timeout=30,
            message="the slow node to defer",
        )
        hostname = master.api.get(f"/nodes/{fast.node_id}").json()["hostname"]
        assert verdicts[slow_id]["reason"].startswith(f"deferred for node {hostname}, idle and")
        assert verdicts[fast.node_id]["verdict"] == "next", verdicts
        assert master.job(job["id"])["status"] == "pending"
    finally:
        fast.send_signal(signal.SIGCONT)
    done = master.wait_job(job["id"], ["completed", "failed"], timeout=120)
    assert done["status"] == "completed", done
    assert done["node_id"] == fast.node_id
    assert [a["node_id"] for a in done["attempts"]] == [fast.node_id]


FIGURES = {"slow": 40.0, "fast": 160.0}  # fps for h264/libx264/360p


def _recorded_node(master: MasterProcess, tmp_path: Path, name: str, fps: float) -> str:
    """Register the node the agent `name` will run as, and record one result at `fps` for it."""
    node_id = str(uuid.uuid4())
    work = tmp_path / f"{name}-work"
    work.mkdir()
    (work / "node-id").write_text(node_id)
    node = {"id": node_id, "hostname": name, "encoders": ["libx264"], "cpu_threads": 2}
    assert master.api.post("/nodes/register", json=node).status_code == 201
    recorded = master.submit(SCENARIO, parameters={"duration": 1})
    claimed = master.api.post("/jobs/next", params={"node_id": node_id}).json()
    assert claimed["id"] == recorded["id"], claimed
    metrics = {"encoder": "libx264", "frames": 30, "fps": fps, "disturbed": False}
    result = {"job_id": claimed["id"], "node_id": node_id, "status": "completed", "attempt": 1}
    assert master.api.post("/results", json={**result, "metrics": metrics}).status_code == 200
    (figure,) = master.api.get(f"/nodes/{node_id}").json()["efficiency"]
    assert figure["fps"] == fps and figure["family"] == "h264/libx264/360p"
    return node_id


def _long_poll_waiters(master: MasterProcess) -> float:
    text = master.api.get("/metrics").text
    found = re.search(r"^ffleet_long_poll_waiters ([0-9.e+]+)$", text, re.MULTILINE)
    assert found is not None, text
    return float(found.group(1))


def _deferred(master: MasterProcess, job_id: str, node_id: str) -> dict[str, Any] | None:
    """Each node's verdict on the job, once `node_id`'s is a deferral."""
    explained = master.api.get(f"/jobs/{job_id}/explain").json()
    if explained["status"] != "pending":
        raise AssertionError(f"taken without waiting for the faster node: {explained['summary']}")
    verdicts: dict[str, Any] = {v["node_id"]: v for v in explained["nodes"]}
    return verdicts if verdicts[node_id]["verdict"] == "deferred" else None
