"""bench.instructions counts only what its driver gets done: every request it makes must
succeed and every job it posts a result for must complete, none lost (run here without
valgrind, the same driver on the same app)."""

from __future__ import annotations

from pathlib import Path

import uvloop

from bench.common import CONCURRENCY
from bench.instructions import Driver, drive_heartbeats, drive_results, fresh_app


async def totals(driver: Driver) -> dict[str, int]:
    found = {}
    for status in ("pending", "running", "completed", "failed"):
        listing = await driver.call("GET", "/jobs", query=f"status={status}&limit=1")
        found[status] = listing["total"]
    return found


def test_every_result_completes_its_job_and_hands_out_the_next(tmp_path: Path) -> None:
    app = fresh_app(tmp_path)

    async def scenario() -> dict[str, int]:
        async with app.router.lifespan_context(app):
            driver = Driver(app)
            await drive_results(driver, 2 * CONCURRENCY)
            return await totals(driver)

    # The first claims' jobs, then 128 in batches: each node still holds the job its last
    # result's reply handed it.
    found = uvloop.run(scenario())
    assert found == {
        "pending": 0,
        "running": CONCURRENCY,
        "completed": 2 * CONCURRENCY,
        "failed": 0,
    }


def test_every_heartbeat_is_accepted(tmp_path: Path) -> None:
    app = fresh_app(tmp_path)

    async def scenario() -> list[str]:
        async with app.router.lifespan_context(app):
            driver = Driver(app)
            await drive_heartbeats(driver, 2 * CONCURRENCY)
            return [node["status"] for node in (await driver.call("GET", "/nodes"))["nodes"]]

    assert uvloop.run(scenario()) == ["available"] * CONCURRENCY
