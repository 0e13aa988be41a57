"""Before and after in one run: masters from a git revision and from this checkout, alternated.

A change to the master's hot path is judged by its ratio to the code it replaces, measured in
the same invocation on the same (shared, noisy) machine: each round serves one master from each
tree, one after the other, and measures the job lifecycle of `bench.api_cost` (ffleet's protocol,
64 agents) and the heartbeat. The trees take turns going first: a master served first in its
round read 1.06-1.14x slower against the same tree served second (main against itself), so a
fixed order would pass that bias off as a difference. The best of the rounds is reported for
each tree, with the ratio; use an even number of rounds.
Run: `.venv/bin/python -m bench.tree_ab [--base REV] [--rounds N] [--quick] [--postgres URL]`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tarfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

from bench import api_cost
from bench.common import (
    CONCURRENCY,
    Context,
    Figure,
    measure,
    parser,
    print_table,
    register_nodes,
    replay,
    run_async,
    run_master,
    session,
)
from tests.processes import ROOT, MasterProcess

TITLE = "This checkout against a base revision (best of the rounds)"


def export_source(revision: str, into: Path) -> Path:
    """The `src` directory of `revision`, written under `into` (git archive: no checkout)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "src"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


@contextlib.contextmanager
def imports_from(source: Path) -> Iterator[None]:
    """Masters started meanwhile import ffleet from `source` (PYTHONPATH comes first)."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(source)
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


async def heartbeat_us(master: MasterProcess, count: int) -> float:
    fleet = await register_nodes(master, CONCURRENCY)
    beats = (("POST", f"/nodes/{fleet[i % len(fleet)]}/heartbeat", b"") for i in range(count))
    return (await measure(master, replay(beats))).us_per(count)


def compare(ctx: Context, base: Path, rounds: int) -> list[Figure]:
    jobs, beats = ctx.size(3_000, 200), ctx.size(5_000, 200)
    trees = {"base": base, "this checkout": ROOT / "src"}
    best: dict[tuple[str, str], float] = {}
    for round_number in range(rounds):
        order = list(trees.items())
        if round_number % 2:
            order.reverse()
        for name, source in order:
            with imports_from(source):
                with run_master(ctx) as master:
                    lifecycle = run_async(api_cost.lifecycle_ffleet(master, jobs))
                with run_master(ctx) as master:
                    heartbeat = run_async(heartbeat_us(master, beats))
            for figure, value in (("job lifecycle", lifecycle), ("heartbeat", heartbeat)):
                key = (figure, name)
                best[key] = min(value, best.get(key, value))
    figures = []
    for figure in ("job lifecycle", "heartbeat"):
        before, after = best[(figure, "base")], best[(figure, "this checkout")]
        figures.append(Figure(f"{figure}, base", before, "µs", ctx.floor.us_per_request))
        figures.append(Figure(f"{figure}, this checkout", after, "µs", before, "base"))
    return figures


def main() -> None:
    command = parser(__doc__)
    command.add_argument("--base", default="main", help="git revision to compare with (main)")
    command.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="rounds, each tree once per round, taking turns to go first",
    )
    args = command.parse_args()
    with session(args.quick, args.postgres) as ctx:
        base = export_source(args.base, ctx.workdir / "base")
        print(f"# base {args.base}, {args.rounds} rounds")
        print_table(TITLE, compare(ctx, base, args.rounds))


if __name__ == "__main__":
    main()
