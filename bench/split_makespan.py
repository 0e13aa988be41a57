"""Split jobs: the makespan of one file split over 1, 2 and 3 agents against the same file
encoded whole by one agent, and the blob transfer rate on loopback.

The makespan runs from submission to the job's completion as the master records them, so it
counts what a user waits for: for a split job the cut, every child's download, encode and
upload, the join and its full-decode check; for the whole file its one download, encode and
upload. Every figure's baseline is the whole-file run of this same invocation.

What it can show on a small machine: the fixed costs the split adds (cut, transfers, join,
check, dispatch) against the encode, and whether more agents shorten the makespan at all.
What it cannot: the speed-up of a real fleet. Agents here share the machine's cores, so with
more agents than cores each encode just runs slower; a fleet of N separate machines divides the
encode by about N, which these figures do not measure.

The transfer rate is `ffleet upload`'s and the agent's download path (`ffleet.transfers`) on
127.0.0.1, master pinned to one core, against a plain local file copy in the same run.
Run: `.venv/bin/python -m bench.split_makespan [--quick]`.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

import httpx

from bench.common import PHASE_TIMEOUT_S, Context, Figure, run_agents, run_master, run_standalone
from ffleet import transfers
from ffleet.blobs import parse_ref
from tests.media import generated_clip
from tests.processes import MasterProcess, epoch

TITLE = "Split jobs: makespan over 1-3 agents vs the whole file; blob transfer on loopback"
SCENARIO = "640x360-h264"


def _makespan(api: httpx.Client, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    reply = api.post("/jobs", json=body)
    reply.raise_for_status()
    job_id = reply.json()["id"]
    deadline = time.monotonic() + PHASE_TIMEOUT_S
    while time.monotonic() < deadline:
        detail: dict[str, Any] = api.get(f"/jobs/{job_id}").raise_for_status().json()
        if detail["status"] in ("completed", "failed", "canceled"):
            if detail["status"] != "completed":
                raise RuntimeError(f"job {job_id} {detail['status']}: {detail['error']}")
            return epoch(detail["completed_at"]) - epoch(detail["created_at"]), detail
        time.sleep(0.2)
    raise RuntimeError(f"job {job_id} did not finish in {PHASE_TIMEOUT_S} s")


def _phases(api: httpx.Client, parent: dict[str, Any]) -> tuple[float, float, float]:
    """Where a split job's makespan went, from the master's times: the cut (submission to
    the children's creation), the children (first claim to last result), the join."""
    rows = parent["result"]["metrics"]["split"]["segments"]
    children = [api.get(f"/jobs/{row['job_id']}").raise_for_status().json() for row in rows]
    created = min(epoch(child["created_at"]) for child in children)
    first = min(epoch(child["started_at"]) for child in children)
    last = max(epoch(child["completed_at"]) for child in children)
    start, end = epoch(parent["created_at"]), epoch(parent["completed_at"])
    return created - start, last - first, end - last


def _transfer_figures(ctx: Context, master: MasterProcess) -> list[Figure]:
    size = ctx.size(256, 16) * 1024 * 1024
    source = ctx.workdir / "transfer.bin"
    with source.open("wb") as handle:
        for _ in range(size // (1024 * 1024)):
            handle.write(os.urandom(1024 * 1024))
    started = time.perf_counter()
    shutil.copyfile(source, ctx.workdir / "copy.bin")
    copy_s = time.perf_counter() - started
    with httpx.Client(base_url=master.url, timeout=60.0) as http:
        started = time.perf_counter()
        ref = transfers.upload(http, source)
        upload_s = time.perf_counter() - started
        started = time.perf_counter()
        transfers.download(http, parse_ref(ref), ctx.workdir / "downloaded.bin")
        download_s = time.perf_counter() - started
    mib = size / 2**20
    return [
        Figure(
            f"blob upload, {mib:.0f} MiB (hash + send + verify)",
            mib / upload_s,
            "MiB/s",
            mib / copy_s,
            "local file copy",
        ),
        Figure(
            f"blob download, {mib:.0f} MiB (receive + verify)",
            mib / download_s,
            "MiB/s",
            mib / copy_s,
            "local file copy",
        ),
    ]


def run(ctx: Context) -> list[Figure]:
    seconds = ctx.size(60, 12)
    segment_s = ctx.size(10, 4)
    clip = generated_clip(ctx.workdir / "clip.mp4", seconds, "640x360")
    figures: list[Figure] = []
    with run_master(ctx) as master, httpx.Client(base_url=master.url, timeout=60.0) as api:
        figures += _transfer_figures(ctx, master)
        ref = transfers.upload(api, clip)
        params = {"input": ref, "output": "file", "duration": seconds + 1}
        with run_agents(ctx, master, ["1s"]):
            whole_s, _ = _makespan(api, {"scenario": SCENARIO, "parameters": params})
        print(f"whole file on 1 agent: {whole_s:.2f} s")
        for agents in (1, 2, 3):
            with run_agents(ctx, master, ["1s"] * agents):
                split = {"scenario": SCENARIO, "parameters": params, "split_s": segment_s}
                makespan_s, detail = _makespan(api, split)
            metrics = detail["result"]["metrics"]
            segments = len(metrics["split"]["segments"])
            plan_s, encode_s, join_s = _phases(api, detail)
            print(
                f"split over {agents} agent(s): {makespan_s:.2f} s = cut {plan_s:.2f} s + "
                f"children {encode_s:.2f} s + join and check {join_s:.2f} s; {segments} "
                f"segments, {metrics['children_wall_seconds']:.2f} s of FFmpeg wall in all, "
                f"nodes {len(metrics['nodes'])}"
            )
            figures.append(
                Figure(
                    f"makespan, {seconds} s {SCENARIO} in {segments} segments, {agents} agent(s)",
                    makespan_s,
                    "s",
                    whole_s,
                    "whole file, 1 agent",
                )
            )
    return figures


if __name__ == "__main__":
    run_standalone(TITLE, __doc__, run)
