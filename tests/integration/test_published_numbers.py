"""Numbers you can publish, end to end: a real master, real agents, real FFmpeg.

The build a node registers is the one its results name, `ffleet nodes` shows it, a job can
require it, repeats come back with their spread, and `placement: fastest` follows the
measured figures of two agents, one of them pinned to a single core.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import imageio_ffmpeg  # type: ignore[import-untyped]
import pytest

from ffleet.agent.file_hashes import FileHashes

from .conftest import Fleet, MasterProcess, ffleet_executable

pytestmark = pytest.mark.integration

SCENARIO = "320x240-h264"
FFMPEG_SHA256 = FileHashes().sha256(Path(imageio_ffmpeg.get_ffmpeg_exe()))[0]
MEASURE = {"duration": 2, "preset": "medium"}
TRIES = 4  # a disturbed run (the machine is shared) is not recorded: measure again


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


def test_placement_fastest_follows_the_measured_figures(fleet: Fleet) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two cores: one agent is pinned to one of them")
    master = fleet.master()
    cores = sorted(os.sched_getaffinity(0))
    pinned = fleet.agent(master, name="pinned", cores=cores[:1], extra_args=["--label", "a=1"])
    free = fleet.agent(master, name="free", extra_args=["--label", "a=2"])
    for label in ("1", "2"):  # one undisturbed measured run on each node
        _measure(master, {"labels": {"a": label}})
    fps = {}
    for agent in (pinned, free):
        detail = master.api.get(f"/nodes/{agent.node_id}").json()
        (figure,) = detail["efficiency"]
        assert figure["family"] == "h264/libx264/360p" and figure["samples"] == 1
        fps[agent.node_id] = figure["fps"]
    job = master.submit("640x360-h264", parameters=MEASURE, placement="fastest")
    done = master.wait_job(job["id"], ["completed", "failed"], timeout=120)
    assert done["status"] == "completed", done
    assert done["node_id"] == max(fps, key=lambda node: fps[node]), fps


def _measure(master: MasterProcess, requirements: dict[str, Any]) -> None:
    for _ in range(TRIES):
        job = master.submit("640x360-h264", parameters=MEASURE, requirements=requirements)
        done = master.wait_job(job["id"], ["completed", "failed"], timeout=120)
        assert done["status"] == "completed", done
        if not done["result"]["metrics"]["disturbed"]:
            return
    pytest.skip(f"every one of {TRIES} runs was disturbed: the machine is too loaded to measure")
