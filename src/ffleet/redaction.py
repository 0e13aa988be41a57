"""Secrets kept out of logs, error replies and listings: URL credentials and stream keys.

A store URL carries a database password, an agent's `--master` URL may carry credentials, and
an RTMP `output` carries the stream key that lets anyone broadcast on that channel. Each is
shown with the secret replaced by `***`; the redaction errs towards hiding too much, so a
mistyped scheme or a password with `@` in it is hidden too.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

import msgspec

from ffleet.models import Job

# user:secret@ after `scheme://`, or from the start of a URL whose `//` was mistyped away.
_USERINFO = re.compile(r"^(?P<user>[^:/@?#]*):(?P<secret>.*)@")
_QUERY_SECRET = re.compile(
    r"(?i)(?P<key>[?&;](?:password|passwd|pass|pwd|sslpassword|token|key|secret)=)[^&#;]*"
)


def redact_url(url: str) -> str:
    """`url` with any password, in its user info or its query, replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    head, rest = (scheme + sep, rest) if sep else ("", url)
    hidden = head + _USERINFO.sub(lambda m: f"{m['user']}:***@", rest, count=1)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}***", hidden)


def redact_stream_key(output: str) -> str:
    """An RTMP URL without its stream key (the last path segment) and credentials; anything
    that is not a stream URL comes back as it is."""
    if output in ("null", "file"):
        return output
    try:
        parts = urlsplit(output)
    except ValueError:
        return "***"
    if not parts.scheme or not parts.netloc:
        return output
    head = parts.path.rpartition("/")[0]
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, f"{head}/***", "", ""))


def without_stream_key(job: Job) -> Job:
    """`job` with a streaming `output` shown without its stream key (the same job when it
    streams nowhere)."""
    output = job.parameters.get("output")
    if not isinstance(output, str) or output in ("null", "file"):
        return job
    return msgspec.structs.replace(
        job, parameters={**job.parameters, "output": redact_stream_key(output)}
    )
