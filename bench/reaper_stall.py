"""How long the master's event loop stalls while the reaper ends 20,000 expired leases at once.

A fleet that vanished (a network split, a rack powered off) leaves every lease it held to expire
together, and the reaper then ends them all. Issue 9 measured one reaper pass over 20K expired
leases holding the event loop for 1.38 s; the target is that the reaper works in bounded
batches, so no request waits longer than one of them. Method: 64 v1.0 nodes (no slot limit)
claim 20,000 jobs, send one heartbeat each at the same moment and go silent, so that every
lease expires together; the master runs with `--node-timeout 10s`. One client sends `GET
/health` every 5 ms throughout; the figure is its longest round trip from just before the leases
expire until every job is queued again, against its p99 before (same run, same client).
Run: `.venv/bin/python -m bench.reaper_stall [--quick] [--postgres URL]`.
"""

from __future__ import annotations

import asyncio
import time

from bench.common import (
    CONCURRENCY,
    SERVER_CORE,
    Context,
    Figure,
    HttpClient,
    empty_postgres,
    measure,
    percentile,
    register_nodes,
    run_async,
    run_standalone,
    serve,
    submit_jobs,
)
from tests.processes import MasterProcess, free_port

TITLE = "Event-loop stall while the reaper ends a vanished fleet's leases"
NODE_TIMEOUT_S = 10.0
PROBE_GAP_S = 0.005
STALL_TARGET_MS = 50.0
SETTLE_TIMEOUT_S = 120.0


async def claim_all(master: MasterProcess, fleet: list[str], count: int) -> None:
    left = iter(range(count))
    nodes = iter(fleet)

    async def worker(client: HttpClient) -> None:
        node = next(nodes)
        for _ in left:
            job = await client.json("GET", f"/jobs/next?node_id={node}")
            if job.get("id") is None:
                raise RuntimeError(f"a claim found no job: {job}")

    await measure(master, worker)


async def probe(client: HttpClient, until: float) -> list[float]:
    """Round trips of `GET /health` (ms), one every PROBE_GAP_S, until `until`."""
    times = []
    while time.monotonic() < until:
        start = time.perf_counter()
        await client.call("GET", "/health")
        times.append((time.perf_counter() - start) * 1000)
        await asyncio.sleep(PROBE_GAP_S)
    return times


async def running_jobs(master: MasterProcess) -> int:
    """On a connection of its own (the master closes one that stays silent too long)."""
    client = await HttpClient.connect(master.port)
    try:
        reply = await client.json("GET", "/jobs?status=running&limit=1")
    finally:
        await client.close()
    return int(reply["total"])


async def renew_all(master: MasterProcess, fleet: list[str]) -> float:
    """One heartbeat per node, all at once: every lease then expires at the same moment."""
    nodes = iter(fleet)

    async def worker(client: HttpClient) -> None:
        for node in nodes:
            await client.call("POST", f"/nodes/{node}/heartbeat")

    await measure(master, worker)
    return time.monotonic()


async def scenario(master: MasterProcess, count: int) -> tuple[list[float], list[float], float]:
    fleet = await register_nodes(master, CONCURRENCY)
    await submit_jobs(master, count, 5_000)
    await claim_all(master, fleet, count)
    renewed_at = await renew_all(master, fleet)
    expiry = renewed_at + NODE_TIMEOUT_S
    prober = await HttpClient.connect(master.port)
    try:
        before = await probe(prober, expiry - 0.5)
        during: list[float] = []
        while time.monotonic() < expiry + SETTLE_TIMEOUT_S:
            during += await probe(prober, time.monotonic() + 1.0)
            if await running_jobs(master) == 0:
                break
        else:
            raise RuntimeError(f"jobs still running {SETTLE_TIMEOUT_S:g} s after the timeout")
        drained_s = time.monotonic() - expiry
    finally:
        await prober.close()
    return before, during, drained_s


def run(ctx: Context) -> list[Figure]:
    count = ctx.size(20_000, 1_000)
    port = free_port()
    if ctx.postgres is not None:
        empty_postgres(ctx.postgres)
    master = MasterProcess(
        ctx.workdir,
        name=f"master-{port}",
        port=port,
        store=ctx.postgres,
        node_timeout=f"{NODE_TIMEOUT_S:g}s",
        extra_args=["--log-level", "error"],
        cores={SERVER_CORE},
    )
    with serve(master):
        before, during, drained_s = run_async(scenario(master, count))
    quiet_p99 = percentile(before, 99)
    worst = max(during)
    print(
        f"  {count:,} leases ended and their jobs queued again within {drained_s:.1f} s of "
        f"their expiry (checked each second); probe p50 {percentile(during, 50):.2f} ms, p99 "
        f"{percentile(during, 99):.2f} ms, max {worst:.1f} ms over {len(during)} probes"
    )
    return [
        Figure(
            f"longest GET /health while {count:,} leases expire",
            worst,
            "ms",
            quiet_p99,
            "probe p99 before",
            target=f"≤ {STALL_TARGET_MS:g}",
            ok=worst <= STALL_TARGET_MS,
        ),
        Figure("GET /health p99, same window", percentile(during, 99), "ms", quiet_p99, "before"),
    ]


def main() -> None:
    run_standalone(TITLE, __doc__, run)


if __name__ == "__main__":
    main()
