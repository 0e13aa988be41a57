"""Real ffleet processes on 127.0.0.1, shared by the integration tests and the benchmarks.

One way to start a master or an agent (a free port, the log in a file, up only once healthy or
registered) and one way to end it (SIGTERM, then SIGKILL, and no FFmpeg left behind), so that
what the tests prove about a process is what the benchmarks measure. Every child runs in a
session of its own, so a signal to the test runner or the benchmark does not reach it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

T = TypeVar("T")

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent  # the repository: `bench.floor_app` imports from it
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def ffleet_executable() -> str:
    """This interpreter's `ffleet` console script (cli.py has no `__main__`, so `-m` cannot run
    it); the one on PATH if this venv has none."""
    beside = Path(sys.executable).parent / "ffleet"
    found = str(beside) if beside.exists() else shutil.which("ffleet")
    if found is None:
        raise RuntimeError("the ffleet console script is not installed; run `pip install -e .`")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Poll `predicate` until it returns something truthy (returned) or `timeout` passes
    (AssertionError naming `message`). Exceptions from the predicate propagate."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:g} s waiting for {text}")
        time.sleep(interval)


def epoch(timestamp: str) -> float:
    """Epoch seconds of one of the master's RFC 3339 UTC timestamps."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


class Process:
    """One child process with its output appended to `log_path`; `cores` pins it (and what it
    starts) to those CPUs. It can be started again after it ended."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        cores: Collection[int] | None = None,
    ) -> None:
        self.name = name
        pinning = ["taskset", "-c", ",".join(map(str, sorted(cores)))] if cores else []
        self.argv = [*pinning, *argv]  # taskset execs the command: the pid stays the child's
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        with self.log_path.open("ab") as log:
            log.write(f"--- start: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def send_signal(self, signum: int) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signum)

    def wait(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """The exit code; AssertionError if it is still running after `timeout`."""
        assert self.proc is not None, f"{self.name} was never started"
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout:g} s") from None

    def children(self) -> list[psutil.Process]:
        """Live processes it started. FFmpeg runs in a session of its own, so the end of its
        parent alone would leave it running."""
        if not self.running:
            return []
        try:
            found = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        alive = []
        for child in found:
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(child)
        return alive

    def kill(self) -> None:
        """SIGKILL it and everything it started, and reap it: the machine is gone."""
        self._end(signal.SIGKILL, STOP_TIMEOUT_S)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, SIGKILL if it still runs after `timeout`, then whatever it started and left;
        the exit code (None if it was never started)."""
        self._end(signal.SIGTERM, timeout)
        return self.returncode

    def _end(self, signum: int, timeout: float) -> None:
        if self.proc is None:
            return
        children = self.children()
        self.send_signal(signum)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        psutil.wait_procs(children, timeout=STOP_TIMEOUT_S)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class HttpServer(Process):
    """A process serving HTTP on 127.0.0.1:`port`; start() returns once GET /health is 200.
    `scheme` https and `client_options` (httpx's `verify`, `cert`) for one serving TLS."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        log_path: Path,
        *,
        cores: Collection[int] | None = None,
        scheme: str = "http",
        client_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(name, argv, log_path, cores=cores)
        self.port = port
        self.scheme = scheme
        self.api = httpx.Client(base_url=self.url, timeout=10.0, **(client_options or {}))

    @property
    def url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}"

    def start(self) -> None:
        super().start()
        wait_until(
            self._healthy,
            timeout=START_TIMEOUT_S,
            message=lambda: f"{self.name} up\n{self.log_tail()}",
        )

    def restart(self) -> None:
        """SIGKILL, then the same argv: same port, same store."""
        self.kill()
        self.start()

    def close(self) -> None:
        """SIGKILL whatever still runs and close the API client."""
        self.kill()
        self.api.close()

    def _healthy(self) -> bool:
        if not self.running:
            raise AssertionError(f"{self.name} exited with {self.returncode}\n{self.log_tail()}")
        try:
            return self.api.get("/health").status_code == 200
        except httpx.TransportError:
            return False


class MasterProcess(HttpServer):
    """`ffleet master` on 127.0.0.1 with its store (SQLite in `workdir` unless given) and log
    in `workdir`, plus the few API calls tests make, as plain JSON."""

    def __init__(
        self,
        workdir: Path,
        *,
        name: str = "master",
        store: str | None = None,
        node_timeout: str | None = None,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        cores: Collection[int] | None = None,
        scheme: str = "http",
        client_options: dict[str, Any] | None = None,
    ) -> None:
        port = port or free_port()
        self.store = store or f"sqlite:///{workdir / f'{name}.db'}"
        argv = [ffleet_executable(), "master", "--host", HOST, "--port", str(port)]
        argv += ["--store", self.store]
        if node_timeout is not None:
            argv += ["--node-timeout", node_timeout]
        argv += extra_args
        super().__init__(
            name,
            argv,
            port,
            workdir / f"{name}.log",
            cores=cores,
            scheme=scheme,
            client_options=client_options,
        )

    def submit(self, scenario: str, **fields: Any) -> dict[str, Any]:
        response = self.api.post("/jobs", json={"scenario": scenario, **fields})
        assert response.status_code == 201, response.text
        job: dict[str, Any] = response.json()
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        """GET /jobs/{id}: the job with its `attempts` and its `result`."""
        response = self.api.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        detail: dict[str, Any] = response.json()
        return detail

    def wait_job(
        self, job_id: str, statuses: Sequence[str], timeout: float = 60.0
    ) -> dict[str, Any]:
        """The job (with `attempts` and `result`) once its status is one of `statuses`."""
        last: dict[str, Any] = {}

        def reached() -> dict[str, Any] | None:
            nonlocal last
            last = self.job(job_id)
            return last if last["status"] in statuses else None

        return wait_until(
            reached,
            timeout=timeout,
            interval=0.1,
            message=lambda: f"job {job_id} to be {'/'.join(statuses)}; last: {last}",
        )

    def nodes(self) -> list[dict[str, Any]]:
        response = self.api.get("/nodes")
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["nodes"]
        return found


class AgentProcess(Process):
    """`ffleet agent --register` against a master; its work dir and log in `workdir`. Timings
    left None are the agent's defaults."""

    def __init__(
        self,
        workdir: Path,
        master_url: str,
        *,
        name: str = "agent",
        work_dir: Path | None = None,
        heartbeat_interval: str | None = None,
        poll_interval: str | None = None,
        extra_args: Sequence[str] = (),
        cores: Collection[int] | None = None,
    ) -> None:
        self.work_dir = work_dir or workdir / f"{name}-work"
        argv = [ffleet_executable(), "agent", "--register", "--master", master_url]
        argv += ["--allow-master-as-worker", "--yes", "--work-dir", str(self.work_dir)]
        if heartbeat_interval is not None:
            argv += ["--heartbeat-interval", heartbeat_interval]
        if poll_interval is not None:
            argv += ["--poll-interval", poll_interval]
        argv += extra_args
        super().__init__(name, argv, workdir / f"{name}.log", cores=cores)

    @property
    def node_id(self) -> str | None:
        """The id it registers under (written to its work dir before it registers)."""
        path = self.work_dir / "node-id"
        if not path.exists():
            return None
        return path.read_text().strip() or None

    def wait_registered(self, master: MasterProcess, timeout: float = START_TIMEOUT_S) -> str:
        """The node id, once the master lists this agent's node as available."""

        def registered() -> str | None:
            if not self.running:
                raise AssertionError(f"agent exited with {self.returncode}\n{self.log_tail()}")
            node_id = self.node_id
            ids = {node["id"] for node in master.nodes() if node["status"] == "available"}
            return node_id if node_id in ids else None

        return wait_until(
            registered, timeout=timeout, message=lambda: f"agent registered\n{self.log_tail()}"
        )

    def spooled(self) -> list[Path]:
        return sorted((self.work_dir / "spool").glob("*.json"))

    def undelivered(self, master: MasterProcess) -> list[str]:
        """Spooled results `master` has not stored. A result whose reply waits for the
        agent's next job stays spooled until that reply comes, though it was stored first."""
        missing = []
        for path in self.spooled():
            job_id, _, attempt = path.stem.rpartition("-")
            stored = master.job(job_id)["result"]
            if stored is None or str(stored["attempt"]) != attempt:
                missing.append(path.name)
        return missing

    def rejected(self) -> list[Path]:
        return sorted((self.work_dir / "spool" / "rejected").glob("*.json"))

    def ffmpeg_pids(self) -> list[int]:
        """FFmpeg processes this agent started that are still alive."""
        pids = []
        for child in self.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if "ffmpeg" in child.name():
                    pids.append(child.pid)
        return pids
