"""Signing in to the dashboard: a browser cannot send `Authorization: Bearer`, so it keeps the
token in a cookie.

The sign-in page's script sends the pasted token once, as a bearer header, to `POST
/ui/session`: the master checks it like any request (and audits it like any change), then
answers with a cookie holding the token, HttpOnly (no script can read it), SameSite=Strict (no
other site's page makes the browser send it) and Secure over HTTPS. The cookie holds the token
itself rather than a session id of its own, so masters share no session state and revoking or
expiring the token ends the session on the next request; what the cookie is accepted for is
access.py's to decide. No log line names a cookie, so the token is never logged.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ffleet.master.access import SESSION_COOKIE, Access, Identity
from ffleet.master.http import ApiError, JsonResponse
from ffleet.master.ui.render import page

Handler = Callable[[Request], Awaitable[Response]]

SIGN_IN_PATH = "/ui/sign-in"  # GET: the page
SESSION_PATH = "/ui/session"  # POST with the token as a bearer header: sign in
SIGN_OUT_PATH = "/ui/sign-out"  # POST: the cookie is cleared
HOME = "/ui"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _next(request: Request) -> str:
    """Where to go after signing in: a dashboard page of this master, never another site."""
    wanted = request.query_params.get("next", HOME)
    if not wanted.startswith(HOME) or "//" in wanted or "\\" in wanted:
        return HOME
    return wanted


def _clear(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=_secure(request), httponly=True, samesite="strict"
    )


class Sessions:
    """The sign-in page, signing in and out, and where a signed-out browser is sent."""

    def __init__(self, access: Access) -> None:
        self.access = access

    async def page(self, request: Request) -> Response:
        if not self.access.enforced:
            return RedirectResponse(HOME, 303)  # an open master: nothing to sign in to
        context = {
            "title": "Sign in",
            "live": None,
            "viewer": None,
            "next": _next(request),
            "ended": request.query_params.get("ended") == "1",
        }
        return page("sign_in.html", context)

    async def sign_in(self, request: Request) -> Response:
        """Behind the route's guard: the caller is the bearer token's credential."""
        identity: Identity = request.state.identity
        if identity.credential is None:
            raise ApiError(400, "this master runs without authentication: nothing to sign in to")
        if identity.session:
            raise ApiError(400, "send the token to sign in with as Authorization: Bearer <token>")
        secret = request.headers["authorization"].partition(" ")[2].strip()
        expires_at = identity.credential.expires_at
        max_age = None
        if expires_at is not None:  # the cookie goes when the token does (the master checks too)
            max_age = max(1, math.ceil(expires_at - self.access.now()))
        reply = JsonResponse(
            {
                "id": identity.id,
                "name": identity.name,
                "role": identity.role,
                "expires_at": expires_at,
            }
        )
        reply.set_cookie(
            SESSION_COOKIE,
            secret,
            max_age=max_age,
            path="/",
            secure=_secure(request),
            httponly=True,
            samesite="strict",
        )
        return reply

    async def sign_out(self, request: Request) -> Response:
        """Public: a session whose token was revoked must still be able to end."""
        reply = JsonResponse({"signed_out": True})
        _clear(reply, request)
        return reply

    def signed_in(self, handler: Handler) -> Handler:
        """`handler` (a guarded page) for a browser without a usable session: the sign-in
        page, and the stale cookie cleared. API clients keep their 401."""

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                if exc.status_code != 401 or "text/html" not in request.headers.get("accept", ""):
                    raise
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            query = {"next": here}
            if SESSION_COOKIE in request.cookies:
                query["ended"] = "1"
            reply = RedirectResponse(f"{SIGN_IN_PATH}?{urllib.parse.urlencode(query)}", 303)
            _clear(reply, request)
            return reply

        return run
