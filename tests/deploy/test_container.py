"""The container image definition, read as text (no container engine runs here): multi-stage,
non-root, ffleet from this source tree with the pinned FFmpeg package, and a HEALTHCHECK that
really answers against a running master."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator

import pytest
from packaging.requirements import Requirement

from tests.deploy.support import DEPLOY, ROOT, envvars

CONTAINERFILE = DEPLOY / "container" / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def healthcheck_command() -> list[str]:
    (arguments,) = [rest for keyword, rest in final_stage() if keyword == "HEALTHCHECK"]
    _, _, command = arguments.partition(" CMD ")
    parsed: list[str] = json.loads(command)
    return parsed


def test_build_is_multi_stage_and_runs_as_an_unprivileged_user() -> None:
    steps = instructions()
    assert sum(keyword == "FROM" for keyword, _ in steps) >= 2
    final = final_stage()
    assert any(k == "COPY" and rest.startswith("--from=build ") for k, rest in final)
    (user,) = [rest for keyword, rest in final if keyword == "USER"]
    uid = user.partition(":")[0]
    assert uid.isdigit() and int(uid) > 0, "USER must be a numeric non-root uid"


def test_installs_ffleet_from_this_tree_with_the_pinned_ffmpeg_package() -> None:
    steps = instructions()
    from_context = [
        rest.split()[:-1] for keyword, rest in steps if keyword == "COPY" and "--from=" not in rest
    ]
    sources = [source for sources in from_context for source in sources]
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the build context"
    assert "src" in sources and "pyproject.toml" in sources
    (pin,) = [rest for keyword, rest in steps if rest.startswith("IMAGEIO_FFMPEG_VERSION=")]
    version = pin.partition("=")[2]
    install = " ".join(
        rest for keyword, rest in steps if keyword == "RUN" and "pip install" in rest
    )
    assert '"imageio-ffmpeg==${IMAGEIO_FFMPEG_VERSION}" .' in install
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (requirement,) = [Requirement(d) for d in declared if Requirement(d).name == "imageio-ffmpeg"]
    assert requirement.specifier.contains(version), f"pin {version} outside {requirement}"


def test_environment_defaults_are_settings_ffleet_reads() -> None:
    env = " ".join(rest for keyword, rest in final_stage() if keyword == "ENV")
    used = set(re.findall(r"\bFFLEET_[A-Z_]+", env))
    assert used and used <= envvars("master") | envvars("agent")
    assert "FFLEET_HOST=0.0.0.0" in env, "a master in a container must listen beyond loopback"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def master_port() -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "FFLEET_PORT": str(port), "FFLEET_STORE": "memory"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ffleet", "master", "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("master did not start listening")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_healthcheck(port: int) -> int:
    command = healthcheck_command()
    assert command[0] == "python"
    done = subprocess.run(
        [sys.executable, *command[1:]],
        env={**os.environ, "FFLEET_PORT": str(port)},
        capture_output=True,
        timeout=10,
    )
    return done.returncode


def test_healthcheck_passes_against_a_running_master(master_port: int) -> None:
    assert run_healthcheck(master_port) == 0


def test_healthcheck_fails_where_no_master_answers() -> None:
    assert run_healthcheck(free_port()) != 0
