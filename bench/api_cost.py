"""Master CPU per request and per job lifecycle, v1.0 way and ffleet's protocol.

Issue 9's targets: a job's lifecycle with ffleet's own protocol (batch submission, each result
with `claim_next`, 64 agents) at most the Go v1.0 master's create + claim + result, ~215 µs;
heartbeat and claim at most 2.5x Go's. The Go figures were measured earlier on this machine
kind (in-memory store, one core, 64 clients), not in this run: compare figures within one run,
through their ratio to the floor measured in it. ffleet's lifecycle, the verdict, is the median
of 5 rounds, each on a fresh master, shown with their range. With `--postgres URL` the masters
run on PostgreSQL, and the database server's own CPU per job is reported beside the master's.
Run: `.venv/bin/python -m bench.api_cost [--quick] [--postgres URL]`.
"""

from __future__ import annotations

import statistics

from bench.common import (
    CONCURRENCY,
    ENCODER,
    JOB,
    JOB_BODY,
    Context,
    Figure,
    HttpClient,
    Measurement,
    measure,
    node_body,
    postgres_cpu_seconds,
    register_nodes,
    replay,
    result_body,
    run_async,
    run_master,
    run_standalone,
    submit_jobs,
)
from tests.processes import MasterProcess

TITLE = "Master CPU per request and per job lifecycle"
# Go v1.0, measured earlier on this machine kind (issue 9), µs of server CPU.
GO_PER_REQUEST = {"register": 48, "heartbeat": 44, "create job": 46, "post result": 36}
GO_CLAIM_US = 133  # with 100K jobs queued
GO_CLAIM = f"{GO_CLAIM_US} @100K"
GO_LIFECYCLE = 215  # create + claim + result
GO_NOTE = (
    "Go v1.0 column: measured earlier on this machine kind, not in this run; "
    "use ratios within a run only (the x floor column)"
)
TARGET_FACTOR = 2.5
PICKY_JOB_BODY = ENCODER.encode({**JOB, "requirements": {"min_cpu_threads": 4}})
PICKY_BUDGET_S = 10.0  # such a create has cost O(nodes) (see BENCHMARKS.md): bounded in time
REQUIREMENTS_FACTOR = 1.5  # create with requirements in that fleet, against create without
BATCH = 100  # jobs per POST /jobs/batch in ffleet's lifecycle
# ffleet's lifecycle, the verdict against Go: the median of rounds on fresh masters, so that one
# slow minute of this shared machine (±20 % within minutes) does not decide it.
LIFECYCLE_ROUNDS = 5
LIFECYCLE_JOBS = 3_000  # per round


async def per_request(master: MasterProcess, count: int) -> dict[str, Measurement]:
    """Each v1.0 request type in its own measured phase, with a fleet of one node per client."""
    fleet = await register_nodes(master, CONCURRENCY)
    phases: dict[str, Measurement] = {}
    phases["heartbeat"] = await measure(
        master,
        replay(("POST", f"/nodes/{fleet[i % len(fleet)]}/heartbeat", b"") for i in range(count)),
    )
    phases["create job"] = await measure(
        master, replay((("POST", "/jobs", JOB_BODY) for _ in range(count)), 201)
    )
    claimed: list[tuple[dict[str, object], str]] = []
    nodes = iter(fleet)
    claims = iter(range(count))

    async def claimer(client: HttpClient) -> None:
        node = next(nodes)
        for _ in claims:
            job = await client.json("GET", f"/jobs/next?node_id={node}")
            if job.get("id") is not None:  # PostgreSQL: a claim skips rows others hold locked
                claimed.append((job, node))

    phases["claim"] = await measure(master, claimer)
    phases["post result"] = await measure(
        master, replay(("POST", "/results", result_body(job, node)) for job, node in claimed)
    )
    phases["register"] = await measure(
        master,
        replay(
            (("POST", "/nodes/register", ENCODER.encode(node_body(i))) for i in range(count)), 201
        ),
    )
    return phases


async def create_in_crowd(
    master: MasterProcess, crowd: int, count: int
) -> tuple[Measurement, Measurement]:
    """POST /jobs, plain and with requirements, once `crowd` more nodes are registered."""
    await register_nodes(master, crowd)
    plain = await measure(master, replay((("POST", "/jobs", JOB_BODY) for _ in range(count)), 201))
    picky_calls = (("POST", "/jobs", PICKY_JOB_BODY) for _ in range(count))
    picky = await measure(master, replay(picky_calls, 201, PICKY_BUDGET_S))
    return plain, picky


async def lifecycle_v1(master: MasterProcess, count: int) -> float:
    """µs per job the v1.0 way: POST /jobs, GET /jobs/next, POST /results (3 requests)."""
    nodes = iter(await register_nodes(master, CONCURRENCY))
    jobs = iter(range(count))

    async def agent(client: HttpClient) -> None:
        node = next(nodes)
        for _ in jobs:
            await client.call("POST", "/jobs", JOB_BODY, 201)
            job = await client.json("GET", f"/jobs/next?node_id={node}")
            if job.get("id") is not None:
                await client.call("POST", "/results", result_body(job, node))

    return (await measure(master, agent)).us_per(count)


async def lifecycle_ffleet(master: MasterProcess, count: int) -> float:
    """µs per job with ffleet's protocol: jobs arrive BATCH per request, and each result carries
    `claim_next`, so its reply is the agent's next job (about 1 + 1/BATCH requests per job)."""
    nodes = iter(await register_nodes(master, CONCURRENCY, slots=1))
    submitted = await submit_jobs(master, count, BATCH)

    async def agent(client: HttpClient) -> None:
        node = next(nodes)
        job = await client.json("GET", f"/jobs/next?node_id={node}")
        while job and job.get("id") is not None:
            reply = await client.json("POST", "/results", result_body(job, node, claim_next=True))
            job = reply.get("job")

    drained = await measure(master, agent)
    return (submitted.cpu_s + drained.cpu_s) * 1e6 / count


def lifecycle_rounds(ctx: Context) -> tuple[list[float], float]:
    """`lifecycle_ffleet` on a fresh master each round: µs per job of each round, and the
    database server's CPU per job over them all (meaningful with --postgres only)."""
    rounds, count = ctx.size(LIFECYCLE_ROUNDS, 1), ctx.size(LIFECYCLE_JOBS, 200)
    per_job, database_s = [], 0.0
    for _ in range(rounds):
        with run_master(ctx) as master:
            started = postgres_cpu_seconds()
            per_job.append(run_async(lifecycle_ffleet(master, count)))
            database_s += postgres_cpu_seconds() - started
    return per_job, database_s * 1e6 / (rounds * count)


def against_go(kind: str, label: str, value: float, floor: float) -> Figure:
    go = GO_PER_REQUEST[kind]
    limit = TARGET_FACTOR * go
    target = f"≤ {limit:.0f} (2.5x Go)"
    return Figure(label, value, "µs", floor, go=str(go), target=target, ok=value <= limit)


def run(ctx: Context) -> list[Figure]:
    count = ctx.size(5_000, 200)
    crowd_size = ctx.size(5_000, 200)
    with run_master(ctx) as master:
        phases = run_async(per_request(master, count))
        plain, picky = run_async(create_in_crowd(master, crowd_size, ctx.size(1_000, 50)))
    database: dict[str, float] = {}
    with run_master(ctx) as master:
        started = postgres_cpu_seconds()
        v1 = run_async(lifecycle_v1(master, count))
        database["v1.0"] = (postgres_cpu_seconds() - started) * 1e6 / count
    ffleet_rounds, database["ffleet"] = lifecycle_rounds(ctx)
    ffleet = statistics.median(ffleet_rounds)
    print(f"ffleet lifecycle rounds, µs/job: {', '.join(f'{r:.0f}' for r in ffleet_rounds)}")
    with run_master(ctx, log_level="info") as master:
        v1_info = run_async(lifecycle_v1(master, count))
    print(GO_NOTE)

    floor = ctx.floor.us_per_request
    cost = {name: phase.us_per_request for name, phase in phases.items()}
    fleet = f"{crowd_size + CONCURRENCY + count:,} nodes registered"
    figures = [
        against_go("register", "register", cost["register"], floor),
        against_go("heartbeat", "heartbeat (v1.0, no body)", cost["heartbeat"], floor),
        against_go("create job", "create job", cost["create job"], floor),
        Figure(
            f"claim (queue {count:,} → 0)",
            cost["claim"],
            "µs",
            floor,
            go=GO_CLAIM,
            target=f"≤ {TARGET_FACTOR * GO_CLAIM_US:.0f} (2.5x Go)",
            ok=cost["claim"] <= TARGET_FACTOR * GO_CLAIM_US,
        ),
        against_go("post result", "post result", cost["post result"], floor),
        against_go("create job", f"create job, {fleet}", plain.us_per_request, floor),
        Figure(
            "create job with requirements, same",
            picky.us_per_request,
            "µs",
            plain.us_per_request,
            baseline_name="without, same fleet",
            target=f"≤ {REQUIREMENTS_FACTOR}x",
            ok=picky.us_per_request <= REQUIREMENTS_FACTOR * plain.us_per_request,
        ),
        Figure("job lifecycle, v1.0 (3 requests)", v1, "µs/job", floor, go=str(GO_LIFECYCLE)),
        Figure(
            f"job lifecycle, ffleet (batch {BATCH} + result/claim_next)",
            ffleet,
            f"µs/job (median of {len(ffleet_rounds)}: "
            f"{min(ffleet_rounds):.0f}-{max(ffleet_rounds):.0f})",
            floor,
            go=str(GO_LIFECYCLE),
            target=f"≤ {GO_LIFECYCLE} (1.0x Go)",
            ok=ffleet <= GO_LIFECYCLE,
        ),
        Figure(
            "job lifecycle, v1.0, --log-level info",
            v1_info,
            "µs/job",
            v1,
            baseline_name="same at warning",
        ),
    ]
    if ctx.postgres is not None:
        figures += [
            Figure(f"PostgreSQL server CPU per job, {way} lifecycle", us, "µs/job", floor)
            for way, us in database.items()
        ]
    return figures


def main() -> None:
    run_standalone(TITLE, __doc__, run)


if __name__ == "__main__":
    main()
