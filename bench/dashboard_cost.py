"""Master CPU per dashboard render: what one open live page costs.

A live page's event stream renders its region once a second (master/ui/live.py), and a page
load renders the same region inside the page, so the master CPU of one `GET` of a page is what
one viewer of that page costs it per second. Measured on a fleet of 64 nodes, each running a
job, with the rest of the queue pending; the figure is compared with the floor's request and
with one core: at a render a second, 10,000 µs per render is 1% of a core per viewer, the
target.
Run: `.venv/bin/python -m bench.dashboard_cost [--quick]`.
"""

from __future__ import annotations

from bench.common import (
    CONCURRENCY,
    Context,
    Figure,
    HttpClient,
    measure,
    register_nodes,
    replay,
    run_async,
    run_master,
    run_standalone,
    submit_jobs,
)
from tests.processes import MasterProcess

TITLE = "Dashboard: master CPU per live-page render"
VIEWERS = 4  # concurrent page loads
TARGET_US = 10_000  # 1% of one core per viewer of a page rendered once a second


async def claim_one_each(master: MasterProcess, fleet: list[str]) -> None:
    client = await HttpClient.connect(master.port)
    try:
        for node in fleet:
            await client.json("GET", f"/jobs/next?node_id={node}")
    finally:
        await client.close()


async def render_costs(master: MasterProcess, jobs: int, renders: int) -> dict[str, float]:
    fleet = await register_nodes(master, CONCURRENCY, slots=1)
    await submit_jobs(master, jobs, 500)
    await claim_one_each(master, fleet)
    client = await HttpClient.connect(master.port)
    try:
        page = await client.json("GET", "/jobs?status=pending&limit=1")
    finally:
        await client.close()
    pending = page["jobs"][0]["id"]
    pages = {
        "fleet page (64 nodes, 64 running)": "/ui",
        f"jobs page (50 of {jobs:,})": "/ui/jobs",
        "pending job page (explained against 64 nodes)": f"/ui/jobs/{pending}",
    }
    costs = {}
    for name, path in pages.items():
        calls = [("GET", path, b"")] * renders
        costs[name] = (await measure(master, replay(calls), VIEWERS)).us_per_request
        share = costs[name] / TARGET_US
        print(f"  {name}: {costs[name]:.0f} µs CPU per render ({share:.2f}% of a core a viewer)")
    return costs


def run(ctx: Context) -> list[Figure]:
    with run_master(ctx) as master:
        costs = run_async(
            render_costs(master, jobs=ctx.size(10_000, 500), renders=ctx.size(500, 20))
        )
    return [
        Figure(
            name,
            us,
            "µs",
            ctx.floor.us_per_request,
            target=f"≤ {TARGET_US:,} µs (1% of a core per viewer)",
            ok=us <= TARGET_US,
        )
        for name, us in costs.items()
    ]


def main() -> None:
    run_standalone(TITLE, __doc__, run)


if __name__ == "__main__":
    main()
