"""Human durations (`500ms`, `10s`, `1m`, `1h30m`, `30d`): read from flags, shown in help."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


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
                f"invalid duration {text!r}: use a number with ms, s, m, h or d "
                "(e.g. 500ms, 10s, 1m)"
            ) from None
    if seconds < 0:
        raise ValueError(f"invalid duration {text!r}: must not be negative")
    return seconds


def format_duration(seconds: float) -> str:
    """The inverse of `parse_duration`, to the millisecond: 90 gives `1m30s`, 0.5 `500ms`."""
    if seconds < 0:  # only ever shown, in the message that refuses it
        return f"-{format_duration(-seconds)}"
    hours, rest = divmod(round(seconds * 1000), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, millis = divmod(rest, 1000)
    parts = [f"{hours}h"] if hours else []
    if minutes:
        parts.append(f"{minutes}m")
    if whole and millis:
        parts.append(f"{whole}.{millis:03d}".rstrip("0") + "s")
    elif whole:
        parts.append(f"{whole}s")
    elif millis:
        parts.append(f"{millis}ms")
    return "".join(parts) or "0s"
