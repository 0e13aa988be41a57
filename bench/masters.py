"""Several masters on one PostgreSQL: the cross-master wake-up, and throughput with 1, 2, 3.

- Cross-master wake-up: 4 simulated agents long-poll master B; one job at a time is submitted
  to master A (and, as the baseline in the same run, to B itself); latency runs from just before
  `POST /jobs` to the agent holding the job. A is told of nothing by B: only its NOTIFY hint
  (or the 30 s recheck, were it lost) can wake B's waiters.
- Throughput: with 1, 2 and 3 masters sharing the database, 6 agents spread over them (no work,
  `claim_next` with each result) drain a queued backlog: claims per second and the masters'
  CPU per job; then a stream of single jobs to masters in turn: submit→claim p50/p99.

Every master is pinned to the server core, PostgreSQL runs where the kernel puts it: on two
cores the figures are about contention for one core and one database, not about scaling.
Needs PostgreSQL: FFLEET_BENCH_POSTGRES (default postgresql+psycopg:///ffleet_bench), whose
ffleet tables are dropped first. Run: `.venv/bin/python -m bench.masters [--quick]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator

from sqlalchemy import create_engine, text

from bench.common import (
    JOB_BODY,
    SERVER_CORE,
    Context,
    Figure,
    HttpClient,
    batch_body,
    percentile,
    process_cpu_seconds,
    register_nodes,
    run_async,
    run_standalone,
    serve,
)
from bench.dispatch_latency import Agent, Fleet
from tests.processes import MasterProcess, free_port

TITLE = "Several masters on one PostgreSQL"
DATABASE = os.environ.get("FFLEET_BENCH_POSTGRES", "postgresql+psycopg:///ffleet_bench")
WAKE_AGENTS = 4
THROUGHPUT_AGENTS = 6
CLAIM_TIMEOUT_S = 20.0
STREAM_GAP_S = 0.05


def reset_database() -> None:
    engine = create_engine(DATABASE)
    with engine.begin() as conn:
        conn.execute(
            text(
                "DROP TABLE IF EXISTS results, attempts, jobs, nodes, leader_lease, "
                "idempotency_keys, ffleet_schema CASCADE"
            )
        )
    engine.dispose()


@contextlib.contextmanager
def masters(ctx: Context, count: int) -> Iterator[list[MasterProcess]]:
    reset_database()
    with contextlib.ExitStack() as stack:
        started = []
        for index in range(count):
            port = free_port()
            master = MasterProcess(
                ctx.workdir,
                name=f"master{index}-{port}",
                port=port,
                store=DATABASE,
                extra_args=["--log-level", "warning", "--recheck-interval", "30s"],
                cores={SERVER_CORE},
            )
            started.append(stack.enter_context(serve(master)))
        yield started


async def claim_latency(fleet: Fleet, port: int, count: int, gap_s: float) -> list[float]:
    """Submit `count` jobs one after another to `port`, each once the last was claimed."""
    client = await HttpClient.connect(port)
    found = []
    try:
        for _ in range(count):
            start = time.monotonic()
            job = await client.json("POST", "/jobs", JOB_BODY, 201)
            deadline = start + CLAIM_TIMEOUT_S
            while (claimed := fleet.claimed_at(job["id"])) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"job {job['id']} not claimed in {CLAIM_TIMEOUT_S:g} s")
                await asyncio.sleep(0.0005)
            found.append((claimed - start) * 1000)
            await asyncio.sleep(gap_s)
    finally:
        await client.close()
    return found


@contextlib.asynccontextmanager
async def agents(servers: list[MasterProcess], count: int) -> Fleet:  # type: ignore[misc]
    ids = await register_nodes(servers[0], count, slots=1)
    fleet = Fleet([Agent(node, servers[i % len(servers)].port) for i, node in enumerate(ids)])
    tasks = [asyncio.create_task(agent.run()) for agent in fleet.agents]
    try:
        await asyncio.sleep(0.5)  # every agent's long-poll is waiting
        yield fleet
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def wake_up(ctx: Context) -> tuple[list[float], list[float]]:
    count = ctx.size(200, 10)
    with masters(ctx, 2) as (first, second):
        async with agents([second], WAKE_AGENTS) as fleet:
            across = await claim_latency(fleet, first.port, count, STREAM_GAP_S)
            same = await claim_latency(fleet, second.port, count, STREAM_GAP_S)
    return across, same


async def throughput(ctx: Context, count: int) -> tuple[float, float, list[float]]:
    """(claims per second, masters' µs of CPU per job, stream latencies) with `count` masters."""
    backlog = ctx.size(1000, 50)
    with masters(ctx, count) as servers:
        client = await HttpClient.connect(servers[0].port)
        try:
            for _ in range(backlog // 50):
                await client.call("POST", "/jobs/batch", batch_body(50), 201)
        finally:
            await client.close()
        cpu_before = sum(process_cpu_seconds(m.pid) for m in servers)
        started = time.monotonic()
        async with agents(servers, THROUGHPUT_AGENTS) as fleet:
            while sum(len(agent.claims) for agent in fleet.agents) < backlog:
                if time.monotonic() - started > 300:
                    raise RuntimeError("backlog not drained in 300 s")
                await asyncio.sleep(0.01)
            elapsed = time.monotonic() - started
            cpu = sum(process_cpu_seconds(m.pid) for m in servers) - cpu_before
            stream: list[float] = []
            for index in range(ctx.size(30, 3)):
                target = servers[index % count].port
                stream += await claim_latency(fleet, target, 5, STREAM_GAP_S)
    return backlog / elapsed, cpu / backlog * 1e6, stream


def run(ctx: Context) -> list[Figure]:
    across, same = run_async(wake_up(ctx))
    figures = [
        Figure(
            f"cross-master wake-up p50 ({len(across)} jobs, agents on B, submit to A)",
            percentile(across, 50),
            "ms",
            percentile(same, 50),
            "same master p50",
            target="tens of ms (before: 3,000 mean, 5 s recheck)",
            ok=percentile(across, 50) <= 50,
        ),
        Figure(
            "cross-master wake-up p99",
            percentile(across, 99),
            "ms",
            percentile(same, 99),
            "same master p99",
            target="tens of ms",
            ok=percentile(across, 99) <= 100,
        ),
    ]
    single: float | None = None
    for count in (1, 2, 3):
        rate, cpu_us, stream = run_async(throughput(ctx, count))
        single = rate if single is None else single
        label = f"{count} master{'s' if count > 1 else ''}"
        figures += [
            Figure(
                f"{label}: backlog claims/s",
                rate,
                "claims/s",
                single,
                "1 master",
            ),
            Figure(f"{label}: master CPU per job (all masters)", cpu_us, "µs/job"),
            Figure(f"{label}: submit→claim p50", percentile(stream, 50), "ms"),
            Figure(f"{label}: submit→claim p99", percentile(stream, 99), "ms"),
        ]
    return figures


def main() -> None:
    run_standalone(TITLE, __doc__, run)


if __name__ == "__main__":
    main()
