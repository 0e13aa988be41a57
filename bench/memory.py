"""Master resident memory with 10K nodes registered and 100K jobs queued (1M with --million).

Issue 9's target: peak ≤ 100 MiB with 10K nodes and 1M jobs, and flat at 1M jobs (Go v1.0,
measured earlier: 22 MiB after 10K nodes, 146 MiB after 100K jobs, 201 MiB peak; it never frees
completed jobs). RSS is VmRSS and the peak VmHWM
from /proc/PID/status; the baseline is the floor app's RSS (interpreter + uvicorn) from this run.
Run: `.venv/bin/python -m bench.memory [--quick] [--million] [--postgres URL]` (--million takes
minutes).
"""

from __future__ import annotations

from bench.common import (
    Context,
    Figure,
    Memory,
    memory_of,
    parser,
    print_table,
    register_nodes,
    run_async,
    run_master,
    session,
    submit_jobs,
)
from tests.processes import MasterProcess

TITLE = "Master memory"
PEAK_TARGET_MIB = 100.0
FLAT = 1.1  # "flat at 1M jobs": RSS at 1M at most 10% above RSS at 100K
BATCH = 5_000


async def grow(master: MasterProcess, nodes: int, job_steps: list[int]) -> list[Memory]:
    """Memory at start, after `nodes` registrations, then after each total of queued jobs."""
    readings = [memory_of(master.pid)]
    await register_nodes(master, nodes)
    readings.append(memory_of(master.pid))
    queued = 0
    for total in job_steps:
        await submit_jobs(master, total - queued, BATCH)
        queued = total
        readings.append(memory_of(master.pid))
        print(f"  {total:,} jobs queued: RSS {readings[-1].rss_mib:.1f} MiB")
    return readings


def run(ctx: Context, million: bool = False) -> list[Figure]:
    nodes = ctx.size(10_000, 200)
    steps = [ctx.size(100_000, 2_000)] + ([ctx.size(1_000_000, 20_000)] if million else [])
    with run_master(ctx) as master:
        start, registered, *queued = run_async(grow(master, nodes, steps))
    rss = ctx.floor.rss_mib
    jobs = f"+ {steps[0]:,} jobs"
    figures = [
        Figure("master RSS at start", start.rss_mib, "MiB", rss, "floor RSS"),
        Figure(f"master RSS, {nodes:,} nodes", registered.rss_mib, "MiB", rss, "floor RSS", "22"),
        Figure(f"master RSS, {jobs}", queued[0].rss_mib, "MiB", rss, "floor RSS", "146"),
    ]
    if million:
        limit = FLAT * queued[0].rss_mib
        figures.append(
            Figure(
                f"master RSS, + {steps[-1]:,} jobs",
                queued[-1].rss_mib,
                "MiB",
                queued[0].rss_mib,
                f"RSS at {steps[0]:,}",
                target=f"≤ {limit:.0f} (flat)",
                ok=queued[-1].rss_mib <= limit,
            )
        )
    peak = queued[-1].peak_mib
    figures.append(
        Figure(
            f"master peak RSS (VmHWM), {nodes:,} nodes + {steps[-1]:,} jobs",
            peak,
            "MiB",
            rss,
            "floor RSS",
            "201",
            f"≤ {PEAK_TARGET_MIB:.0f}",
            peak <= PEAK_TARGET_MIB,
        )
    )
    return figures


def main() -> None:
    arguments = parser(__doc__)
    arguments.add_argument(
        "--million", action="store_true", help="also queue 1M jobs (slow: several minutes)"
    )
    args = arguments.parse_args()
    with session(args.quick, args.postgres) as ctx:
        print_table(TITLE, run(ctx, args.million))


if __name__ == "__main__":
    main()
