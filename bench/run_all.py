"""The whole benchmark suite (the master's costs, then the fleet's and the agent's with real
FFmpeg) in one invocation, with one summary table.

Run: `.venv/bin/python -m bench.run_all [--quick]`. Every figure is printed with its ratio to a
baseline measured in this same run, the Go v1.0 anchor recorded earlier on this machine kind and the
target. `--quick` is CI's smoke test: tiny counts, under a minute, and its figures and verdicts
mean nothing. The exit status is 0 whatever the verdicts; only a broken benchmark fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bench import (
    agent_overhead,
    api_cost,
    claim_depth,
    dashboard_cost,
    dispatch_latency,
    fleet_efficiency,
    fleet_scale,
    long_poll_cost,
    memory,
    observability,
    reaper_stall,
    repeat_variance,
    split_makespan,
)
from bench.common import Context, Figure, parser, print_table, session

SUITES: list[tuple[str, Callable[[Context], list[Figure]]]] = [
    (api_cost.TITLE, api_cost.run),
    (claim_depth.TITLE, claim_depth.run),
    (reaper_stall.TITLE, reaper_stall.run),
    (dispatch_latency.TITLE, dispatch_latency.run),
    (long_poll_cost.TITLE, long_poll_cost.run),
    (fleet_scale.TITLE, fleet_scale.run),
    (dashboard_cost.TITLE, dashboard_cost.run),
    (memory.TITLE, memory.run),
    (observability.TITLE, observability.run),
    (fleet_efficiency.TITLE, fleet_efficiency.run),
    (agent_overhead.TITLE, agent_overhead.run),
    (repeat_variance.TITLE, repeat_variance.run),
    (split_makespan.TITLE, split_makespan.run),
]


def main() -> None:
    args = parser(__doc__).parse_args()
    started = time.monotonic()
    summary: list[Figure] = []
    with session(args.quick, args.postgres) as ctx:
        for title, run in SUITES:
            print(f"\n== {title}")
            suite_started = time.monotonic()
            figures = run(ctx)
            print_table(f"{title} ({time.monotonic() - suite_started:.0f} s)", figures)
            summary += figures
    print_table("Summary", summary)
    print(f"suite finished in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
