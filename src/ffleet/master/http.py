"""Request decoding and JSON replies: the only place the API turns bytes into models and back.

Every refusal is a JSON body `{"error": "<what is wrong>"}` with a 4xx status, raised as ApiError
and rendered by one exception handler.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ffleet.models import ID_PATTERN, decode_hook, encode_hook

T = TypeVar("T")

_encoder = msgspec.json.Encoder(enc_hook=encode_hook)  # times go out as RFC 3339


class ApiError(Exception):
    def __init__(
        self, status_code: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers or {}  # e.g. a 429's Retry-After


class JsonResponse(Response):
    """A response encoded by msgspec (structs and builtins alike)."""

    media_type = "application/json"

    def __init__(
        self,
        content: Any = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        if headers is not None or media_type is not None or not _sends_length(status_code):
            super().__init__(content, status_code, headers, media_type, background)
            return
        # Starlette's own result for a JSON body and no headers, without its general path
        # (most replies: built once a request).
        self.status_code = status_code
        self.background = background
        body = self.body = _encoder.encode(content)
        self.raw_headers = [(b"content-length", b"%d" % len(body)), _JSON_TYPE]

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


_JSON_TYPE = (b"content-type", b"application/json")


def _sends_length(status_code: int) -> bool:
    """Whether Starlette gives a reply of this status a Content-Length."""
    return not (status_code < 200 or status_code in (204, 304))


def error_response(status_code: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status_code=status_code)


def _header(request: Request, name: bytes) -> str | None:
    """The first value of header `name` (lowercase), as `request.headers.get` finds it, read
    from the scope's list: Starlette's Headers costs a heartbeat a few us to build and search."""
    for key, value in request.scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes whether or not a length was sent."""
    declared = _header(request, b"content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "invalid Content-Length header") from None
        if size > limit:
            raise ApiError(413, f"request body of {size} bytes exceeds the {limit}-byte limit")
    # The ASGI messages themselves: Starlette's request.stream() is an async generator
    # around the same loop, a tenth of a heartbeat's framework cost.
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise ApiError(413, f"request body exceeds the {limit}-byte limit")
        if not message.get("more_body", False):
            return b"".join([*chunks, chunk]) if chunks else chunk
        chunks.append(chunk)


def _require_json(request: Request) -> None:
    """A body must say it is JSON: a browser may send `text/plain` or a form to any site
    without asking, but never `application/json`, so this refuses cross-site requests."""
    media_type = (_header(request, b"content-type") or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "a request body must be sent as Content-Type: application/json")


async def decode(request: Request, model: type[T], limit: int, *, optional: bool = False) -> T:
    """Decode the JSON body into `model`: malformed JSON is a 400, a wrong shape or type a 422.

    With `optional`, an empty body decodes as `{}` (v1.0 heartbeats carry no body)."""
    body = await read_body(request, limit)
    if not body.strip():
        if not optional:
            raise ApiError(400, "request body is empty; a JSON object is required")
        body = b"{}"
    else:
        _require_json(request)
    try:
        try:
            return msgspec.json.decode(body, type=model, dec_hook=decode_hook)
        except msgspec.ValidationError as exc:
            if "got `float`" not in str(exc):
                raise
            # JSON (and the schema) counts 5.0 as an integer; msgspec does not. Rare: only
            # such a body pays for the second pass.
            loose = _whole_floats_as_ints(msgspec.json.decode(body))
            return msgspec.convert(loose, type=model, dec_hook=decode_hook)
    except msgspec.ValidationError as exc:
        raise ApiError(422, f"invalid request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply") from None


def _whole_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_floats_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_floats_as_ints(item) for item in value]
    return value


_ID = re.compile(ID_PATTERN)


def path_id(request: Request, name: str) -> str:
    """An id from the URL path; one no id could match is a 404 without asking the store."""
    value: str = request.path_params[name]
    if _ID.search(value) is None:
        raise ApiError(404, f"no {name.removesuffix('_id')} has the id {value[:64]!r}")
    return value


_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$(?!\n)")


def query_name(request: Request, name: str) -> str | None:
    """A free-text filter (a scenario name): printable, at most 256 characters."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if _NAME.search(raw) is None:
        raise ApiError(400, f"query parameter {name} must be printable text of 1 to 256 characters")
    return raw


def query_id(request: Request, name: str) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if _ID.search(raw) is None:
        raise ApiError(400, f"query parameter {name} is not an id: {raw[:64]!r}")
    return raw


def query_int(
    request: Request, name: str, default: int | None, *, low: int, high: int
) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"query parameter {name} must be between {low} and {high}")
    return value


def query_float(request: Request, name: str, default: float, *, high: float) -> float:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {name} must be a number, got {raw!r}") from None
    if not 0 <= value <= high:
        raise ApiError(400, f"query parameter {name} must be between 0 and {high:g}")
    return value


async def client_gone(request: Request) -> bool:
    """Whether the client has closed the connection, without waiting for anything to arrive
    (Starlette's `is_disconnected` costs three times as much: a cancel scope per call)."""
    receiving = asyncio.ensure_future(request.receive())
    await asyncio.sleep(0)  # one turn of the loop: what has arrived is there now
    if not receiving.done():
        receiving.cancel()
        return False
    return bool(receiving.result()["type"] == "http.disconnect")
