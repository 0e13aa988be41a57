"""Fleet efficiency: 60 short real-FFmpeg jobs over 2 real agents, submitted in one batch.

Issue 5's target: makespan ÷ (Σ job time ÷ agents) ≤ 1.05, i.e. the fleet loses at most 5% to
dispatch, result delivery and an uneven end. The makespan runs from the first job's start to the
last job's completion, both as the master records them (`started_at`: claimed; `completed_at`:
result accepted). Job time is FFmpeg's own wall time (`metrics.wall_seconds`, measured by the
agent from spawn to exit) for the main figure, and the master's `completed_at - started_at` for
the second one, which counts dispatch and result delivery as work, so it isolates the uneven end.

Both agents (`ffleet agent --register`, one slot each, heartbeat 1 s) and the FFmpeg they start
may use every core; the master is pinned to core 0 as in the rest of the suite. On a 2-core
machine the two FFmpeg processes compete for the cores, which makes each job slower than it
would be alone, but each job's own wall time includes that contention, so the ratio still
measures only what the fleet adds. One job per agent runs first as a warm-up (not counted).
Run: `.venv/bin/python -m bench.fleet_efficiency [--quick]`.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench.common import (
    JOBS_POLL_S,
    PHASE_TIMEOUT_S,
    Context,
    Figure,
    JobDetail,
    api_client,
    completed_details,
    percentile,
    process_cpu_seconds,
    run_agents,
    run_master,
    run_standalone,
    submit_batch,
    wait_queue_empty,
)
from tests.processes import epoch

TITLE = "Fleet efficiency: short real-FFmpeg jobs over 2 agents"
AGENTS = 2
HEARTBEAT = "1s"
# ~0.45 s of wall per job here with the other agent's FFmpeg running beside it (libx264 veryfast).
JOB: dict[str, Any] = {"scenario": "640x360-h264", "parameters": {"duration": 2}}
TARGET = 1.05


@dataclass(frozen=True)
class JobTimes:
    """One job's times in seconds: the master's clock, and the agent's (the same host clock)."""

    node: str
    started: float  # the master handed the job to the agent (claim)
    reported: float  # the agent built the result (its `completed_at`), after FFmpeg and analysis
    completed: float  # the master accepted the result
    ffmpeg_wall: float  # FFmpeg's spawn -> exit, measured by the agent

    @property
    def master_s(self) -> float:
        return self.completed - self.started

    @property
    def overhead_s(self) -> float:
        """Everything the fleet added to this job: claim delivery, spawn, analysis, delivery."""
        return self.master_s - self.ffmpeg_wall

    @property
    def delivery_s(self) -> float:
        """Result built -> accepted: spool (fsyncs), POST /results, the master's transaction."""
        return self.completed - self.reported


def job_times(detail: JobDetail) -> JobTimes:
    result = detail["result"]
    return JobTimes(
        node=detail["node_id"],
        started=epoch(detail["started_at"]),
        reported=epoch(result["completed_at"]),
        completed=epoch(detail["completed_at"]),
        ffmpeg_wall=float(result["metrics"]["wall_seconds"]),
    )


@dataclass(frozen=True)
class FleetRun:
    jobs: list[JobTimes]
    submit_to_first_start_s: float
    agent_cpu_per_job_s: float  # the agents' own CPU (not FFmpeg's) over the batch, per job
    master_cpu_per_job_s: float  # the master's, including this benchmark's polling

    @property
    def makespan_s(self) -> float:
        return max(job.completed for job in self.jobs) - min(job.started for job in self.jobs)

    def ideal_s(self, ffmpeg: bool) -> float:
        """Σ job time ÷ agents: the makespan of a fleet that loses nothing."""
        times = [job.ffmpeg_wall if ffmpeg else job.master_s for job in self.jobs]
        return sum(times) / AGENTS


def run_fleet(ctx: Context, count: int) -> FleetRun:
    with (
        run_master(ctx) as master,
        run_agents(ctx, master, [HEARTBEAT] * AGENTS) as agents,
        api_client(master) as api,
    ):
        warm_up = submit_batch(api, [JOB] * AGENTS)
        wait_queue_empty(api, PHASE_TIMEOUT_S)
        completed_details(api, warm_up)
        agent_cpu = sum(process_cpu_seconds(agent.pid) for agent in agents)
        master_cpu = process_cpu_seconds(master.pid)
        submitted = time.time()
        ids = submit_batch(api, [JOB] * count)
        wait_queue_empty(api, PHASE_TIMEOUT_S)
        agent_cpu = sum(process_cpu_seconds(agent.pid) for agent in agents) - agent_cpu
        master_cpu = process_cpu_seconds(master.pid) - master_cpu
        details = completed_details(api, ids)
    jobs = [job_times(detail) for detail in details]
    first_start = min(job.started for job in jobs) - submitted
    return FleetRun(jobs, first_start, agent_cpu / count, master_cpu / count)


def report(fleet: FleetRun) -> None:
    jobs = fleet.jobs
    walls = [job.ffmpeg_wall for job in jobs]
    print(
        f"  {len(jobs)} jobs, makespan {fleet.makespan_s:.2f} s; FFmpeg wall per job mean "
        f"{statistics.mean(walls):.3f} s (min {min(walls):.3f}, max {max(walls):.3f}); "
        f"submit -> first start {fleet.submit_to_first_start_s * 1000:.1f} ms"
    )
    print(
        f"  CPU per job: agents' own {fleet.agent_cpu_per_job_s * 1000:.1f} ms, master "
        f"{fleet.master_cpu_per_job_s * 1000:.1f} ms (with this benchmark's polling, 2 requests"
        f" every {JOBS_POLL_S:g} s)"
    )
    print(
        f"  makespan ÷ (Σ job time ÷ {AGENTS}): {fleet.makespan_s / fleet.ideal_s(True):.3f} with "
        f"FFmpeg wall, {fleet.makespan_s / fleet.ideal_s(False):.3f} with the master's job time"
    )
    first = min(job.started for job in jobs)
    for node in sorted({job.node for job in jobs}):
        mine = [job for job in jobs if job.node == node]
        print(
            f"  node {node[:8]}: {len(mine)} jobs, FFmpeg {sum(j.ffmpeg_wall for j in mine):.2f} s,"
            f" busy (master) {sum(j.master_s for j in mine):.2f} s, "
            f"last completion at +{max(j.completed for j in mine) - first:.2f} s"
        )
    for name, values in (
        ("overhead per job (master time - FFmpeg wall)", [job.overhead_s for job in jobs]),
        ("  of which result delivery (built -> accepted)", [job.delivery_s for job in jobs]),
    ):
        ms = [value * 1000 for value in values]
        print(
            f"  {name}: mean {statistics.mean(ms):.1f} ms, p50 {percentile(ms, 50):.1f}, "
            f"p95 {percentile(ms, 95):.1f}, max {max(ms):.1f}"
        )


def run(ctx: Context) -> list[Figure]:
    count = ctx.size(60, 6)
    fleet = run_fleet(ctx, count)
    report(fleet)
    jobs = fleet.jobs
    wall_ms = statistics.mean(job.ffmpeg_wall for job in jobs) * 1000
    overhead_ms = [job.overhead_s * 1000 for job in jobs]
    target = f"≤ {TARGET:.2f}x"
    figures = []
    for ffmpeg, job_time in ((True, "FFmpeg wall"), (False, "master job time")):
        ideal = fleet.ideal_s(ffmpeg)
        figures.append(
            Figure(
                f"makespan, {count} jobs / {AGENTS} agents, job time = {job_time}",
                fleet.makespan_s,
                "s",
                ideal,
                f"Σ {job_time} ÷ {AGENTS}",
                target=target,
                ok=fleet.makespan_s <= TARGET * ideal,
            )
        )
    for name, value in (
        ("mean", statistics.mean(overhead_ms)),
        ("p50", percentile(overhead_ms, 50)),
        ("p95", percentile(overhead_ms, 95)),
    ):
        figures.append(
            Figure(
                f"overhead per job {name} (master job time - FFmpeg wall)",
                value,
                "ms",
                wall_ms,
                "mean FFmpeg wall",
            )
        )
    return figures


if __name__ == "__main__":
    run_standalone(TITLE, __doc__, run)
