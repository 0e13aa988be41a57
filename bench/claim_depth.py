"""Master CPU per claim (`GET /jobs/next?node_id=`) as the queue grows from 1K to 100K jobs
(to 1M with --million).

Issue 9's target: flat, the deepest/1K ratio at most 1.2 (Go v1.0, measured earlier on this
machine kind: 131-135 µs per claim at 100K queued). Each depth has a master of its own, all
started together (on SQLite; with --postgres one after the other) and filled with
`POST /jobs/batch` (unmeasured); then every round measures each master in turn, the order
reversed from one round to the next, so the depths share the machine's load and none is always
the first after a fill. A master's round starts at depth + claims jobs queued (refilled, then
the master idles: a fill's WAL checkpoints run after it, on a thread of their own) and ends at
the depth; the median round is reported. The masters' histories are the same but for the fill:
equal claims, registrations and running jobs at each round. (Measured one depth after the
other on a single master, as before, the same code gave 0.76x to 1.30x from run to run:
minutes apart, the machine's load moved the ratio more than the depth did.) Registration is
measured in each round too: an agent (re)starting while work is queued must not pay for the
queue either (target: 2.5x Go's 48 µs, as in api_cost).
Run: `.venv/bin/python -m bench.claim_depth [--quick] [--million] [--postgres URL]`.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    """µs per claim and per registration in each round at one depth."""

    claim_rounds: list[float]
    register_rounds: list[float]

    @property
    def claim_us(self) -> float:
        return statistics.median(self.claim_rounds)

    @property
    def register_us(self) -> float:
        return statistics.median(self.register_rounds)


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
    masters: dict[int, MasterProcess], claims: int, rounds: int, batch: int
) -> dict[int, DepthCost]:
    """Each depth's rounds, taken in turn on its own master (the order reversed each round)."""
    fleets = {depth: await register_nodes(master, CONCURRENCY) for depth, master in masters.items()}
    for depth, master in masters.items():
        await submit_jobs(master, depth, batch)
    costs = {depth: DepthCost([], []) for depth in masters}
    registrations = [
        ("POST", "/nodes/register", ENCODER.encode(node_body(i))) for i in range(claims // 4)
    ]
    order = list(masters)
    for _ in range(rounds):
        for depth in order:
            master = masters[depth]
            await submit_jobs(master, claims, batch)
            await settled(master)
            claim = await measure(master, claimer(fleets[depth], claims))
            costs[depth].claim_rounds.append(claim.us_per(claims))
            register = await measure(master, replay(registrations, 201))
            costs[depth].register_rounds.append(register.us_per_request)
        order.reverse()
    return costs


def measure_depths(ctx: Context, depths: list[int]) -> dict[int, DepthCost]:
    """SQLite: a master (and a file) per depth, all running, so their rounds alternate.
    PostgreSQL: the --postgres database holds one store, so one master after the other."""
    sizes = {
        "claims": ctx.size(2_000, 200),
        "rounds": ctx.size(7, 2),
        "batch": ctx.size(5_000, 500),
    }
    groups = [depths] if ctx.postgres is None else [[depth] for depth in depths]
    costs: dict[int, DepthCost] = {}
    for group in groups:
        with contextlib.ExitStack() as stack:
            masters = {depth: stack.enter_context(run_master(ctx)) for depth in group}
            costs |= run_async(depth_costs(masters, **sizes))
    for depth, cost in costs.items():
        rounds_text = ", ".join(f"{sample:.0f}" for sample in cost.claim_rounds)
        print(
            f"  depth {depth:,}: claim {cost.claim_us:.0f} µs (rounds: {rounds_text}), "
            f"register {cost.register_us:.0f} µs"
        )
    shallow, deep = costs[depths[0]].claim_rounds, costs[depths[-1]].claim_rounds
    paired = ", ".join(f"{d / s:.2f}" for s, d in zip(shallow, deep, strict=True))
    print(f"  claim, deepest / shallowest in each round: {paired}")
    return costs


def run(ctx: Context, million: bool = False) -> list[Figure]:
    depths = ctx.size([1_000, 20_000, 100_000], [100, 1_000])
    if million:
        depths.append(ctx.size(1_000_000, 10_000))
    costs = measure_depths(ctx, depths)
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
