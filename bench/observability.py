"""What seeing the fleet costs the master: a Prometheus scrape, and live progress.

- A scrape of GET /metrics reads the fleet's gauges from the store (jobs by status and priority,
  every node's status and heartbeat age): its CPU with a large fleet and queue, and that CPU
  spread over the requests one 15 s scrape interval serves at the measured heartbeat rate.
- Live progress: an agent beats every --progress-interval (1 s) while a job runs instead of every
  30 s, each beat carrying the job's progress. The CPU of one such beat is what the master pays
  per running job per second; an idle node costs one plain beat per 30 s.
Run: `.venv/bin/python -m bench.observability [--quick]`.
"""

from __future__ import annotations

from bench.common import (
    ENCODER,
    Context,
    Figure,
    HttpClient,
    Measurement,
    measure,
    register_nodes,
    replay,
    run_async,
    run_master,
    run_standalone,
    submit_jobs,
)
from tests.processes import MasterProcess

TITLE = "What /metrics and live progress cost the master"
SCRAPE_INTERVAL_S = 15.0
HEARTBEAT_S = 30.0  # the agents' default --heartbeat-interval
PROGRESS_S = 1.0  # their default --progress-interval
IDLE_BEAT = ENCODER.encode({"jobs": []})


def progress_beat(job_id: str) -> bytes:
    progress = {"percent": 42.0, "fps": 118.5, "frame": 1234, "speed": 3.9}
    return ENCODER.encode({"jobs": [{"job_id": job_id, "attempt": 1, "progress": progress}]})


async def claim_one_each(master: MasterProcess, nodes: list[str]) -> list[str]:
    """Each node claims one job (unmeasured set-up); the claimed job ids, in node order."""
    claimed: dict[str, str] = {}
    pending = iter(nodes)

    async def claimer(client: HttpClient) -> None:
        for node in pending:
            claimed[node] = (await client.json("GET", f"/jobs/next?node_id={node}"))["id"]

    await measure(master, claimer)
    return [claimed[node] for node in nodes]


async def phases(
    master: MasterProcess, nodes: int, jobs: int, beats: int, scrapes: int
) -> dict[str, Measurement]:
    fleet = await register_nodes(master, nodes, slots=1)
    await submit_jobs(master, jobs, 100)
    busy, idle = fleet[: nodes // 2], fleet[nodes // 2 :]
    running = await claim_one_each(master, busy)
    measured: dict[str, Measurement] = {}
    measured["idle beat"] = await measure(
        master,
        replay(
            ("POST", f"/nodes/{idle[i % len(idle)]}/heartbeat", IDLE_BEAT) for i in range(beats)
        ),
    )
    bodies = [progress_beat(job_id) for job_id in running]
    measured["progress beat"] = await measure(
        master,
        replay(
            ("POST", f"/nodes/{busy[i % len(busy)]}/heartbeat", bodies[i % len(busy)])
            for i in range(beats)
        ),
    )
    measured["scrape"] = await measure(
        master, replay(("GET", "/metrics", b"") for _ in range(scrapes)), concurrency=1
    )
    return measured


def run(ctx: Context) -> list[Figure]:
    nodes, jobs = ctx.size(1_000, 20), ctx.size(20_000, 200)
    with run_master(ctx) as master:
        measured = run_async(phases(master, nodes, jobs, ctx.size(10_000, 200), ctx.size(20, 2)))
    idle, progress, scrape = (measured[k] for k in ("idle beat", "progress beat", "scrape"))
    rate = idle.requests / idle.wall_s
    per_interval = rate * SCRAPE_INTERVAL_S
    fleet = f"{nodes:,} nodes, {jobs:,} jobs"
    return [
        Figure("heartbeat, idle node", idle.us_per_request, "µs", ctx.floor.us_per_request),
        Figure(
            "heartbeat with a running job's progress",
            progress.us_per_request,
            "µs",
            idle.us_per_request,
            baseline_name="idle beat",
        ),
        Figure(f"one /metrics scrape, {fleet}", scrape.us_per_request, "µs"),
        Figure(
            f"a 15 s scrape spread over the {per_interval:,.0f} beats of 15 s",
            scrape.us_per_request / per_interval,
            "µs/request",
            idle.us_per_request,
            baseline_name="idle beat",
        ),
        Figure(
            "master CPU per running job (1 beat/s)",
            progress.us_per_request / PROGRESS_S,
            "µs/s",
            idle.us_per_request / HEARTBEAT_S,
            baseline_name="idle node (1 beat/30 s)",
        ),
    ]


def main() -> None:
    run_standalone(TITLE, __doc__, run)


if __name__ == "__main__":
    main()
