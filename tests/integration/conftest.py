"""Fixtures for integration and fault-injection tests: fleets of real masters and agents.

The processes themselves are tests/processes.py (shared with bench/). Each writes its output to
a log file in the test's tmp dir; the logs are printed at teardown, so pytest shows them when a
test fails. Every process a test starts through the `fleet` fixture is killed when the test ends.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.processes import (
    AgentProcess,
    MasterProcess,
    ffleet_executable,
    free_port,
    wait_until,
)

# Test modules import these from here; the processes module is their one home.
__all__ = [
    "AgentProcess",
    "Fleet",
    "MasterProcess",
    "ffleet_executable",
    "free_port",
    "wait_until",
]

# Fast enough that a lost node or a missed beat is noticed within a test's patience.
NODE_TIMEOUT = "3s"
AGENT_INTERVAL = "500ms"


class Fleet:
    """Starts masters and agents for one test and kills them all at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.masters: list[MasterProcess] = []
        self.agents: list[AgentProcess] = []

    def master(self, *, start: bool = True, **kwargs: Any) -> MasterProcess:
        """A master; with `start=False` its port and store are chosen but it is not started."""
        kwargs.setdefault("name", f"master{len(self.masters) or ''}")
        kwargs.setdefault("node_timeout", NODE_TIMEOUT)
        master = MasterProcess(self.tmp, **kwargs)
        self.masters.append(master)
        if start:
            master.start()
        return master

    def agent(
        self,
        master: MasterProcess,
        *,
        wait: bool = True,
        also: Sequence[MasterProcess] = (),
        **kwargs: Any,
    ) -> AgentProcess:
        """An agent of `master`, which fails over to the masters `also` lists."""
        kwargs.setdefault("name", f"agent{len(self.agents) or ''}")
        kwargs.setdefault("heartbeat_interval", AGENT_INTERVAL)
        kwargs.setdefault("poll_interval", AGENT_INTERVAL)
        urls = ",".join(m.url for m in (master, *also))
        agent = AgentProcess(self.tmp, urls, **kwargs)
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
