"""What a refused or failed request is answered: the app's exception handlers, one per
kind of failure, each logging the refusal once."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ffleet.master.http import ApiError, JsonResponse, error_response
from ffleet.master.store_health import RETRY_AFTER_S
from ffleet.store import StoreError, StoreUnavailable

log = logging.getLogger("ffleet.master")


def _refused(request: Request, status_code: int, message: str) -> Response:
    log.warning("%s %s refused (%d): %s", request.method, request.url.path, status_code, message)
    return error_response(status_code, message)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    reply = _refused(request, exc.status_code, exc.message)
    reply.headers.update(exc.headers)
    return reply


async def _store_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreError)
    return _refused(request, exc.status_code, str(exc))


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    """503 with the cause; logged once per change of condition, not once per request."""
    assert isinstance(exc, StoreUnavailable)
    request.app.state.master.store_unavailable(exc.cause)
    return JsonResponse(
        {"error": str(exc)}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    code = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", "error")
    reply = _refused(request, code, str(detail))
    reply.headers.update(getattr(exc, "headers", None) or {})  # a 405's Allow
    return reply


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s %s: %r", request.method, request.url.path, exc, exc_info=exc)
    return error_response(500, "internal error; see the master log")


EXCEPTION_HANDLERS = {
    ApiError: _api_error,
    StoreUnavailable: _store_unavailable,
    StoreError: _store_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
