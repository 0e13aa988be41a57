"""Instructions per job and per heartbeat: the whole master in process, counted by callgrind.

Over HTTP the master's CPU per job on this shared 2-core machine moves by ±20 % within
minutes, so a change of a few percent cannot be judged from it. Instruction counts under
valgrind's callgrind repeat within about 0.6 % (the loop's and the store's threads interleave a
little differently each run; `--rounds N` shows the spread): they judge such a change, and HTTP
(`bench.api_cost`, `bench.tree_ab`) then says what it is worth in time.

The real app (`create_app`, default settings, a fresh SQLite file, garbage collection set as
`ffleet master` sets it) is driven over ASGI directly, no sockets: 64 nodes (slots 1) register,
jobs arrive 100 per POST /jobs/batch, each node claims once, then every node posts its result
with `claim_next` and takes the reply's job, 64 requests at once (so group commit groups them
as a served master does). The heartbeat mode sends rounds of 64 concurrent heartbeats. Each
mode runs at two sizes and the figure is (large - small) / (units between them): start-up and
imports cancel out, a job's share of its batch (1/100 of one) stays in. The driver's own work
(building bodies with msgspec, decoding replies) is counted too, and kept small.
Run: `.venv/bin/python -m bench.instructions [--base REV] [--rounds N] [--mode M] [--quick]`
(the figures of a quick run mean nothing; valgrind comes from the Debian package valgrind).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import uvloop
from starlette.applications import Starlette
from starlette.types import Message

from bench.common import CONCURRENCY, Figure, batch_body, node_body, print_table, result_body
from bench.tree_ab import export_source
from tests.processes import HOST, ROOT

TITLE = "Instructions per unit, whole master in process (callgrind)"
BATCH = 100  # jobs per POST /jobs/batch
SIZES = (1_024, 3_072)  # units per run: multiples of CONCURRENCY (whole rounds)
QUICK_SIZES = (128, 384)
PARALLEL = 2  # callgrind runs at once (both cores)
CHECKOUT = "this checkout"
REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


class Driver:
    """Requests straight into the ASGI app, with the scope uvicorn gives (the body all arrived
    with the headers, as for agents' small requests), replies decoded with msgspec."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def call(
        self, method: str, path: str, body: bytes = b"", query: str = "", expect: int = 200
    ) -> Any:
        """One request; any other status than `expect` raises, with the start of the reply."""
        delivered = False

        async def receive() -> Message:
            nonlocal delivered
            if delivered:  # what uvicorn's receive does until the client goes: wait
                await asyncio.Event().wait()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 0
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            else:
                chunks.append(message.get("body", b""))

        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "server": (HOST, 8080),
            "client": (HOST, 40000),
            "scheme": "http",
            "method": method,
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "headers": [
                (b"host", HOST.encode()),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "state": {},
            "ffleet.body_arrived": lambda: True,
            "ffleet.body_pending": lambda: False,
        }
        await self.app(scope, receive, send)
        reply = b"".join(chunks)
        if status != expect:
            raise RuntimeError(f"{method} {path} -> {status}: {reply[:300]!r}")
        return msgspec.json.decode(reply) if reply else None


async def register(driver: Driver) -> list[str]:
    """CONCURRENCY agents of one slot each; their ids."""
    ids = []
    for index in range(CONCURRENCY):
        body = msgspec.json.encode(node_body(index, slots=1))
        ids.append((await driver.call("POST", "/nodes/register", body, expect=201))["id"])
    return ids


async def drive_results(driver: Driver, count: int) -> None:
    """`count` results posted with `claim_next`, each reply carrying the node's next job."""
    nodes = await register(driver)
    await driver.call("POST", "/jobs/batch", batch_body(len(nodes)), expect=201)  # first claims
    bodies = {size: batch_body(size) for size in (BATCH, count % BATCH) if size}
    for start in range(0, count, BATCH):
        size = min(BATCH, count - start)
        await driver.call("POST", "/jobs/batch", bodies[size], expect=201)
    jobs = await asyncio.gather(
        *(driver.call("GET", "/jobs/next", query=f"node_id={node}") for node in nodes)
    )
    for _ in range(count // len(nodes)):
        replies = await asyncio.gather(
            *(
                driver.call("POST", "/results", result_body(job, node, claim_next=True))
                for job, node in zip(jobs, nodes, strict=True)
            )
        )
        jobs = [reply["job"] for reply in replies]
        if any(job is None for job in jobs):
            raise RuntimeError("a result's reply carried no next job while jobs were queued")


async def drive_heartbeats(driver: Driver, count: int) -> None:
    """`count` heartbeats (v1.0: no body), a round of one per node at a time."""
    nodes = await register(driver)
    for _ in range(count // len(nodes)):
        await asyncio.gather(*(driver.call("POST", f"/nodes/{node}/heartbeat") for node in nodes))


MODES: dict[str, tuple[str, Callable[[Driver, int], Awaitable[None]]]] = {
    "results": ("POST /results with claim_next, per job (batch share included)", drive_results),
    "heartbeats": ("POST /nodes/{id}/heartbeat, per heartbeat", drive_heartbeats),
}


def fresh_app(workdir: Path) -> Starlette:
    """The master as `ffleet master` builds it with default settings, on a new SQLite file."""
    from ffleet.master.app import create_app  # from PYTHONPATH: the tree under test
    from ffleet.master.settings import MasterSettings

    settings = MasterSettings(
        store_url=f"sqlite:///{workdir / 'ffleet.db'}",
        admin_token_file=workdir / "ffleet-admin-token",
    )
    return create_app(settings)


async def serve_and_drive(app: Starlette, mode: str, count: int) -> None:
    """The app started (its lifespan), driven in `mode` for `count` units, stopped."""
    async with app.router.lifespan_context(app):
        await MODES[mode][1](Driver(app), count)


def drive_once(mode: str, count: int) -> None:
    """What callgrind runs: one served app, garbage collection as `ffleet master` sets it."""
    from ffleet.master.serve import collect_garbage_rarely

    with tempfile.TemporaryDirectory(prefix="ffleet-instructions-") as tmp:
        app = fresh_app(Path(tmp))
        collect_garbage_rarely()
        uvloop.run(serve_and_drive(app, mode, count))


# ---------------------------------------------------------------------- counting


def count_instructions(source: Path, mode: str, count: int, log: Path) -> int:
    """Instructions of one whole run of the driver on the ffleet of `source`, all threads;
    valgrind's report goes to `log`, the driver's output beside it."""
    output = log.with_suffix(".out")
    argv = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={log.with_suffix('.callgrind')}",
        f"--log-file={log}",
        sys.executable,
        "-m",
        "bench.instructions",
        "--drive",
        mode,
        str(count),
    ]
    # A fixed hash seed: the same dict and set layouts, hence the same counts, every run.
    env = {**os.environ, "PYTHONPATH": str(source), "PYTHONHASHSEED": "0"}
    with output.open("wb") as out:
        done = subprocess.run(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    found = REFS.search(log.read_text()) if log.exists() else None
    if done.returncode != 0 or found is None:
        tail = output.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{mode} x {count} on {source} failed ({done.returncode}):\n{tail}")
    return int(found.group(1).replace(",", ""))


Run = tuple[str, str, int, int]  # tree, mode, size, round


def per_unit(
    trees: dict[str, Path],
    modes: Sequence[str],
    sizes: tuple[int, int],
    rounds: int,
    workdir: Path,
) -> dict[tuple[str, str], list[float]]:
    """(tree, mode) -> instructions per unit in each round, from runs of both sizes, PARALLEL
    at a time."""
    runs = [
        (tree, mode, size, round_number)
        for round_number in range(rounds)
        for tree in trees
        for mode in modes
        for size in sizes
    ]
    numbers = {tree: index for index, tree in enumerate(trees)}

    def counted(run: Run) -> int:
        tree, mode, size, round_number = run
        log = workdir / f"tree{numbers[tree]}-{mode}-{size}-{round_number}.log"
        return count_instructions(trees[tree], mode, size, log)

    with ThreadPoolExecutor(PARALLEL) as pool:
        counts = dict(zip(runs, pool.map(counted, runs), strict=True))
    for (tree, mode, size, round_number), instructions in counts.items():
        print(f"round {round_number + 1}, {tree}: {mode} x {size:,}: {instructions:,} instructions")
    small, large = sizes
    return {
        (tree, mode): [
            (counts[(tree, mode, large, number)] - counts[(tree, mode, small, number)])
            / (large - small)
            for number in range(rounds)
        ]
        for tree in trees
        for mode in modes
    }


def figure(name: str, rounds: list[float], base: float | None = None) -> Figure:
    """The median of the rounds, their range beside it when there are several."""
    unit = "instructions"
    if len(rounds) > 1:
        unit += f" (median of {len(rounds)}: {min(rounds):,.0f}-{max(rounds):,.0f})"
    return Figure(name, statistics.median(rounds), unit, base, "base")


def figures(
    found: dict[tuple[str, str], list[float]], modes: Sequence[str], base: str | None
) -> list[Figure]:
    """The table: each mode for this checkout, against the base when there is one."""
    rows = []
    for mode in modes:
        label = MODES[mode][0]
        if base is None:
            rows.append(figure(label, found[(CHECKOUT, mode)]))
            continue
        before = found[(base, mode)]
        rows.append(figure(f"{label}, base {base}", before))
        rows.append(
            figure(f"{label}, {CHECKOUT}", found[(CHECKOUT, mode)], statistics.median(before))
        )
    return rows


def commit_of(revision: str) -> str | None:
    """The short hash `revision` names in this repository, None if it names no commit."""
    found = subprocess.run(
        [
            "git",
            "-C",
            str(ROOT),
            "rev-parse",
            "--short",
            "--verify",
            "--quiet",
            f"{revision}^{{commit}}",
        ],
        capture_output=True,
        text=True,
    )
    return found.stdout.strip() if found.returncode == 0 else None


def main() -> None:
    command = argparse.ArgumentParser(description=__doc__)
    command.add_argument("--base", metavar="REV", help="git revision to compare with")
    command.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}: a smoke test")
    command.add_argument(
        "--mode", choices=sorted(MODES), action="append", help="only this mode (repeatable)"
    )
    command.add_argument(
        "--rounds", type=int, default=1, help="runs of each size and tree (the median is shown)"
    )
    command.add_argument(
        "--drive",
        nargs=2,
        metavar=("MODE", "COUNT"),
        help="run the driver once, uncounted (what each callgrind run executes)",
    )
    args = command.parse_args()
    base = None if args.base is None else commit_of(args.base)
    if args.base is not None and base is None:
        command.error(f"--base {args.base}: no such commit in {ROOT}")
    if args.rounds < 1:
        command.error("--rounds: at least 1")
    if args.drive is not None:
        mode, count = args.drive
        if mode not in MODES or not count.isdigit() or int(count) % CONCURRENCY or not int(count):
            command.error(f"--drive MODE COUNT: MODE in {sorted(MODES)}, COUNT a multiple of 64")
        drive_once(mode, int(count))
        return
    if shutil.which("valgrind") is None:
        print("valgrind not found: install the Debian package valgrind", file=sys.stderr)
        sys.exit(2)
    modes = args.mode or list(MODES)
    sizes = QUICK_SIZES if args.quick else SIZES
    with tempfile.TemporaryDirectory(prefix="ffleet-instructions-") as tmp:
        workdir = Path(tmp)
        trees = {CHECKOUT: ROOT / "src"}
        if args.base is not None:
            trees[args.base] = export_source(args.base, workdir / "base")
        against = f", base {args.base} = {base}" if base else ""
        quick = ", QUICK (smoke test)" if args.quick else ""
        print(f"# this checkout: HEAD {commit_of('HEAD')}{against}; sizes {sizes}{quick}")
        print_table(
            TITLE, figures(per_unit(trees, modes, sizes, args.rounds, workdir), modes, args.base)
        )


if __name__ == "__main__":
    main()
