"""The systemd units: systemd itself accepts them, they stay hardened, they read only settings
ffleet has, and the agent's stop timeout leaves room for its --grace."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ffleet.agent.child_process import TERM_GRACE_S
from ffleet.durations import parse_duration
from tests.deploy.support import DEPLOY, default, envvars, parsed, unavailable

SYSTEMD = DEPLOY / "systemd"
UNITS = {"master": SYSTEMD / "ffleet-master.service", "agent": SYSTEMD / "ffleet-agent.service"}
ENV_EXAMPLES = {"master": SYSTEMD / "master.env.example", "agent": SYSTEMD / "agent.env.example"}
INSTALLED_FFLEET = "/opt/ffleet/bin/ffleet"
# systemd-analyze security rates exposure 0-100 (it prints a tenth of it); both units rate
# about 15-21 today, "OK". A drop in hardening pushes it up.
MAX_EXPOSURE = 25


def directives(unit: Path) -> dict[str, list[str]]:
    """`Section.Key` -> every value, in order (systemd keys may repeat)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


def one(unit: Path, key: str) -> str:
    (value,) = directives(unit)[f"Service.{key}"]
    return value


def environment(unit: Path) -> dict[str, str]:
    pairs = (item.partition("=") for item in directives(unit).get("Service.Environment", []))
    return {key: value for key, _, value in pairs}


@pytest.fixture
def runnable_units(tmp_path: Path) -> list[Path]:
    """The units with ExecStart on this checkout's ffleet: verify checks that it exists."""
    ffleet = Path(sys.executable).with_name("ffleet")
    assert ffleet.exists(), f"{ffleet} missing: pip install -e . first"
    copies = []
    for unit in UNITS.values():
        text = unit.read_text()
        assert f"ExecStart={INSTALLED_FFLEET} " in text
        copy = tmp_path / unit.name
        copy.write_text(text.replace(f"ExecStart={INSTALLED_FFLEET} ", f"ExecStart={ffleet} "))
        copies.append(copy)
    return copies


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        unavailable("systemd-analyze is not installed (apt-get install systemd)")
    assert found is not None
    return found


def test_systemd_analyze_verify_accepts_the_units(runnable_units: list[Path]) -> None:
    analyze = systemd_analyze()
    done = subprocess.run(
        [analyze, "verify", "--man=no", *map(str, runnable_units)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    about_ours = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if any(unit.name in line for unit in runnable_units)
    ]
    assert done.returncode == 0, done.stdout + done.stderr
    assert about_ours == []


def test_systemd_analyze_rates_the_units_well_hardened(runnable_units: list[Path]) -> None:
    analyze = systemd_analyze()
    for unit in runnable_units:
        done = subprocess.run(
            [analyze, "security", "--offline=yes", f"--threshold={MAX_EXPOSURE}", str(unit)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, f"{unit.name}:\n{done.stdout[-2000:]}"


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_is_hardened_and_restarts(name: str) -> None:
    unit = UNITS[name]
    expected = {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "Restart": "on-failure",
        "KillMode": "mixed",
        "StateDirectory": f"ffleet-{name}",
        "WorkingDirectory": f"/var/lib/ffleet-{name}",
    }
    assert {key: one(unit, key) for key in expected} == expected


def test_master_keeps_sqlite_in_its_state_directory() -> None:
    store = environment(UNITS["master"])["FFLEET_STORE"]
    assert store == f"sqlite:////var/lib/{one(UNITS['master'], 'StateDirectory')}/ffleet.db"


def test_agent_keeps_node_id_and_spool_in_its_state_directory() -> None:
    unit = UNITS["agent"]
    assert environment(unit)["FFLEET_WORK_DIR"] == f"/var/lib/{one(unit, 'StateDirectory')}"
    assert environment(unit)["FFLEET_REGISTER"] == "true"


def test_agent_stop_timeout_outlasts_its_grace() -> None:
    """systemd's SIGKILL must come after the agent has stopped FFmpeg and handed jobs back."""
    grace_s = parse_duration(str(default("agent", "FFLEET_GRACE")))
    stop_s = parse_duration(one(UNITS["agent"], "TimeoutStopSec"))
    assert stop_s >= grace_s + TERM_GRACE_S + 5


@pytest.mark.parametrize("name", sorted(UNITS))
def test_settings_come_from_a_root_only_env_file(name: str) -> None:
    unit = UNITS[name]
    assert one(unit, "EnvironmentFile") == f"-/etc/ffleet/{name}.env"
    assert "mode 0600" in ENV_EXAMPLES[name].read_text()
    assert f"install -D -m 0600 -o root -g root {ENV_EXAMPLES[name].name}" in unit.read_text()


@pytest.mark.parametrize("name", sorted(UNITS))
def test_every_variable_is_one_the_command_reads(name: str) -> None:
    """Commented examples count too: a reader will uncomment them."""
    text = UNITS[name].read_text() + ENV_EXAMPLES[name].read_text()
    used = set(re.findall(r"\bFFLEET_[A-Z_]+", text))
    assert used, "no settings at all?"
    assert used <= envvars(name), f"not read by `ffleet {name}`: {sorted(used - envvars(name))}"


def env_file(path: Path, *, uncomment: bool) -> dict[str, str]:
    """KEY=VALUE lines as systemd reads them (the examples quote nothing)."""
    found = {}
    for raw in path.read_text().splitlines():
        line = raw.removeprefix("#") if uncomment else raw
        if re.match(r"FFLEET_[A-Z_]+=", line):
            key, _, value = line.partition("=")
            found[key] = value
    return found


@pytest.mark.parametrize("name", sorted(UNITS))
def test_settings_parse_as_the_command_expects(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit's own settings, overridden by every example line uncommented."""
    env = environment(UNITS[name]) | env_file(ENV_EXAMPLES[name], uncomment=True)
    params = parsed(name, env, monkeypatch)
    if name == "agent":
        assert params["register"] is True
        assert params["label"] == ["site=lab", "rack=3"]
        assert params["input_dir"] == [Path("/srv/media"), Path("/srv/clips")]
    else:
        assert params["host"] == "0.0.0.0"
        assert params["store"].startswith("postgresql://")
