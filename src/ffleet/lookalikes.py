"""Scenario tokens that look like a resolution, frame rate or codec but are none of them.

Any token the grammar does not know is a free-form tag (`test-1080p`), so without this check
a typo silently runs a different benchmark: `1080p-h246` ran H.264 at the default settings and
`1080-h265` ran at 1280x720. A token is refused when it has the shape of a known kind (digits
first, `h`/`x` and digits, `vp`/`av` and digits) or when it is one edit away from a known
token; everything else stays a tag.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

# Shapes that only a resolution, frame rate or codec has.
_NUMERIC = re.compile(r"^\d")  # 1080, 1080i, 8k, 30fp, 1920x, 25hz
_CODEC_LIKE = re.compile(r"^(?:[hx]\.?\d+|vp\d+|av\d+|hev\w?|h\.?26\w)$")  # h246, x265, vp8, av2
_CLOSE_ENOUGH = 0.75  # difflib ratio: two letters swapped in a 4-letter token (hecv)


def suggestion(token: str, resolutions: Sequence[str], codecs: Sequence[str]) -> str | None:
    """The valid token a look-alike `token` was probably meant to be; None for a real tag.

    `resolutions` and `codecs` are the grammar's named tokens (lower case).
    """
    known = [*resolutions, *codecs]
    if _NUMERIC.match(token):
        return _numeric_suggestion(token, resolutions)
    if _CODEC_LIKE.match(token):
        return _codec_suggestion(token, codecs)
    close = difflib.get_close_matches(token, known, n=1, cutoff=_CLOSE_ENOUGH)
    return close[0] if close else None


def _numeric_suggestion(token: str, resolutions: Sequence[str]) -> str:
    digits = re.match(r"\d+", token)
    assert digits is not None
    number, rest = digits.group(), token[digits.end() :]
    if rest.startswith("f") or rest.startswith("hz"):
        return f"{number}fps"
    if rest.startswith("x"):
        return f"{number}x{_typical_height(number)}"
    named = [name for name in resolutions if name.startswith(number)]
    if named:
        return named[0]
    return _nearest(token, resolutions)


def _typical_height(width: str) -> str:
    return {"3840": "2160", "2560": "1440", "1920": "1080", "1280": "720", "854": "480"}.get(
        width, "HEIGHT"
    )


def _codec_suggestion(token: str, codecs: Sequence[str]) -> str:
    digits = "".join(c for c in token if c.isdigit())
    for codec in codecs:  # a swapped or x-prefixed codec number: h246, x265
        if digits and sorted(digits) == sorted(c for c in codec if c.isdigit()):
            return codec
    return _nearest(token, codecs)


def _nearest(token: str, candidates: Sequence[str]) -> str:
    return max(candidates, key=lambda c: difflib.SequenceMatcher(None, token, c).ratio())
