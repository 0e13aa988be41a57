"""Repeat-run spread: a CPU-bound encode repeated through the agent and bare, CV of each.

One agent (all cores) runs one job `720p30-h264` with `preset=medium`, `duration=5`,
`warmup=1`, `repeats=8`: its result's `summary` holds the CV (stdev / mean) of the wall time and
CPU time over the 8 measured runs, all on one node in one attempt. Then the job's exact argv
(`metrics.ffmpeg_argv`) runs bare from this process the same way: 1 warm-up, 8 measured runs
back to back, wall from spawn to `os.wait4`, CPU from its rusage. The two CVs side by side say
how much of the spread is the machine's and how much the agent adds; the disturbed count says
how many of the agent's runs had under half the node's CPU time (see agent/conditions.py).
`--quick`: 320x240, 1 s, 2 repeats (its figures mean nothing).
Run: `.venv/bin/python -m bench.repeat_variance [--quick]`.
"""

from __future__ import annotations

import statistics
import time

from bench.agent_overhead import run_bare
from bench.common import (
    Context,
    Figure,
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


def run(ctx: Context) -> list[Figure]:
    scenario = ctx.size("720p30-h264", "320x240-h264")
    repeats = ctx.size(8, 2)
    parameters = {"duration": ctx.size(5, 1), "preset": "medium", "warmup": 1, "repeats": repeats}
    with run_master(ctx) as master, run_agents(ctx, master, ["30s"]), api_client(master) as api:
        (job_id,) = submit_batch(api, [{"scenario": scenario, "parameters": parameters}])
        deadline = time.monotonic() + WAIT_S
        while api.get(f"/jobs/{job_id}").json()["status"] in ("pending", "running"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} not done after {WAIT_S:g} s")
            time.sleep(1.0)
        (detail,) = completed_details(api, [job_id])
    metrics = detail["result"]["metrics"]
    summary = metrics["summary"]
    disturbed = sum(1 for run in metrics["runs"] if run["disturbed"])
    argv = metrics["ffmpeg_argv"]
    run_bare(argv, ctx.workdir)  # warm-up, as the agent's
    bare = [run_bare(argv, ctx.workdir) for _ in range(repeats)]
    walls = [r.wall_s for r in bare]
    cpus = [r.cpu_s for r in bare]
    bare_cv = _cv(walls)
    print(
        f"agent walls {[round(r['wall_seconds'], 2) for r in metrics['runs']]} s; "
        f"bare walls {[round(w, 2) for w in walls]} s; disturbed agent runs {disturbed}/{repeats}"
    )
    return [
        Figure(
            "agent: wall CV over repeats",
            100 * summary["wall_seconds"]["cv"],
            "%",
            baseline=100 * bare_cv,
            baseline_name="bare",
        ),
        Figure(
            "agent: CPU CV over repeats",
            100 * summary["cpu_seconds"]["cv"],
            "%",
            baseline=100 * _cv(cpus),
            baseline_name="bare",
        ),
        Figure(
            "agent: mean wall",
            summary["wall_seconds"]["mean"],
            "s",
            baseline=statistics.fmean(walls),
            baseline_name="bare",
        ),
        Figure("bare: wall CV over repeats", 100 * bare_cv, "%"),
        Figure("agent: disturbed runs", float(disturbed), f"of {repeats}"),
    ]


if __name__ == "__main__":
    run_standalone(TITLE, __doc__, run)
