"""Untrusted text made safe where it is shown: log lines, terminals and spreadsheet cells.

Node names, job errors and scenario tags come from whoever can reach the API. Written raw,
a newline forges a log line, an ESC sequence or an OSC 8 hyperlink takes over a terminal, and
a cell starting with `=` runs as a formula when a CSV file is opened in a spreadsheet.
"""

from __future__ import annotations

import logging
import re

# C0 and C1 controls (ESC, CR, LF, BEL, NUL, ...), DEL, and the bidirectional overrides that
# make text read differently from what it is.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_FORMULA_START = ("=", "+", "-", "@")  # tab and CR are escaped before this check


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control character shown as an escape (`\\n`, `\\x1b`) instead."""
    return _UNSAFE.sub(_escape, text)


def csv_cell(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: a leading formula character gets a `'`."""
    if isinstance(value, str):
        value = printable(value)
        if value.startswith(_FORMULA_START):
            return "'" + value
    return value


class EscapingFilter(logging.Filter):
    """Formats each record's message once, escaped, so one record is always one line.

    Tracebacks are added by the formatter afterwards and keep their lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = printable(record.getMessage())
        record.args = None
        return True
