"""What the deployment tests share: the repository's deploy/ folder, the flags' environment
twins as the CLI really declares them, and a skip that CI turns into a failure."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer.main

from ffleet.cli import app

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def command(name: str) -> Any:
    """The click command typer builds for `ffleet NAME` (typer may ship its own click)."""
    return typer.main.get_command(app).commands[name]


def envvars(name: str) -> set[str]:
    """Every FFLEET_* variable `ffleet NAME` reads."""
    names: set[str] = set()
    for param in command(name).params:
        if isinstance(param.envvar, str):
            names.add(param.envvar)
        elif param.envvar:
            names.update(param.envvar)
    return names


def default(name: str, envvar: str) -> object:
    """The default of the `ffleet NAME` flag whose twin is `envvar`."""
    for param in command(name).params:
        if param.envvar == envvar:
            return param.default
    raise KeyError(envvar)


def unavailable(reason: str) -> None:
    """Skip for a missing tool locally; in CI (CI set) the tool is part of the setup: fail."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it: see .ci/run)")
    pytest.skip(reason)


def dev_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        unavailable(f"{name} is not installed (a dev dependency)")
        raise


def parsed(name: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The flag values `ffleet NAME` would run with under `env` alone: click parses and checks
    every variable (types, ranges, list splitting) as at a real start, without running it."""
    for key in envvars(name):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    params: dict[str, Any] = command(name).make_context(name, []).params
    return params
