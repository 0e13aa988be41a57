"""Bounded work per request and per claim: the outside probe's two freezes, measured in-process.

Run: `.venv/bin/python -m bench.bounded_work`. A memory store with 2,000 nodes; a batch of
10,000 jobs with 10,000 distinct unmet requirement sets (refused now), then 50,000 jobs no node
can run, then a claim with them queued and a claim of a runnable job behind them. Prints
seconds; asserts nothing (the machine is shared and noisy).
"""

from __future__ import annotations

import time

from ffleet.models import JobRequest, NodeRegistration, Requirements
from ffleet.store import InvalidRequest, open_store


def main() -> None:
    store = open_store("memory")
    now = time.time()
    node = NodeRegistration(cpu_threads=4, ram_bytes=2**33, labels={"zone": "a"}, slots=1)
    for _ in range(2000):
        store.register_node(node, now)
    distinct = [
        JobRequest(scenario="360p-h264", requirements=Requirements(labels={"k": str(i)}))
        for i in range(10_000)
    ]
    started = time.perf_counter()
    try:
        store.create_jobs(distinct, now)
    except InvalidRequest as exc:
        print(f"refused: {exc}")
    print(f"10,000 distinct unmet requirement sets: {time.perf_counter() - started:.2f} s")
    stuck = JobRequest(scenario="360p-h264", requirements=Requirements(labels={"zone": "b"}))
    for _ in range(10):
        store.create_jobs([stuck] * 5000, now)
    claimer = store.register_node(node, now)
    started = time.perf_counter()
    store.claim(claimer.id, now + 1)
    print(f"a claim with 50,000 unrunnable jobs queued: {time.perf_counter() - started:.4f} s")
    store.create_jobs([JobRequest(scenario="360p-h264")], now)
    started = time.perf_counter()
    found = store.claim(claimer.id, now + 1)
    print(
        f"a claim of the runnable job behind them: {time.perf_counter() - started:.4f} s "
        f"(found: {found is not None})"
    )


if __name__ == "__main__":
    main()
