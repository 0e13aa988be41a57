"""The settings objects: what they refuse, and that the command line runs on their defaults."""

from __future__ import annotations

import dataclasses
import gc
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import ffleet.agent.hardware
import ffleet.agent.runner
import ffleet.master.app
from ffleet.agent.settings import AgentSettings
from ffleet.cli import app
from ffleet.durations import format_duration, parse_duration
from ffleet.master.serve import FULL_COLLECTION_AFTER, YOUNG_COLLECTION_AFTER
from ffleet.master.settings import MasterSettings
from ffleet.policy import SchedulingPolicy
from ffleet.settings import SettingsError

runner = CliRunner()
REMOTE_MASTER = "http://192.0.2.1:8080"  # TEST-NET: never this machine, never contacted


@pytest.fixture(autouse=True)
def no_ffleet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The twins under test are the only FFLEET_* variables the commands see."""
    for name in os.environ:
        if name.startswith("FFLEET_"):
            monkeypatch.delenv(name)


def test_defaults_are_valid() -> None:
    MasterSettings()
    AgentSettings()


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"port": 0}, "--port"),
        ({"port": 65536}, "--port"),
        ({"host": ""}, "--host"),
        ({"policy": SchedulingPolicy(node_timeout_s=0)}, "--node-timeout"),
        ({"policy": SchedulingPolicy(max_job_timeout_s=0)}, "--max-job-timeout"),
        ({"policy": SchedulingPolicy(backoff_base_s=0)}, "--backoff-base"),
        ({"policy": SchedulingPolicy(backoff_base_s=10, backoff_cap_s=5)}, "--backoff-cap"),
        ({"policy": SchedulingPolicy(aging_interval_s=0)}, "--aging-interval"),
        ({"reap_interval_s": 0}, "--reap-interval"),
        ({"reap_interval_s": 46}, "--reap-interval"),  # over half the default 90 s timeout
        ({"policy": SchedulingPolicy(node_timeout_s=1.5)}, "--reap-interval"),
        ({"max_body_bytes": 0}, "--max-body-bytes"),
        ({"max_wait_s": -1}, "--max-wait"),
        ({"recheck_s": 0}, "--recheck-interval"),
        ({"keep_alive_s": 0}, "--keep-alive"),
    ],
)
def test_master_refuses_what_cannot_work(changes: dict[str, Any], flag: str) -> None:
    with pytest.raises(SettingsError, match=flag):
        MasterSettings(**changes)


def test_master_accepts_the_limits() -> None:
    MasterSettings(policy=SchedulingPolicy(node_timeout_s=2), reap_interval_s=1, max_wait_s=0)
    MasterSettings(policy=SchedulingPolicy(backoff_base_s=5, backoff_cap_s=5))


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"slots": 0}, "--slots"),
        ({"slots": 257}, "--slots"),
        ({"poll_interval_s": 0}, "--poll-interval"),
        ({"heartbeat_interval_s": 0}, "--heartbeat-interval"),
        ({"heartbeat_interval_s": -1}, "--heartbeat-interval"),
        ({"long_poll_s": 0}, "--long-poll"),
        ({"grace_s": -1}, "--grace"),
        ({"metrics_port": 0}, "--metrics-port"),
        ({"metrics_port": 65536}, "--metrics-port"),
        ({"metrics_host": ""}, "--metrics-host"),
    ],
)
def test_agent_refuses_what_cannot_work(changes: dict[str, Any], flag: str) -> None:
    with pytest.raises(SettingsError, match=flag):
        AgentSettings(**changes)


def test_agent_accepts_the_limits() -> None:
    AgentSettings(slots=256, grace_s=0)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.5, "500ms"), (1.5, "1.5s"), (90, "1m30s"), (75, "1m15s"), (21600, "6h")],
)
def test_durations_are_shown_as_typed(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


class _Captured:
    """Stands in for the server or the agent loop: records what the command built."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.kwargs: dict[str, Any] = {}


@pytest.fixture
def master_started(monkeypatch: pytest.MonkeyPatch) -> _Captured:
    """`ffleet master` up to the point where it would serve: its settings and uvicorn's
    arguments, without a store or a socket."""
    import uvicorn

    seen = _Captured()

    def create_app(settings: MasterSettings) -> object:
        seen.calls.append((settings,))
        return object()

    def run(server: uvicorn.Server, sockets: object = None) -> None:
        config = server.config
        seen.kwargs = {
            "host": config.host,
            "port": config.port,
            "timeout_keep_alive": config.timeout_keep_alive,
            "limit_concurrency": config.limit_concurrency,
            "http": config.http,
        }
        server.started = True

    monkeypatch.setattr(ffleet.master.app, "create_app", create_app)
    monkeypatch.setattr(uvicorn.Server, "run", run)
    return seen


def test_master_without_flags_runs_on_the_settings_defaults(master_started: _Captured) -> None:
    thresholds = gc.get_threshold()
    try:
        outcome = runner.invoke(app, ["master"], env={})
        young, _, full = gc.get_threshold()
        assert (young, full) == (YOUNG_COLLECTION_AFTER, FULL_COLLECTION_AFTER)  # both rarer
    finally:
        gc.set_threshold(*thresholds)
    assert outcome.exit_code == 0, outcome.output
    assert master_started.calls == [(MasterSettings(),)]
    assert master_started.kwargs["timeout_keep_alive"] == 75
    assert master_started.kwargs["limit_concurrency"] is None  # the cap answers 503 itself
    protocols = {kind.__name__ for kind in master_started.kwargs["http"].__mro__}
    # --header-timeout, --max-connections
    assert {"CoalescingProtocol", "HeaderTimeoutProtocol", "CappedProtocol"} <= protocols
    assert (master_started.kwargs["host"], master_started.kwargs["port"]) == ("127.0.0.1", 8080)


def test_master_flags_and_twins_reach_the_settings(master_started: _Captured) -> None:
    outcome = runner.invoke(
        app,
        ["master", "--node-timeout", "2m", "--keep-alive", "1500ms"],
        env={"FFLEET_MAX_WAIT": "10s", "FFLEET_RECHECK_INTERVAL": "500ms"},
    )
    assert outcome.exit_code == 0, outcome.output
    [(settings,)] = master_started.calls
    assert settings == MasterSettings(
        policy=SchedulingPolicy(node_timeout_s=120),
        max_wait_s=10,
        recheck_s=0.5,
        keep_alive_s=1.5,
    )
    assert master_started.kwargs["timeout_keep_alive"] == 2  # uvicorn: whole seconds, not less


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--node-timeout", "1s"], "--reap-interval (1s) must be at most half of --node-timeout"),
        (["--recheck-interval", "0s"], "--recheck-interval must be more than 0"),
        (["--keep-alive", "soon"], "invalid duration 'soon'"),
        (["--log-level", "loud"], "'loud' is not one of"),
    ],
)
def test_master_refuses_nonsense_at_start(
    master_started: _Captured, args: list[str], message: str
) -> None:
    outcome = runner.invoke(app, ["master", *args], env={"COLUMNS": "200"})
    assert outcome.exit_code == 2 and message in outcome.output, outcome.output
    assert master_started.calls == []


@pytest.fixture
def agent_started(monkeypatch: pytest.MonkeyPatch) -> _Captured:
    """`ffleet agent --register` up to its loop: the settings the loop would run on."""
    seen = _Captured()

    class FakeAgent:
        def __init__(self, settings: AgentSettings, hardware: object, client: object) -> None:
            seen.calls.append((settings,))

        def __enter__(self) -> FakeAgent:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def run(self) -> None:
            return None

    monkeypatch.setattr(ffleet.agent.runner, "Agent", FakeAgent)
    monkeypatch.setattr(ffleet.agent.hardware, "detect_hardware", lambda path: object())
    monkeypatch.setattr(ffleet.agent.hardware, "format_summary", lambda hardware: "hardware")
    return seen


def test_agent_without_flags_runs_on_the_settings_defaults(agent_started: _Captured) -> None:
    outcome = runner.invoke(app, ["agent", "--register", "--master", REMOTE_MASTER], env={})
    assert outcome.exit_code == 0, outcome.output
    assert agent_started.calls == [(AgentSettings(master_url=REMOTE_MASTER),)]


def test_agent_flags_and_twins_reach_the_settings(agent_started: _Captured, tmp_path: Path) -> None:
    outcome = runner.invoke(
        app,
        ["agent", "--register", "--long-poll", "5s", "--label", "site=lab"],
        env={
            "FFLEET_MASTER": REMOTE_MASTER,
            "FFLEET_HEARTBEAT_INTERVAL": "2s",
            "FFLEET_WORK_DIR": str(tmp_path),
            "FFLEET_SLOTS": "2",
        },
    )
    assert outcome.exit_code == 0, outcome.output
    [(settings,)] = agent_started.calls
    assert settings == dataclasses.replace(
        AgentSettings(),
        master_url=REMOTE_MASTER,
        work_dir=tmp_path,
        labels={"site": "lab"},
        slots=2,
        heartbeat_interval_s=2,
        long_poll_s=5,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--heartbeat-interval", "0"], "--heartbeat-interval must be more than 0"),
        (["--slots", "0"], "--slots must be between 1 and 256"),
        (["--grace", "-1s"], "invalid duration '-1s'"),
    ],
)
def test_agent_refuses_nonsense_at_start(
    agent_started: _Captured, args: list[str], message: str
) -> None:
    outcome = runner.invoke(
        app, ["agent", "--register", "--master", REMOTE_MASTER, *args], env={"COLUMNS": "200"}
    )
    assert outcome.exit_code == 2 and message in outcome.output, outcome.output
    assert agent_started.calls == []
