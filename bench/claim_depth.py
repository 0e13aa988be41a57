"""Master CPU per claim (`GET /jobs/next?node_id=`) as the queue grows from 1K to 100K jobs
(to 1M with --million).

Issue 9's target: flat, the deepest/1K ratio at most 1.2 (Go v1.0, measured earlier on this
machine kind: 131-135 µs per claim at 100K queued). The queue is filled with `POST /jobs/batch`
(unmeasured), then, once the master idles again (the fill's WAL checkpoints run after it, on
a thread of their own), each depth is measured in rounds of claims that start at depth + claims
and end at the depth; the median round is reported. Registration is measured at each depth too: an
agent (re)starting while work is queued must not pay for the queue either (target: 2.5x Go's
48 µs, as in api_cost).
Run: `.venv/bin/python -m bench.claim_depth [--quick] [--million] [--postgres URL]`.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

from bench.common import (
    CONCURRENCY,
    ENCODER,
    Context,
    Figure,
    HttpClient,
    Worker,
    measure,
    node_body,
    parser,
    print_table,
    process_cpu_seconds,
    register_nodes,
    replay,
    run_async,
    run_master,
    session,
    submit_jobs,
)
from tests.processes import MasterProcess

TITLE = "Cost against queue depth"
GO_CLAIM = {100_000: "133"}  # measured earlier on this machine kind: ratios within a run only
GO_REGISTER = 48
FLATNESS = 1.2
SETTLE_TIMEOUT_S = 60.0
SETTLE_SAMPLE_S = 0.5
IDLE_SHARE = 0.1  # of a core


@dataclass(frozen=True)
class DepthCost:
    claim_us: float
    register_us: float


def claimer(fleet: list[str], claims: int) -> Worker:
    """Each client claims as its own node of the fleet until `claims` claims are made."""
    nodes = iter(fleet)
    left = iter(range(claims))

    async def worker(client: HttpClient) -> None:
        node = next(nodes)
        for _ in left:
            job = await client.json("GET", f"/jobs/next?node_id={node}")
            if job.get("id") is None:
                raise RuntimeError(f"a claim found no job: {job}")

    return worker


async def settled(master: MasterProcess) -> None:
    """Until the master idles: the WAL checkpoints of a large fill run on a thread of their own
    after it, and their CPU belongs to the fill, not to the claims measured next."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        before = process_cpu_seconds(master.pid)
        await asyncio.sleep(SETTLE_SAMPLE_S)
        if process_cpu_seconds(master.pid) - before <= SETTLE_SAMPLE_S * IDLE_SHARE:
            return


async def depth_costs(
    master: MasterProcess, depths: list[int], claims: int, rounds: int, batch: int
) -> dict[int, DepthCost]:
    """Median µs per claim, and µs per registration, at each depth."""
    fleet = await register_nodes(master, CONCURRENCY)
    queued = 0
    costs: dict[int, DepthCost] = {}
    for depth in depths:
        samples = []
        for _ in range(rounds):
            await submit_jobs(master, depth + claims - queued, batch)
            await settled(master)
            samples.append((await measure(master, claimer(fleet, claims))).us_per(claims))
            queued = depth
        registrations = [
            ("POST", "/nodes/register", ENCODER.encode(node_body(i))) for i in range(claims // 10)
        ]
        register = await measure(master, replay(registrations, 201))
        costs[depth] = DepthCost(statistics.median(samples), register.us_per_request)
        rounds_text = ", ".join(f"{sample:.0f}" for sample in samples)
        print(
            f"  depth {depth:,}: claim {costs[depth].claim_us:.0f} µs (rounds: {rounds_text}), "
            f"register {costs[depth].register_us:.0f} µs"
        )
    return costs


def run(ctx: Context, million: bool = False) -> list[Figure]:
    depths = ctx.size([1_000, 20_000, 100_000], [100, 1_000])
    if million:
        depths.append(ctx.size(1_000_000, 10_000))
    with run_master(ctx) as master:
        costs = run_async(
            depth_costs(
                master,
                depths,
                claims=ctx.size(2_000, 200),
                rounds=ctx.size(3, 1),
                batch=ctx.size(5_000, 500),
            )
        )
    floor = ctx.floor.us_per_request
    figures = [
        Figure(
            f"claim, {depth:,} jobs queued", cost.claim_us, "µs", floor, go=GO_CLAIM.get(depth, "—")
        )
        for depth, cost in costs.items()
    ]
    shallow, deep = depths[0], depths[-1]
    ratio = costs[deep].claim_us / costs[shallow].claim_us
    figures.append(
        Figure(
            f"claim cost ratio {deep:,} / {shallow:,} queued",
            ratio,
            "x",
            go="—",
            target=f"≤ {FLATNESS}",
            ok=ratio <= FLATNESS,
        )
    )
    limit = 2.5 * GO_REGISTER
    figures += [
        Figure(
            f"register, {depth:,} jobs queued",
            cost.register_us,
            "µs",
            floor,
            go=str(GO_REGISTER),
            target=f"≤ {limit:.0f} (2.5x Go)",
            ok=cost.register_us <= limit,
        )
        for depth, cost in costs.items()
    ]
    return figures


def main() -> None:
    arguments = parser(__doc__)
    arguments.add_argument(
        "--million", action="store_true", help="also measure at 1M jobs queued (~2 min more)"
    )
    args = arguments.parse_args()
    with session(args.quick, args.postgres) as ctx:
        print_table(TITLE, run(ctx, args.million))


if __name__ == "__main__":
    main()
