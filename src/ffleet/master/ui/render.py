"""Templates and the headers every dashboard response carries.

Jinja2 escapes everything it renders (job parameters, labels and errors are user input), and
the Content-Security-Policy allows only this master's own script and stylesheet: no inline
script, no inline style, no eval, nothing from elsewhere.
"""

from __future__ import annotations

import json
import shlex
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import jinja2
import msgspec
from starlette.responses import HTMLResponse

from ffleet import __version__
from ffleet.models import encode_hook, rfc3339

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATIC_PREFIX = "/ui/static"


def age(epoch: float | None) -> str:
    """`12 s ago`: what the page shows until its script keeps it current."""
    if epoch is None:
        return "-"
    seconds = max(0.0, time.time() - epoch)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def gib(count: int | None) -> str:
    return "-" if not count else f"{count / 2**30:.1f} GiB"


def argv_text(argv: object) -> str:
    """An argv list as one shell-quoted line a user can paste."""
    if isinstance(argv, list):
        return shlex.join(str(word) for word in argv)
    return "" if argv is None else str(argv)


def pretty(value: object) -> str:
    """Any struct or JSON value as indented JSON text."""
    plain = msgspec.to_builtins(value, enc_hook=encode_hook)
    return json.dumps(plain, indent=2, sort_keys=True, default=str)


def segment(value: object) -> str:
    """One URL path segment: a node id is the registering client's choice, so a `/` or `..` in
    it must not move a link or an action to another route."""
    return urllib.parse.quote(str(value), safe="")


def static(name: str) -> str:
    return f"{STATIC_PREFIX}/{name}?v={__version__}"


environment = jinja2.Environment(
    loader=jinja2.PackageLoader("ffleet.master.ui", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(
    age=age,
    gib=gib,
    when=rfc3339,
    argv=argv_text,
    pretty=pretty,
    segment=segment,
    short=lambda s: str(s)[:8],
)
environment.globals.update(static=static)


def render(template: str, context: Mapping[str, Any]) -> str:
    return environment.get_template(template).render(context)


def page(template: str, context: Mapping[str, Any], status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(render(template, context), status_code, headers=SECURITY_HEADERS)
