"""Real processes for integration and fault-injection tests: masters, agents, bounded waits.

Everything listens on 127.0.0.1 only. Each process writes its output to a log file in the
test's tmp dir; the logs are printed at teardown, so pytest shows them when a test fails.
Every process a test starts through the `fleet` fixture is killed when the test ends.
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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import pytest

T = TypeVar("T")

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def ffleet_executable() -> str:
    """The `ffleet` console script (cli.py has no `__main__`, so `-m` cannot run it)."""
    found = shutil.which("ffleet") or str(Path(sys.executable).parent / "ffleet")
    if not Path(found).exists():
        pytest.fail("the ffleet console script is not installed; run `pip install -e .`")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
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


class Process:
    """One child process with its output in `log_path`; never outlives the test."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
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
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a signal to the test runner does not reach it
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

    def kill(self) -> None:
        """SIGKILL the process (if it still runs) and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(STOP_TIMEOUT_S)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait up to `timeout`, then SIGKILL; returns the exit code."""
        self.send_signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except AssertionError:
            self.kill()
            raise

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class MasterProcess(Process):
    """`ffleet master` on 127.0.0.1; restart() keeps the port and the store."""

    def __init__(
        self,
        tmp: Path,
        *,
        name: str = "master",
        store: str | None = None,
        node_timeout: str = "3s",
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self.store = store or f"sqlite:///{tmp / f'{name}.db'}"
        argv = [
            ffleet_executable(),
            "master",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--store",
            self.store,
            "--node-timeout",
            node_timeout,
            *extra_args,
        ]
        super().__init__(name, argv, tmp / f"{name}.log")
        self.api = httpx.Client(base_url=self.url, timeout=10.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        super().start()
        wait_until(
            self._healthy, timeout=START_TIMEOUT_S, message=lambda: f"master up\n{self.log_tail()}"
        )

    def restart(self) -> None:
        self.kill()
        self.start()

    def _healthy(self) -> bool:
        if not self.running:
            raise AssertionError(f"master exited with {self.returncode}\n{self.log_tail()}")
        try:
            return self.api.get("/health").status_code == 200
        except httpx.TransportError:
            return False

    # API helpers: plain JSON, as any client would see it.

    def submit(self, scenario: str, **fields: Any) -> dict[str, Any]:
        response = self.api.post("/jobs", json={"scenario": scenario, **fields})
        assert response.status_code == 201, response.text
        job: dict[str, Any] = response.json()
        return job

    def job(self, job_id: str) -> dict[str, Any]:
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

    def close(self) -> None:
        self.kill()
        self.api.close()


class AgentProcess(Process):
    """`ffleet agent --register` against a master, with test-friendly fast timings."""

    def __init__(
        self,
        tmp: Path,
        master_url: str,
        *,
        name: str = "agent",
        work_dir: Path | None = None,
        heartbeat_interval: str = "500ms",
        poll_interval: str = "500ms",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.work_dir = work_dir or tmp / f"{name}-work"
        argv = [
            ffleet_executable(),
            "agent",
            "--register",
            "--master",
            master_url,
            "--allow-master-as-worker",
            "--yes",
            "--heartbeat-interval",
            heartbeat_interval,
            "--poll-interval",
            poll_interval,
            "--work-dir",
            str(self.work_dir),
            *extra_args,
        ]
        super().__init__(name, argv, tmp / f"{name}.log")

    @property
    def node_id(self) -> str | None:
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

    def rejected(self) -> list[Path]:
        return sorted((self.work_dir / "spool" / "rejected").glob("*.json"))

    def children(self) -> list[psutil.Process]:
        """Live processes this agent started (FFmpeg runs in its own session, so a kill of
        the agent alone would leave it running)."""
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

    def ffmpeg_pids(self) -> list[int]:
        """FFmpeg processes this agent started that are still alive."""
        pids = []
        for child in self.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if "ffmpeg" in child.name():
                    pids.append(child.pid)
        return pids

    def kill(self) -> None:
        """SIGKILL the agent and every process it started."""
        children = self.children()
        super().kill()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        psutil.wait_procs(children, timeout=STOP_TIMEOUT_S)


class Fleet:
    """Starts masters and agents for one test and kills them all at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.masters: list[MasterProcess] = []
        self.agents: list[AgentProcess] = []

    def master(self, *, start: bool = True, **kwargs: Any) -> MasterProcess:
        """A master; with `start=False` its port and store are chosen but it is not started."""
        kwargs.setdefault("name", f"master{len(self.masters) or ''}")
        master = MasterProcess(self.tmp, **kwargs)
        self.masters.append(master)
        if start:
            master.start()
        return master

    def agent(self, master: MasterProcess, *, wait: bool = True, **kwargs: Any) -> AgentProcess:
        kwargs.setdefault("name", f"agent{len(self.agents) or ''}")
        agent = AgentProcess(self.tmp, master.url, **kwargs)
        self.agents.append(agent)
        agent.start()
        if wait:
            agent.wait_registered(master)
        return agent

    def close(self) -> None:
        for agent in self.agents:
            agent.kill()
        for master in self.masters:
            master.close()
        for process in [*self.agents, *self.masters]:
            print(f"===== {process.name} log =====\n{process.log_text()}")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """Masters and agents for one test, all killed at teardown."""
    started = Fleet(tmp_path)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="module")
def module_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A fleet shared by the tests of one module (for tests that leave it as they found it)."""
    started = Fleet(tmp_path_factory.mktemp("fleet"))
    try:
        yield started
    finally:
        started.close()
