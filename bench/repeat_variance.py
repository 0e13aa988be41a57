"""Repeat-run spread: a CPU-bound encode repeated through the agent and bare, CV of each.

The job is `720p30-h264` with `preset=medium`, `duration=5` (libx264, all cores), run by one
agent (all cores, one slot) on a master of its own.

(a) Interleaved: after one warm-up of each, 8 rounds of one job through the agent (its own
`wall_seconds`, measured around its FFmpeg child) and the job's exact argv
(`metrics.ffmpeg_argv`) run bare from this process (wall from spawn to `os.wait4`, CPU from its
rusage), the order alternating each round so that drift in the machine's load hits both
series alike. The CV (stdev / mean) of each series, side by side, says how much of the spread
is the machine's and how much the agent adds.
(b) The `repeats` parameter itself: one job with `warmup=1`, `repeats=8`, all runs on one node
in one attempt; its result's `summary` gives the CV, and the number of its runs the agent
marked `disturbed` (the node saturated and the job got under half its CPU time).
`--quick`: 320x240, 1 s, 2 rounds and repeats (its figures mean nothing).
Run: `.venv/bin/python -m bench.repeat_variance [--quick]`.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import httpx

from bench.agent_overhead import run_bare
from bench.common import (
    JOBS_POLL_S,
    Context,
    Figure,
    JobDetail,
    api_client,
    completed_details,
    run_agents,
    run_master,
    run_standalone,
    submit_batch,
)

TITLE = "Repeat-run spread: CV of one CPU-bound encode, through the agent vs bare"
WAIT_S = 900.0


def _cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.fmean(values)


def _wait(api: httpx.Client, job_id: str) -> JobDetail:
    deadline = time.monotonic() + WAIT_S
    while api.get(f"/jobs/{job_id}").json()["status"] in ("pending", "running"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} not done after {WAIT_S:g} s")
        time.sleep(JOBS_POLL_S)
    (detail,) = completed_details(api, [job_id])
    return detail


def _through_agent(api: httpx.Client, job: dict[str, Any]) -> dict[str, Any]:
    (job_id,) = submit_batch(api, [job])
    metrics: dict[str, Any] = _wait(api, job_id)["result"]["metrics"]
    return metrics


def run(ctx: Context) -> list[Figure]:
    rounds = ctx.size(8, 2)
    parameters = {"duration": ctx.size(5, 1), "preset": "medium"}
    job = {"scenario": ctx.size("720p30-h264", "320x240-h264"), "parameters": parameters}
    repeated = {**job, "parameters": {**parameters, "warmup": 1, "repeats": rounds}}
    agent_walls: list[float] = []
    bare_walls: list[float] = []
    with run_master(ctx) as master, run_agents(ctx, master, ["30s"]), api_client(master) as api:
        argv = _through_agent(api, job)["ffmpeg_argv"]  # warm-up; its argv is the command
        run_bare(argv, ctx.workdir)
        for index in range(rounds):
            for side in ("agent", "bare") if index % 2 == 0 else ("bare", "agent"):
                if side == "agent":
                    agent_walls.append(_through_agent(api, job)["wall_seconds"])
                else:
                    bare_walls.append(run_bare(argv, ctx.workdir).wall_s)
        metrics = _through_agent(api, repeated)
    summary = metrics["summary"]["wall_seconds"]
    disturbed = sum(1 for run in metrics["runs"] if run["disturbed"])
    print(
        f"(a) agent walls {[round(w, 2) for w in agent_walls]} s; "
        f"bare walls {[round(w, 2) for w in bare_walls]} s\n"
        f"(b) repeats walls {[round(r['wall_seconds'], 2) for r in metrics['runs']]} s, "
        f"disturbed {disturbed}/{rounds}, load {metrics['load_average_start']} at the last start"
    )
    bare_cv = 100 * _cv(bare_walls)
    return [
        Figure(
            "(a) agent: wall CV, interleaved",
            100 * _cv(agent_walls),
            "%",
            baseline=bare_cv,
            baseline_name="bare",
        ),
        Figure("(a) bare: wall CV, interleaved", bare_cv, "%"),
        Figure(
            "(a) agent: median wall",
            statistics.median(agent_walls),
            "s",
            baseline=statistics.median(bare_walls),
            baseline_name="bare",
        ),
        Figure(
            f"(b) repeats={rounds}: wall CV",
            100 * summary["cv"],
            "%",
            baseline=bare_cv,
            baseline_name="bare (a)",
        ),
        Figure(f"(b) repeats={rounds}: disturbed runs", float(disturbed), f"of {rounds}"),
    ]


if __name__ == "__main__":
    run_standalone(TITLE, __doc__, run)
