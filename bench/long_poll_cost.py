"""What long-polling costs the master: per job, and while nothing happens.

Issue 9's goal 2: master CPU per job with idle long-polling agents at most 1.1x the same jobs
claimed with plain requests; 1,000 long-polls waiting on an empty queue cost at most 2% of a
core (Go v1.0 burns nothing idle, but its agents poll every 10 s).

(a) Per job, one job at a time with JOB_GAP_S between jobs, on one master (SQLite):
- plain: one client submits a job (`POST /jobs`), claims it (`GET /jobs/next`, no wait) and
  posts its result (`POST /results`): three requests, v1.0's way;
- long-poll: AGENTS agents wait in `GET /jobs/next?wait=30` as ffleet's agent does; the job
  wakes one, which claims it, posts its result with `claim_next` (nothing more is queued) and
  waits again. The submitter sends the next job once that agent waits again.
Both run the same number of jobs at the same pace, in ROUNDS alternated blocks (plain first
in one round, long-poll first in the next) on the same master, so that neither is measured on
a fresher master or in a quieter minute than the other; the figure is the master's CPU over a
kind's blocks divided by its jobs. (Measured as two phases, one after the other, the ratio
spread 0.83x-1.17x over six runs of the same two trees.)

(b) Idle: the master with nothing connected over IDLE_WINDOW_S (the baseline), then with
IDLE_POLLS agents long-polling an empty queue over the same window (each renews its poll as
it ends, every WAIT_S), from /proc/PID/stat.
Run: `.venv/bin/python -m bench.long_poll_cost [--quick]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bench.common import (
    JOB_BODY,
    Context,
    Figure,
    HttpClient,
    process_cpu_seconds,
    raise_open_files_limit,
    register_nodes,
    result_body,
    run_async,
    run_master,
    run_standalone,
)
from tests.processes import MasterProcess

TITLE = "Long-poll cost: per job and idle"
AGENTS = 8
WAIT_S = 30
JOB_GAP_S = 0.02
IDLE_POLLS = 1000
IDLE_WINDOW_S = 30.0
PER_JOB_TARGET = 1.1
IDLE_TARGET_PERCENT = 2.0
WAITING_TIMEOUT_S = 10.0
ROUNDS = 5
SETTLE_S = 1.0


async def plain_jobs(master: MasterProcess, count: int) -> float:
    """Master CPU µs per job, each submitted, claimed and finished with plain requests."""
    (node,) = await register_nodes(master, 1, slots=1)
    client = await HttpClient.connect(master.port)
    try:
        cpu = process_cpu_seconds(master.pid)
        for _ in range(count):
            await client.call("POST", "/jobs", JOB_BODY, 201)
            job = await client.json("GET", f"/jobs/next?node_id={node}")
            await client.call("POST", "/results", result_body(job, node))
            await asyncio.sleep(JOB_GAP_S)
        return (process_cpu_seconds(master.pid) - cpu) * 1e6 / count
    finally:
        await client.close()


class Waiters:
    """Long-polling agents; `waiting` counts those whose poll is at the master now."""

    def __init__(self, master: MasterProcess, nodes: list[str]) -> None:
        self.master = master
        self.nodes = nodes
        self.waiting = 0
        self.finished = 0  # jobs whose results were accepted
        self.changed = asyncio.Event()

    async def agent(self, node: str) -> None:
        client = await HttpClient.connect(self.master.port)
        try:
            while True:
                self._count(1)
                job = await client.json("GET", f"/jobs/next?node_id={node}&wait={WAIT_S}")
                self._count(-1)
                while job and job.get("id") is not None:
                    body = result_body(job, node, claim_next=True)
                    job = (await client.json("POST", "/results", body)).get("job")
                    self.finished += 1
        finally:
            await client.close()

    def _count(self, change: int) -> None:
        self.waiting += change
        self.changed.set()

    async def until(self, waiting: int, finished: int) -> None:
        """Until `waiting` polls are sent and `finished` results accepted (bounded)."""
        async with asyncio.timeout(WAITING_TIMEOUT_S):
            while self.waiting < waiting or self.finished < finished:
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def waiting(master: MasterProcess, count: int) -> AsyncIterator[Waiters]:
    """`count` registered agents long-polling for the block; a failed agent is raised."""
    waiters = Waiters(master, await register_nodes(master, count, slots=1))
    tasks = [asyncio.create_task(waiters.agent(node)) for node in waiters.nodes]
    try:
        await waiters.until(count, 0)
        await asyncio.sleep(SETTLE_S)  # the polls have reached the master and wait there
        yield waiters
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, Exception)]
    if failures:
        raise RuntimeError(f"{len(failures)} long-polling agent(s) failed") from failures[0]


async def long_poll_jobs(master: MasterProcess, count: int) -> float:
    """Master CPU µs per job, each taken by one of AGENTS idle long-polling agents."""
    async with waiting(master, AGENTS) as waiters:
        client = await HttpClient.connect(master.port)
        try:
            cpu = process_cpu_seconds(master.pid)
            for index in range(count):
                await client.call("POST", "/jobs", JOB_BODY, 201)
                await waiters.until(AGENTS, index + 1)
                await asyncio.sleep(JOB_GAP_S)
            return (process_cpu_seconds(master.pid) - cpu) * 1e6 / count
        finally:
            await client.close()


async def cpu_share(master: MasterProcess, seconds: float) -> float:
    """The master's CPU over `seconds` of wall time, in % of one core."""
    cpu = process_cpu_seconds(master.pid)
    start = time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (process_cpu_seconds(master.pid) - cpu) / (time.monotonic() - start)


@dataclass(frozen=True)
class Idle:
    alone: float  # % of a core
    polled: float


async def idle_cost(master: MasterProcess, polls: int, window_s: float) -> Idle:
    await asyncio.sleep(SETTLE_S)
    alone = await cpu_share(master, window_s)
    async with waiting(master, polls):
        polled = await cpu_share(master, window_s)
    return Idle(alone, polled)


async def alternated(master: MasterProcess, jobs: int, rounds: int) -> tuple[float, float]:
    """Master CPU µs per job, plain and long-polled, over `rounds` blocks of each, the order
    swapped every round; each round's ratio is printed."""
    block = jobs // rounds
    plain: list[float] = []
    polled: list[float] = []
    for index in range(rounds):
        if index % 2 == 0:
            plain.append(await plain_jobs(master, block))
            polled.append(await long_poll_jobs(master, block))
        else:
            polled.append(await long_poll_jobs(master, block))
            plain.append(await plain_jobs(master, block))
    ratios = ", ".join(f"{p / q:.2f}" for p, q in zip(polled, plain, strict=True))
    print(f"  long-poll / plain per round ({block} jobs each): {ratios}")
    return sum(plain) / rounds, sum(polled) / rounds


def run(ctx: Context) -> list[Figure]:
    jobs = ctx.size(500, 20)
    polls = ctx.size(IDLE_POLLS, 50)
    window_s = ctx.size(IDLE_WINDOW_S, 2.0)
    raise_open_files_limit(polls + 100)
    with run_master(ctx) as master:
        plain, polled = run_async(alternated(master, jobs, ctx.size(ROUNDS, 2)))
    with run_master(ctx) as master:
        idle = run_async(idle_cost(master, polls, window_s))
    return [
        Figure(
            f"master CPU per job, plain requests ({jobs} jobs: create, claim, result)",
            plain,
            "µs/job",
            ctx.floor.us_per_request,
        ),
        Figure(
            f"master CPU per job, {AGENTS} idle long-polling agents (same jobs)",
            polled,
            "µs/job",
            plain,
            "plain requests",
            target=f"≤ {PER_JOB_TARGET:g}x plain",
            ok=polled <= PER_JOB_TARGET * plain,
        ),
        Figure(
            f"master CPU, {polls:,} long-polls waiting on an empty queue",
            idle.polled,
            "% core",
            idle.alone,
            "master alone",
            go="0 (no long-poll)",
            target=f"≤ {IDLE_TARGET_PERCENT:g}",
            ok=idle.polled <= IDLE_TARGET_PERCENT,
        ),
    ]


if __name__ == "__main__":
    run_standalone(TITLE, __doc__, run)
