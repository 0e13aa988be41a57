"""10,000 simulated agents on one master: its CPU share, its memory and dispatch latency.

Issue 9's goal 6: with 10,000 agents long-polling and heartbeating every 30 s, the master
(SQLite) stays within 50% of a core and 500 MiB. Never measured before; Go v1.0 has no
long-poll.

Each simulated agent behaves as ffleet's: registered with one slot, it holds `GET
/jobs/next?node_id=X&wait=30` on a kept-alive connection of its own, posts each job's result
with `claim_next` on it, and heartbeats every 30 s. Heartbeats go on a fresh connection each
(from 127.0.0.2, a port range of their own): a second kept-alive connection per agent would
take the master past the 20,000 open files this machine's hard limit allows (the benchmark
raises its soft limit, which the master inherits). The agents start spread over one heartbeat
interval, as a fleet that started over time, so that heartbeats and poll renewals arrive
evenly. Then, over the measured window, a submitter sends STREAM_RATE single jobs a second
(`POST /jobs`); whichever agent the master wakes claims it and "finishes" it at once.

Figures: the master's CPU (utime + stime, /proc/PID/stat) over the window in % of one core,
against the same master idle with the nodes registered and nothing connected; its RSS at the
end of the window and its peak (VmHWM); submit→claim p50 / p99 against the floor's round trip;
requests and errors in the window; this load generator's own CPU (a saturated generator would
inflate the latencies).
Run: `.venv/bin/python -m bench.fleet_scale [--quick]` (~3 min; --quick 200 agents).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from bench.common import (
    JOB_BODY,
    SERVER_CORE,
    Context,
    Figure,
    HttpClient,
    HttpError,
    memory_of,
    percentile,
    process_cpu_seconds,
    raise_open_files_limit,
    register_nodes,
    result_body,
    run_async,
    run_standalone,
    serve,
)
from tests.processes import HOST, MasterProcess

TITLE = "Fleet scale: 10,000 agents on one master"
AGENTS = 10_000
WAIT_S = 30
HEARTBEAT_S = 30.0
BEAT_SOURCE = "127.0.0.2"  # heartbeats connect from here: ports apart from the polls'
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux; 3.12 names it
STREAM_RATE = 5.0  # jobs per second over the window
WINDOW_S = 60.0
IDLE_S = 10.0  # the registered fleet with nothing connected: the baseline
SETTLE_S = 5.0  # after the last agent started, before the window
RAMP_RATE = 200.0  # agents started a second at most (the master's accept backlog is 2,048)
CPU_TARGET_PERCENT = 50.0
RSS_TARGET_MIB = 500.0
CLAIM_TIMEOUT_S = 10.0  # a job not claimed this long after the window is counted lost
RETRY_S = 1.0  # an agent whose request failed tries again after this
OPEN_FILES_SPARE = 500  # the master's store, logs and listening socket, and this process's
# What a failed request raises here: an error status, a refused or reset connection, a reply
# cut short, no reply in time, a write to a connection the master closed.
HTTP_ERRORS = (HttpError, OSError, EOFError, TimeoutError, RuntimeError)


@dataclass
class Tally:
    """What the fleet saw; `claims` maps job ids to the moment an agent held them."""

    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    claims: dict[str, float] = field(default_factory=dict)

    def failed(self, kind: str, exc: BaseException) -> None:
        self.errors[f"{kind}: {type(exc).__name__}"] += 1


class SimulatedAgent:
    def __init__(self, node_id: str, port: int, tally: Tally, heartbeat_s: float) -> None:
        self.node_id = node_id
        self.port = port
        self.tally = tally
        self.heartbeat_s = heartbeat_s

    async def run(self, start_in: float) -> None:
        """Poll and beat until cancelled; the first beat one interval after the start."""
        await asyncio.sleep(start_in)
        beats = asyncio.create_task(self._beat())
        try:
            while True:
                try:
                    await self._poll()
                except HTTP_ERRORS as exc:
                    self.tally.failed("poll", exc)
                    await asyncio.sleep(RETRY_S)
        finally:
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats

    async def _poll(self) -> None:
        client = await HttpClient.connect(self.port)
        path = f"/jobs/next?node_id={self.node_id}&wait={WAIT_S}"
        try:
            while True:
                job = await client.json("GET", path)
                self.tally.requests["poll"] += 1
                while job and job.get("id") is not None:
                    self.tally.claims[job["id"]] = time.monotonic()
                    body = result_body(job, self.node_id, claim_next=True)
                    job = (await client.json("POST", "/results", body)).get("job")
                    self.tally.requests["result"] += 1
        finally:
            await client.close()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                reader, writer = await asyncio.open_connection(sock=await beat_socket(self.port))
                client = HttpClient(reader, writer)
                try:
                    await client.call("POST", f"/nodes/{self.node_id}/heartbeat")
                finally:
                    await client.close()
                self.tally.requests["heartbeat"] += 1
            except HTTP_ERRORS as exc:
                self.tally.failed("heartbeat", exc)


async def beat_socket(port: int) -> socket.socket:
    """A connection from BEAT_SOURCE whose port the kernel picks at connect, not at bind.

    A plain bind to port 0 must find a port no socket of that address holds, TIME_WAIT ones
    included, scanning the range with the event loop held: 333 heartbeats a second leave up
    to 20,000 in TIME_WAIT, a bind took ~8 ms at 16,000 here, this generator stalled for up
    to 11 s, and its requests reached the master after the header timeout had closed their
    connections (IncompleteReadError). With the port chosen at connect, a TIME_WAIT of the
    same four-tuple is reused (loopback: net.ipv4.tcp_tw_reuse).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.setblocking(False)
        sock.bind((BEAT_SOURCE, 0))
        await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
    except BaseException:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def fleet(
    master: MasterProcess, nodes: list[str], tally: Tally, heartbeat_s: float
) -> AsyncIterator[None]:
    """The agents run for the block, their starts spread over one heartbeat interval."""
    spread = random.Random(9)
    agents = [SimulatedAgent(node, master.port, tally, heartbeat_s) for node in nodes]
    ramp_s = min(heartbeat_s, len(nodes) / RAMP_RATE)
    tasks = [asyncio.create_task(a.run(spread.uniform(0, ramp_s))) for a in agents]
    try:
        await asyncio.sleep(ramp_s)
        yield
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    if failures:
        raise RuntimeError(f"{len(failures)} simulated agent(s) failed") from failures[0]


async def submit_stream(master: MasterProcess, window_s: float, tally: Tally) -> list[float]:
    """STREAM_RATE jobs a second over the window; submit→claim milliseconds of each job
    claimed within CLAIM_TIMEOUT_S of the window's end (the others are missing)."""
    client: HttpClient | None = None
    submitted: dict[str, float] = {}
    start = time.monotonic()
    try:
        for index in range(int(window_s * STREAM_RATE)):
            await asyncio.sleep(max(0.0, start + index / STREAM_RATE - time.monotonic()))
            sent = time.monotonic()
            try:
                client = client or await HttpClient.connect(master.port)
                job = await client.json("POST", "/jobs", JOB_BODY, 201)
            except HTTP_ERRORS as exc:
                tally.failed("submit", exc)
                if client is not None:
                    await client.close()
                client = None  # the master may have closed it: a fresh one next time
                continue
            submitted[job["id"]] = sent
        await asyncio.sleep(max(0.0, start + window_s - time.monotonic()))
    finally:
        if client is not None:
            await client.close()
    deadline = time.monotonic() + CLAIM_TIMEOUT_S
    while not submitted.keys() <= tally.claims.keys() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return [(tally.claims[j] - t) * 1000 for j, t in submitted.items() if j in tally.claims]


async def cpu_share(pid: int, seconds: float) -> float:
    cpu = process_cpu_seconds(pid)
    start = time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (process_cpu_seconds(pid) - cpu) / (time.monotonic() - start)


@dataclass(frozen=True)
class Scale:
    agents: int
    heartbeat_s: float
    idle_percent: float
    window_s: float
    cpu_percent: float
    generator_percent: float
    rss_mib: float
    peak_mib: float
    latencies_ms: list[float]
    submitted: int
    tally: Tally


async def scenario(
    master: MasterProcess, agents: int, heartbeat_s: float, window_s: float, idle_s: float
) -> Scale:
    nodes = await register_nodes(master, agents, slots=1)
    idle = await cpu_share(master.pid, idle_s)
    tally = Tally()
    async with fleet(master, nodes, tally, heartbeat_s):
        await asyncio.sleep(min(SETTLE_S, window_s))
        before = tally.requests.copy()
        cpu, own = process_cpu_seconds(master.pid), process_cpu_seconds(os.getpid())
        started = time.monotonic()
        latencies = await submit_stream(master, window_s, tally)
        elapsed = time.monotonic() - started
        cpu = process_cpu_seconds(master.pid) - cpu
        own = process_cpu_seconds(os.getpid()) - own
        memory = memory_of(master.pid)
        window = Tally(tally.requests - before, tally.errors, tally.claims)
    return Scale(
        agents=agents,
        heartbeat_s=heartbeat_s,
        idle_percent=idle,
        window_s=elapsed,
        cpu_percent=100 * cpu / elapsed,
        generator_percent=100 * own / elapsed,
        rss_mib=memory.rss_mib,
        peak_mib=memory.peak_mib,
        latencies_ms=latencies,
        submitted=int(window_s * STREAM_RATE),
        tally=window,
    )


def measure_scale(ctx: Context, agents: int) -> Scale:
    # Per agent: its poll connection here and at the master, and heartbeats in flight; the
    # master's cap with room to spare (it lowers it to what its open-files limit allows).
    raise_open_files_limit(agents + OPEN_FILES_SPARE)
    connections = 2 * agents + OPEN_FILES_SPARE
    master = MasterProcess(
        ctx.workdir,
        name="master-scale",
        extra_args=[
            "--log-level",
            "warning",
            *("--max-long-polls", str(agents), "--max-connections", str(connections)),
        ],
        cores={SERVER_CORE},
    )
    # --quick beats every second, so that its few seconds see heartbeats too.
    heartbeat_s, window_s, idle_s = ctx.size((HEARTBEAT_S, WINDOW_S, IDLE_S), (1.0, 3.0, 1.0))
    with serve(master) as server:
        return run_async(scenario(server, agents, heartbeat_s, window_s, idle_s))


def run(ctx: Context) -> list[Figure]:
    found = measure_scale(ctx, ctx.size(AGENTS, 200))
    tally = found.tally
    print(
        f"  {found.agents:,} agents, window {found.window_s:.0f} s: requests "
        + ", ".join(f"{kind} {count:,}" for kind, count in sorted(tally.requests.items()))
        + f"; {len(found.latencies_ms)}/{found.submitted} jobs claimed; this generator "
        f"{found.generator_percent:.0f}% of its core"
    )
    for error, count in sorted(tally.errors.items()):
        print(f"  errors: {count} x {error}")
    claimed = len(found.latencies_ms)
    floor = ctx.floor
    errors = sum(tally.errors.values())
    return [
        Figure(
            f"master CPU, {found.agents:,} agents ({found.heartbeat_s:g} s heartbeat, "
            f"{STREAM_RATE:g} jobs/s)",
            found.cpu_percent,
            "% core",
            found.idle_percent,
            "same nodes, none connected",
            target=f"≤ {CPU_TARGET_PERCENT:g}",
            ok=found.cpu_percent <= CPU_TARGET_PERCENT,
        ),
        Figure(
            f"master RSS, {found.agents:,} agents connected",
            found.rss_mib,
            "MiB",
            floor.rss_mib,
            "floor RSS",
            target=f"≤ {RSS_TARGET_MIB:g}",
            ok=found.peak_mib <= RSS_TARGET_MIB,
        ),
        Figure("master peak RSS (VmHWM)", found.peak_mib, "MiB", floor.rss_mib, "floor RSS"),
        Figure(
            f"submit→claim p50 ({claimed}/{found.submitted} claimed)",
            percentile(found.latencies_ms, 50),
            "ms",
            floor.rtt_p50_ms,
            "floor RTT p50",
        ),
        Figure(
            "submit→claim p99",
            percentile(found.latencies_ms, 99),
            "ms",
            floor.rtt_p99_ms,
            "floor RTT p99",
        ),
        Figure(
            "failed requests in the window",
            errors,
            "",
            target="0",
            ok=errors == 0 and claimed == found.submitted,
        ),
    ]


if __name__ == "__main__":
    run_standalone(TITLE, __doc__, run)
