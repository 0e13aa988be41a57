"""Debian's chromium for the dashboard tests: no browser download is possible here, so
Playwright drives /usr/bin/chromium, headless, with nothing that reaches outside this machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 15_000


def require_chromium() -> None:
    """Skip without chromium; in CI, where it is installed, its absence is a failure."""
    if not Path(CHROMIUM).exists():
        why = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
