"""What the master's and the agent's settings share: the refusal, its checks, the default address.

Each process validates its own settings object when it is built, so a value that cannot work
stops the process at start with a message naming the flag, instead of misbehaving later.
"""

from __future__ import annotations

from ffleet.durations import format_duration

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MASTER_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"  # where a default master listens


class SettingsError(ValueError):
    """A setting that cannot work; the message names the flag and is shown as it is."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise SettingsError(message)


def require_positive(flag: str, seconds: float) -> None:
    """A zero interval would spin or never wait; a negative one means nothing."""
    require(seconds > 0, f"{flag} must be more than 0 (got {format_duration(seconds)})")
