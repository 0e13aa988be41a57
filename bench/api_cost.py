"""Master CPU per request and per job lifecycle, v1.0 way and ffleet's protocol.

Issue 5's targets: register / heartbeat / create / result at most 2.5x Go v1.0's
121 / 104 / 119 / 115 µs, and a job lifecycle with ffleet's own protocol at most Go's 387 µs.
Run: `.venv/bin/python -m bench.api_cost [--quick]`.
"""

from __future__ import annotations

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
GO_PER_REQUEST = {"register": 121, "heartbeat": 104, "create job": 119, "post result": 115}
GO_LIFECYCLE = 387
TARGET_FACTOR = 2.5
PICKY_JOB_BODY = ENCODER.encode({**JOB, "requirements": {"min_cpu_threads": 4}})
PICKY_BUDGET_S = 10.0  # such a create has cost O(nodes) (see BENCHMARKS.md): bounded in time
BATCH = 100  # jobs per POST /jobs/batch in ffleet's lifecycle


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
            claimed.append((await client.json("GET", f"/jobs/next?node_id={node}"), node))

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
    with run_master(ctx) as master:
        v1 = run_async(lifecycle_v1(master, count))
        ffleet = run_async(lifecycle_ffleet(master, count))
    with run_master(ctx, log_level="info") as master:
        v1_info = run_async(lifecycle_v1(master, count))

    floor = ctx.floor.us_per_request
    cost = {name: phase.us_per_request for name, phase in phases.items()}
    fleet = f"{crowd_size + CONCURRENCY + count:,} nodes registered"
    return [
        against_go("register", "register", cost["register"], floor),
        against_go("heartbeat", "heartbeat (v1.0, no body)", cost["heartbeat"], floor),
        against_go("create job", "create job", cost["create job"], floor),
        Figure(f"claim (queue {count:,} → 0)", cost["claim"], "µs", floor, go="153 @20K"),
        against_go("post result", "post result", cost["post result"], floor),
        against_go("create job", f"create job, {fleet}", plain.us_per_request, floor),
        against_go("create job", "create job with requirements, same", picky.us_per_request, floor),
        Figure("job lifecycle, v1.0 (3 requests)", v1, "µs/job", floor, go=str(GO_LIFECYCLE)),
        Figure(
            f"job lifecycle, ffleet (batch {BATCH} + result/claim_next)",
            ffleet,
            "µs/job",
            floor,
            go=str(GO_LIFECYCLE),
            target=f"≤ {GO_LIFECYCLE}",
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


def main() -> None:
    run_standalone(TITLE, __doc__, run)


if __name__ == "__main__":
    main()
