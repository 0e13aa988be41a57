"""Human durations (`500ms`, `10s`, `1m`, `1h30m`) for flags shared by master and agent."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Return seconds for `text`; a bare number means seconds. Raises ValueError with the reason."""
    value = text.strip().lower()
    if not value:
        raise ValueError("empty duration")
    try:
        seconds = float(value)
    except ValueError:
        pos = 0
        seconds = 0.0
        for match in _PART.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(value) or pos == 0:
            raise ValueError(
                f"invalid duration {text!r}: use a number with ms, s, m or h (e.g. 500ms, 10s, 1m)"
            ) from None
    if seconds < 0:
        raise ValueError(f"invalid duration {text!r}: must not be negative")
    return seconds
