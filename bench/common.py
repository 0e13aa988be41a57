"""Shared machinery of the benchmark suite: masters and agents (started as the integration
tests start them, by tests/processes.py) pinned to their cores, CPU and memory readings, the load
generator, the HTTP floor, percentiles and the results table.

Method (BENCHMARKS.md): the server under test runs pinned to core 0 and this process, the load
generator, to core 1. The figure is the server's user+system CPU time per request, read from
`/proc/PID/stat` around the measured phase, never req/s (the generator saturates its core first).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
import uvloop
from sqlalchemy import create_engine, text

from tests.processes import (
    HOST,
    AgentProcess,
    HttpServer,
    MasterProcess,
    free_port,
    wait_until,
)

T = TypeVar("T")

SERVER_CORE = 0
CLIENT_CORE = 1
CONCURRENCY = 64  # keep-alive clients, as in the Go v1.0 anchor measurements
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024
PHASE_TIMEOUT_S = 600.0  # no measured phase may run longer than this
CALL_TIMEOUT_S = 120.0  # nor any request (a long-poll holds one for 30 s)

ENCODER = msgspec.json.Encoder()
Call = tuple[str, str, bytes]  # method, path, body


# ---------------------------------------------------------------------- the v1.0 wire payloads


def node_body(index: int, slots: int | None = None) -> dict[str, Any]:
    """A v1.0 registration; `slots` set makes it an ffleet agent's (one job at a time)."""
    body: dict[str, Any] = {
        "address": f"10.0.{index // 250}.{index % 250 + 1}:9000",
        "type": "server",
        "cpu_threads": 16,
        "cpu_model": "AMD EPYC 7B13",
        "has_gpu": False,
        "gpu_type": None,
        "ram_bytes": 32 * 1024 * MIB,
        "labels": {"rack": f"r{index % 8}"},
    }
    if slots is not None:
        body["slots"] = slots
    return body


JOB = {"scenario": "1080p30-h264", "confidence": "auto", "parameters": {"duration": 10}}
JOB_BODY = ENCODER.encode(JOB)


def result_body(
    job: dict[str, Any], node_id: str, *, claim_next: bool = False, claim_wait: float = 0.0
) -> bytes:
    """A completed result as a v1.0 agent sends it; `claim_next` adds ffleet's protocol fields
    (and `claim_wait`, the reply's wait for the next job, when it is more than 0)."""
    body: dict[str, Any] = {
        "job_id": job["id"],
        "node_id": node_id,
        "status": "completed",
        "metrics": {"duration": 3.21, "cpu_usage": 87.5, "memory_usage": 123_456_789, "fps": 93.4},
        "analyzer_output": {"scenario": job["scenario"], "realtime_factor": 3.1},
        "error": None,
        "completed_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    if claim_next:
        body["attempt"] = job["attempt"]
        body["claim_next"] = True
        if claim_wait > 0:
            body["claim_wait"] = claim_wait
    return ENCODER.encode(body)


def batch_body(count: int) -> bytes:
    return ENCODER.encode({"jobs": [JOB] * count})


# ---------------------------------------------------------------------- server processes


@dataclass(frozen=True)
class Memory:
    rss_mib: float  # VmRSS: resident now
    peak_mib: float  # VmHWM: the resident high-water mark since start


def memory_of(pid: int) -> Memory:
    """Resident memory of `pid` now and at its peak, from /proc/PID/status."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024  # kB -> MiB
    return Memory(rss_mib=values["VmRSS"], peak_mib=values["VmHWM"])


def process_cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU of `pid` (all its threads) since it started, from /proc/PID/stat; with
    `children`, the CPU of the children it has waited for instead (cutime + cstime)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3, `state`
    first = 13 if children else 11  # fields 16 and 17 (cutime, cstime) or 14 and 15
    return (int(fields[first]) + int(fields[first + 1])) / CLK_TCK


def raise_open_files_limit(needed: int) -> None:
    """Raise this process's open-files limit to its hard limit (the servers it starts inherit
    it): a benchmark holding `needed` connections refuses to start if even that is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"{needed} open files needed, the hard limit is {hard} (ulimit -Hn)")
    if soft != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


S = TypeVar("S", bound=HttpServer)


@contextlib.contextmanager
def serve(server: S) -> Iterator[S]:
    """Run `server` for the duration of the block; it is stopped however the block ends."""
    try:
        server.start()
        yield server
    except BaseException:
        print(
            f"--- last lines of the {server.name} log ---\n{server.log_tail(30)}", file=sys.stderr
        )
        raise
    finally:
        server.stop()
        server.close()


# ---------------------------------------------------------------------- the load generator


class HttpError(RuntimeError):
    pass


class HttpClient:
    """One keep-alive HTTP/1.1 connection to the server; its requests run one after another.

    Raw asyncio streams on uvloop: far leaner than a general client, so the generator's own
    core keeps up with a server on the other core.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.requests = 0

    @classmethod
    async def connect(cls, port: int) -> HttpClient:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def call(self, method: str, path: str, body: bytes = b"", expect: int = 200) -> bytes:
        """Send one request and return the reply's body; any other status than `expect` raises."""
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        async with asyncio.timeout(CALL_TIMEOUT_S):
            header = await self._reader.readuntil(b"\r\n\r\n")
            payload = await self._reader.readexactly(_content_length(header))
        self.requests += 1
        status = int(header[9:12])
        if status != expect:
            raise HttpError(f"{method} {path} -> {status}: {payload[:300]!r}")
        return payload

    async def json(self, method: str, path: str, body: bytes = b"", expect: int = 200) -> Any:
        return msgspec.json.decode(await self.call(method, path, body, expect))

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


def _content_length(header: bytes) -> int:
    lower = header.lower()
    start = lower.find(b"\r\ncontent-length:")
    if start < 0:
        raise HttpError(f"reply without content-length: {header[:200]!r}")
    return int(lower[start + 17 : lower.index(b"\r\n", start + 2)])


Worker = Callable[[HttpClient], Awaitable[None]]


@dataclass(frozen=True)
class Measurement:
    requests: int
    cpu_s: float  # server CPU over the phase
    wall_s: float

    def us_per(self, units: int) -> float:
        return self.cpu_s * 1e6 / units

    @property
    def us_per_request(self) -> float:
        return self.us_per(self.requests)


async def measure(
    server: HttpServer, worker: Worker, concurrency: int = CONCURRENCY
) -> Measurement:
    """Run `worker` on `concurrency` connected clients at once; the server's CPU is read only
    around the work itself (connections are opened before and closed after)."""
    clients = [await HttpClient.connect(server.port) for _ in range(concurrency)]
    try:
        cpu = process_cpu_seconds(server.pid)
        start = time.perf_counter()
        work = asyncio.gather(*(worker(client) for client in clients))
        await asyncio.wait_for(work, PHASE_TIMEOUT_S)
        wall = time.perf_counter() - start
        cpu = process_cpu_seconds(server.pid) - cpu
    finally:
        for client in clients:
            await client.close()
    return Measurement(sum(c.requests for c in clients), cpu, wall)


def replay(calls: Iterable[Call], expect: int = 200, budget_s: float = PHASE_TIMEOUT_S) -> Worker:
    """A worker sending a shared sequence of requests: each client takes the next one left, and
    none is started `budget_s` after the worker was made (call it right before `measure`)."""
    pending = iter(calls)
    deadline = time.monotonic() + budget_s

    async def worker(client: HttpClient) -> None:
        for method, path, body in pending:
            await client.call(method, path, body, expect)
            if time.monotonic() > deadline:
                return

    return worker


async def register_nodes(server: HttpServer, count: int, slots: int | None = None) -> list[str]:
    """Register `count` nodes through the API (unmeasured set-up); returns their ids."""
    ids: list[str] = []
    indexes = iter(range(count))

    async def worker(client: HttpClient) -> None:
        for index in indexes:
            body = ENCODER.encode(node_body(index, slots))
            ids.append((await client.json("POST", "/nodes/register", body, 201))["id"])

    await measure(server, worker, min(count, CONCURRENCY))
    return ids


async def submit_jobs(server: HttpServer, count: int, batch: int) -> Measurement:
    """Queue `count` jobs with `POST /jobs/batch`, `batch` jobs per request."""
    sizes = [batch] * (count // batch) + ([count % batch] if count % batch else [])
    bodies = {size: batch_body(size) for size in set(sizes)}
    calls = [("POST", "/jobs/batch", bodies[size]) for size in sizes]
    return await measure(server, replay(calls, 201), min(len(calls), 4))


def run_async(main: Coroutine[Any, Any, T]) -> T:
    return uvloop.run(main)


# ---------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default method)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * pct / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# ---------------------------------------------------------------------- the floor


@dataclass(frozen=True)
class Floor:
    """The HTTP stack alone (bench/floor_app.py on the same uvicorn), measured in this run."""

    us_per_request: float  # server CPU per request, 64 clients: the median of 3 rounds
    rounds: tuple[float, ...]
    rtt_p50_ms: float  # one client's round trip
    rtt_p99_ms: float
    rss_mib: float  # resident memory after the load


FLOOR_ARGV = [
    sys.executable,
    "-m",
    "uvicorn",
    "bench.floor_app:app",
    "--host",
    HOST,
    "--log-level",
    "warning",
    "--no-access-log",
]


async def round_trips(port: int, path: str, count: int) -> list[float]:
    """Milliseconds of `count` sequential GETs over one connection."""
    client = await HttpClient.connect(port)
    try:
        times = []
        for _ in range(count):
            start = time.perf_counter()
            await client.call("GET", path)
            times.append((time.perf_counter() - start) * 1000)
        return times
    finally:
        await client.close()


async def _floor_figures(server: HttpServer, quick: bool) -> Floor:
    count = 1_000 if quick else 20_000
    rounds = [
        (await measure(server, replay([("GET", "/health", b"")] * count))).us_per_request
        for _ in range(3)
    ]
    rtts = await round_trips(server.port, "/health", 100 if quick else 1_000)
    return Floor(
        us_per_request=statistics.median(rounds),
        rounds=tuple(rounds),
        rtt_p50_ms=percentile(rtts, 50),
        rtt_p99_ms=percentile(rtts, 99),
        rss_mib=memory_of(server.pid).rss_mib,
    )


def measure_floor(workdir: Path, quick: bool) -> Floor:
    port = free_port()
    argv = [*FLOOR_ARGV, "--port", str(port)]
    floor_server = HttpServer("floor", argv, port, workdir / "floor.log", cores={SERVER_CORE})
    with serve(floor_server) as server:
        floor = run_async(_floor_figures(server, quick))
    print(
        f"floor (raw ASGI on uvicorn, measured now): {floor.us_per_request:.0f} µs CPU/request "
        f"(rounds {', '.join(f'{r:.0f}' for r in floor.rounds)}), "
        f"round trip p50 {floor.rtt_p50_ms:.2f} ms / p99 {floor.rtt_p99_ms:.2f} ms, "
        f"RSS {floor.rss_mib:.1f} MiB"
    )
    return floor


# ---------------------------------------------------------------------- a benchmark session


@dataclass(frozen=True)
class Context:
    workdir: Path
    quick: bool
    floor: Floor
    postgres: str | None = None  # --postgres: every master's store, emptied before each master

    def size(self, full: T, quick: T) -> T:
        return quick if self.quick else full


@contextlib.contextmanager
def run_master(ctx: Context, log_level: str = "warning") -> Iterator[MasterProcess]:
    """`ffleet master` on a fresh SQLite file (or the emptied --postgres database), pinned to
    the server core."""
    port = free_port()
    if ctx.postgres is not None:
        empty_postgres(ctx.postgres)
    master = MasterProcess(
        ctx.workdir,
        name=f"master-{port}",
        port=port,
        store=ctx.postgres,
        # The memory and claim-depth benchmarks queue up to a million jobs on purpose.
        extra_args=["--log-level", log_level, "--max-queued-jobs", "2000000"],
        cores={SERVER_CORE},
    )
    with serve(master) as server:
        yield server


def empty_postgres(url: str) -> None:
    """Drop every table of the database at `url` (the next master migrates it afresh)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            found = conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            )
            tables = ", ".join(f'"{name}"' for (name,) in found)
            if tables:
                conn.execute(text(f"DROP TABLE IF EXISTS {tables} CASCADE"))
    finally:
        engine.dispose()


def postgres_cpu_seconds() -> float:
    """User + system CPU of every PostgreSQL server process now running (all its databases:
    meaningful only while nothing else uses the server)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "postgres":
                total += process_cpu_seconds(int(entry.name))
        except (OSError, ValueError):
            continue  # the process ended meanwhile
    return total


# ---------------------------------------------------------------------- agents running real FFmpeg

# Every core this suite may use, read at import, before `pin_load_generator` narrows this process
# to one: agents get all of them, and so does the FFmpeg they start (it inherits the mask).
ALL_CORES = frozenset(os.sched_getaffinity(0))
JOBS_POLL_S = 0.5
JobDetail = dict[str, Any]  # GET /jobs/{id}: the job, its `attempts` and its `result`


def api_client(server: HttpServer) -> httpx.Client:
    """A plain synchronous client of the master (for the agent benchmarks' few requests)."""
    return httpx.Client(base_url=server.url, timeout=CALL_TIMEOUT_S)


@contextlib.contextmanager
def run_agents(
    ctx: Context, master: MasterProcess, heartbeats: Sequence[str]
) -> Iterator[list[AgentProcess]]:
    """One agent per heartbeat interval given, on every core, started together and registered
    with `master` for the duration of the block; all of them (and any FFmpeg they started) are
    stopped however the block ends."""
    agents = [
        AgentProcess(
            ctx.workdir,
            master.url,
            name=f"agent{index}-{master.port}",
            heartbeat_interval=heartbeat,
            extra_args=["--grace", "2s"],
            cores=ALL_CORES,
        )
        for index, heartbeat in enumerate(heartbeats)
    ]
    try:
        for agent in agents:
            agent.start()
        for agent in agents:
            agent.wait_registered(master)
        yield agents
    except BaseException:
        for agent in agents:
            print(
                f"--- last lines of the {agent.name} log ---\n{agent.log_tail(30)}", file=sys.stderr
            )
        raise
    finally:
        for agent in agents:
            agent.stop()


def submit_batch(api: httpx.Client, jobs: Sequence[dict[str, Any]]) -> list[str]:
    """Queue `jobs` with one `POST /jobs/batch`; returns their ids in order."""
    reply = api.post("/jobs/batch", json={"jobs": list(jobs)})
    if reply.status_code != 201:
        raise HttpError(f"POST /jobs/batch -> {reply.status_code}: {reply.text[:300]}")
    return [job["id"] for job in reply.json()["jobs"]]


def job_detail(api: httpx.Client, job_id: str) -> JobDetail:
    detail: JobDetail = api.get(f"/jobs/{job_id}").raise_for_status().json()
    return detail


def wait_queue_empty(api: httpx.Client, timeout_s: float) -> None:
    """Until the master has no pending or running job, polling every JOBS_POLL_S."""
    wait_until(
        lambda: _count(api, "pending") + _count(api, "running") == 0,
        timeout=timeout_s,
        interval=JOBS_POLL_S,
        message="no job pending or running",
    )


def _count(api: httpx.Client, status: str) -> int:
    reply = api.get("/jobs", params={"status": status, "limit": 1}).raise_for_status()
    total: int = reply.json()["total"]
    return total


def completed_details(api: httpx.Client, ids: Sequence[str]) -> list[JobDetail]:
    """Every job's detail; a job that did not complete raises (its error in the message)."""
    details = [job_detail(api, job_id) for job_id in ids]
    for detail in details:
        if detail["status"] != "completed":
            raise RuntimeError(f"job {detail['id']} is {detail['status']}: {detail['error']}")
    return details


def parser(description: str | None) -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description=description)
    result.add_argument(
        "--quick",
        action="store_true",
        help="tiny counts: a smoke test that finishes fast; its figures mean nothing",
    )
    result.add_argument(
        "--postgres",
        metavar="URL",
        help="run the masters on this PostgreSQL database instead of SQLite files; "
        "every table in it is dropped first",
    )
    return result


def pin_load_generator() -> None:
    cores = os.sched_getaffinity(0)
    if {SERVER_CORE, CLIENT_CORE} <= cores:
        os.sched_setaffinity(0, {CLIENT_CORE})
    else:
        print(f"warning: cores {sorted(cores)} only; the load generator is not pinned")


@contextlib.contextmanager
def session(quick: bool, postgres: str | None = None) -> Iterator[Context]:
    """Pin this process, print the machine, measure the floor; a scratch directory throughout."""
    pin_load_generator()
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, nproc {os.cpu_count()}, "
        f"{_cpu_model()}, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f}{', QUICK (smoke test)' if quick else ''}"
        f"{', store PostgreSQL' if postgres else ''}"
    )
    with tempfile.TemporaryDirectory(prefix="ffleet-bench-") as tmp:
        workdir = Path(tmp)
        yield Context(workdir, quick, measure_floor(workdir, quick), postgres)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.machine()


# ---------------------------------------------------------------------- reporting


@dataclass(frozen=True)
class Figure:
    """One reported figure, its ratio to a baseline measured in the same run, the Go v1.0 anchor
    (recorded earlier, not measured now) and the target."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = "floor"
    go: str = "—"
    target: str = "—"
    ok: bool | None = None

    def row(self) -> list[str]:
        ratio = "—"
        if self.baseline is not None:
            quotient = f"{self.value / self.baseline:.2f}x" if self.baseline else "—"
            ratio = f"{quotient} {self.baseline_name} ({_number(self.baseline)})"
        verdict = {True: "PASS", False: "MISS", None: "—"}[self.ok]
        return [
            self.name,
            f"{_number(self.value)} {self.unit}",
            ratio,
            self.go,
            self.target,
            verdict,
        ]


def _number(value: float) -> str:
    if value >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


HEADER = ["figure", "measured", "x baseline (same run)", "Go v1.0 (recorded)", "target", ""]


def print_table(title: str, figures: Sequence[Figure]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for figure in figures:
        print("| " + " | ".join(figure.row()) + " |")
    print()


def run_standalone(
    title: str, description: str | None, run: Callable[[Context], list[Figure]]
) -> None:
    """The `python -m bench.X [--quick]` entry point of one benchmark."""
    args = parser(description).parse_args()
    with session(args.quick, args.postgres) as ctx:
        print_table(title, run(ctx))
