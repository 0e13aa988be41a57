"""Submit→claim latency with 8 long-polling agents, under a steady stream, and their idle cost.

Issue 5's targets: with 8 idle agents p50 ≤ 10 ms and p99 ≤ 50 ms (Go v1.0, 10 s polling: 501 ms
and 1.25 s); 200 jobs at 3.3/s over 60 s with 2 s of work each: all claimed and agents never idle
while work waits (Go: 59 of 200 claimed in 75 s); 8 agents long-polling an empty queue cost the
master ≤ 1% of a core (Go's tight poll loop: 53%). Issue 9's: that stream's submit→claim p99
≤ 20 ms (nothing may block the master's event loop: no WAL checkpoint, no long reaper pass).

The agents behave as ffleet's: registered with one slot, `GET /jobs/next?node_id=X&wait=30`,
"work" (a sleep), `POST /results` with `claim_next`, and a heartbeat every 30 s on a connection
of its own. Latency runs from just before `POST /jobs` is sent to the agent holding the job.
Run: `.venv/bin/python -m bench.dispatch_latency [--quick]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bench.common import (
    JOB_BODY,
    Context,
    Figure,
    HttpClient,
    percentile,
    process_cpu_seconds,
    register_nodes,
    result_body,
    run_async,
    run_master,
    run_standalone,
)
from tests.processes import MasterProcess

TITLE = "Dispatch latency and idle cost with long-polling agents"
AGENTS = 8
WAIT_S = 30
HEARTBEAT_S = 30.0
STREAM_RATE = 3.3  # jobs per second in the overload case
STREAM_WORK_S = 2.0  # each job's "work" in the overload case
STREAM_WINDOW_S = 75.0  # claims counted this long after the stream starts (as for Go v1.0)
STALL_GRACE_S = 0.2  # work waiting this long while an agent is idle counts as a stall
STREAM_P99_MS = 20.0
SAMPLE_S = 0.05
SETTLE_TIMEOUT_S = 15.0


class Agent:
    """One simulated agent; `work_s` may change between phases."""

    def __init__(self, node_id: str, port: int) -> None:
        self.node_id = node_id
        self.port = port
        self.work_s = 0.0
        self.busy = False
        self.claims: dict[str, float] = {}  # job id -> monotonic time the job arrived

    async def run(self) -> None:
        """Work until cancelled."""
        poll = await HttpClient.connect(self.port)
        heartbeats = asyncio.create_task(self._heartbeat())
        try:
            while True:
                job = await poll.json("GET", f"/jobs/next?node_id={self.node_id}&wait={WAIT_S}")
                while job and job.get("id") is not None:
                    self.claims[job["id"]] = time.monotonic()
                    self.busy = True
                    await asyncio.sleep(self.work_s)
                    body = result_body(job, self.node_id, claim_next=True)
                    job = (await poll.json("POST", "/results", body)).get("job")
                    self.busy = False
        finally:
            heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeats
            await poll.close()

    async def _heartbeat(self) -> None:
        """A fresh connection each time: uvicorn closes one idle for 5 s, as a client would see."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            client = await HttpClient.connect(self.port)
            try:
                await client.call("POST", f"/nodes/{self.node_id}/heartbeat")
            finally:
                await client.close()


class Fleet:
    def __init__(self, agents: list[Agent]) -> None:
        self.agents = agents

    def claimed_at(self, job_id: str) -> float | None:
        for agent in self.agents:
            if job_id in agent.claims:
                return agent.claims[job_id]
        return None

    def idle(self) -> int:
        return sum(not agent.busy for agent in self.agents)

    async def settle(self, submitted: dict[str, float], deadline: float) -> None:
        """Until every submitted job is claimed and every agent is done, or the deadline."""
        while time.monotonic() < deadline:
            claimed = all(self.claimed_at(job) is not None for job in submitted)
            if claimed and self.idle() == len(self.agents):
                return
            await asyncio.sleep(SAMPLE_S)


@dataclass(frozen=True)
class Latencies:
    submitted: int
    claimed_ms: list[float]  # of the jobs claimed in time
    stall_s: float = 0.0

    @property
    def p50(self) -> float:
        return percentile(self.claimed_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.claimed_ms, 99)


async def submit(client: HttpClient, submitted: dict[str, float]) -> None:
    start = time.monotonic()
    job = await client.json("POST", "/jobs", JOB_BODY, 201)
    submitted[job["id"]] = start


def latencies(fleet: Fleet, submitted: dict[str, float], until: float) -> list[float]:
    found = []
    for job_id, start in submitted.items():
        claimed = fleet.claimed_at(job_id)
        if claimed is not None and claimed <= until:
            found.append((claimed - start) * 1000)
    return found


async def trickle(client: HttpClient, fleet: Fleet, count: int) -> Latencies:
    """`count` jobs one at a time, 50-250 ms apart, to idle agents that finish at once."""
    rng = random.Random(5)
    submitted: dict[str, float] = {}
    for _ in range(count):
        await submit(client, submitted)
        await asyncio.sleep(rng.uniform(0.05, 0.25))
    await fleet.settle(submitted, time.monotonic() + SETTLE_TIMEOUT_S)
    return Latencies(count, latencies(fleet, submitted, time.monotonic()))


async def watch_stalls(fleet: Fleet, submitted: dict[str, float], stop: asyncio.Event) -> float:
    """Seconds in stretches of ≥ STALL_GRACE_S during which a job waited and an agent idled."""
    total = 0.0
    since: float | None = None
    while True:
        now = time.monotonic()
        waiting = any(fleet.claimed_at(job) is None for job in submitted)
        if waiting and fleet.idle() and not stop.is_set():
            since = now if since is None else since
            await asyncio.sleep(SAMPLE_S)
            continue
        if since is not None and now - since >= STALL_GRACE_S:
            total += now - since
        since = None
        if stop.is_set():
            return total
        await asyncio.sleep(SAMPLE_S)


async def stream(client: HttpClient, fleet: Fleet, count: int) -> Latencies:
    """`count` jobs at STREAM_RATE per second; claims counted up to STREAM_WINDOW_S."""
    submitted: dict[str, float] = {}
    start = time.monotonic()
    until = start + max(STREAM_WINDOW_S, count / STREAM_RATE + SETTLE_TIMEOUT_S)
    stop = asyncio.Event()
    stalls = asyncio.create_task(watch_stalls(fleet, submitted, stop))
    for index in range(count):
        await asyncio.sleep(max(0.0, start + index / STREAM_RATE - time.monotonic()))
        await submit(client, submitted)
    await fleet.settle(submitted, until)
    stop.set()
    return Latencies(count, latencies(fleet, submitted, until), await stalls)


async def cpu_share(master: MasterProcess, seconds: float) -> float:
    """The master's CPU over `seconds` of wall time, in % of one core."""
    cpu = process_cpu_seconds(master.pid)
    start = time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (process_cpu_seconds(master.pid) - cpu) / (time.monotonic() - start)


@contextlib.asynccontextmanager
async def running(fleet: Fleet) -> AsyncIterator[None]:
    """The fleet's agents work for the duration of the block; an agent's failure is raised."""
    tasks = [asyncio.create_task(agent.run()) for agent in fleet.agents]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    if failures:
        raise RuntimeError(f"{len(failures)} agent(s) failed") from failures[0]


async def fleet_of(master: MasterProcess, size: int) -> Fleet:
    return Fleet([Agent(node, master.port) for node in await register_nodes(master, size, 1)])


@dataclass(frozen=True)
class Trickle:
    latencies: Latencies
    cpu_us: float  # master CPU per job: submit, long-poll wake-ups, claim, result


async def measured_trickle(
    master: MasterProcess, client: HttpClient, fleet: Fleet, count: int
) -> Trickle:
    cpu = process_cpu_seconds(master.pid)
    quiet = await trickle(client, fleet, count)
    print(f"  {len(fleet.agents)} idle agent(s): {len(quiet.claimed_ms)}/{count} claimed")
    return Trickle(quiet, (process_cpu_seconds(master.pid) - cpu) * 1e6 / count)


@dataclass(frozen=True)
class Results:
    idle_master: float
    solo: Trickle  # one agent: the same protocol without other waiters to wake
    fleet: Trickle
    stream: Latencies
    idle_agents: float


async def scenario(master: MasterProcess, ctx: Context) -> Results:
    await asyncio.sleep(1.0)  # let start-up settle
    idle_master = await cpu_share(master, ctx.size(15.0, 2.0))
    submitter = await HttpClient.connect(master.port)
    try:
        solo = await fleet_of(master, 1)
        async with running(solo):
            alone = await measured_trickle(master, submitter, solo, ctx.size(100, 5))
        fleet = await fleet_of(master, AGENTS)
        async with running(fleet):
            quiet = await measured_trickle(master, submitter, fleet, ctx.size(200, 10))
            for agent in fleet.agents:
                agent.work_s = STREAM_WORK_S
            busy = await stream(submitter, fleet, ctx.size(200, 10))
            print(f"  stream: {len(busy.claimed_ms)}/{busy.submitted} claimed")
            idle_agents = await cpu_share(master, ctx.size(30.0, 3.0))
    finally:
        await submitter.close()
    return Results(idle_master, alone, quiet, busy, idle_agents)


def run(ctx: Context) -> list[Figure]:
    with run_master(ctx) as master:
        results = run_async(scenario(master, ctx))
    floor = ctx.floor
    quiet, busy = results.fleet.latencies, results.stream
    n_quiet, n_busy = quiet.submitted, busy.submitted
    all_quiet = len(quiet.claimed_ms) == n_quiet
    return [
        Figure(
            f"submit→claim p50, {AGENTS} idle agents ({n_quiet} jobs)",
            quiet.p50,
            "ms",
            floor.rtt_p50_ms,
            "floor RTT p50",
            go="501 (10 s poll)",
            target="≤ 10",
            ok=all_quiet and quiet.p50 <= 10,
        ),
        Figure(
            f"submit→claim p99, {AGENTS} idle agents",
            quiet.p99,
            "ms",
            floor.rtt_p99_ms,
            "floor RTT p99",
            go="1,250 (10 s poll)",
            target="≤ 50",
            ok=all_quiet and quiet.p99 <= 50,
        ),
        Figure(
            f"submit→claim p50, 1 idle agent ({results.solo.latencies.submitted} jobs)",
            results.solo.latencies.p50,
            "ms",
            floor.rtt_p50_ms,
            "floor RTT p50",
        ),
        Figure(
            "master CPU per job, 1 idle agent (submit + wake + claim + result)",
            results.solo.cpu_us,
            "µs/job",
            floor.us_per_request,
        ),
        Figure(
            f"master CPU per job, {AGENTS} idle agents (same)",
            results.fleet.cpu_us,
            "µs/job",
            results.solo.cpu_us,
            "1 agent",
            go="387 (polling)",
        ),
        Figure(
            f"stream {n_busy} jobs at {STREAM_RATE}/s, {STREAM_WORK_S:g} s work: claimed",
            len(busy.claimed_ms),
            "jobs",
            go="59 of 200 in 75 s",
            target=f"all {n_busy}",
            ok=len(busy.claimed_ms) == n_busy,
        ),
        Figure(
            "stream: agents idle while work waited",
            busy.stall_s,
            "s",
            target="0",
            ok=busy.stall_s == 0,
        ),
        Figure(
            "stream: submit→claim p50",
            busy.p50,
            "ms",
            floor.rtt_p50_ms,
            "floor RTT p50",
            go="28,800",
        ),
        Figure(
            "stream: submit→claim p99",
            busy.p99,
            "ms",
            floor.rtt_p99_ms,
            "floor RTT p99",
            target=f"≤ {STREAM_P99_MS:g}",
            ok=busy.p99 <= STREAM_P99_MS,
        ),
        Figure(
            f"master CPU, {AGENTS} agents long-polling an empty queue",
            results.idle_agents,
            "% core",
            results.idle_master,
            "master alone",
            go="53 (tight poll)",
            target="≤ 1",
            ok=results.idle_agents <= 1,
        ),
    ]


def main() -> None:
    run_standalone(TITLE, __doc__, run)


if __name__ == "__main__":
    main()
