"""Reading this machine without failing on it: what a command prints, what a file holds.

Hardware detection runs before the agent can do anything, on machines nobody has seen: a tool
may be missing, a driver may hang, a /proc or /sys file may be absent. Each read answers None
then, and the caller leaves that value empty rather than guessing it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

# Anything slower than this is a hung driver or binary; the agent must still start.
COMMAND_TIMEOUT_S = 10.0


def command_output(argv: Sequence[str]) -> str | None:
    """Stdout of a successful command, or None when it is missing, fails or hangs."""
    try:
        result = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
