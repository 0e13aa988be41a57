"""The web dashboard at /ui: server-rendered pages, live by Server-Sent Events.

Actions (submit, cancel, retry, drain) are not routes of their own: the page's script calls
the same JSON API as the CLI, so they pass the same validation and fail with the same messages.
Pages and streams sit behind the master's guard (readers and up); a browser without a session
is sent to the sign-in page (session.py).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ffleet.master.access import Access
from ffleet.master.ui import live
from ffleet.master.ui.render import SECURITY_HEADERS, STATIC_PREFIX, page, render
from ffleet.master.ui.session import (
    SESSION_PATH,
    SIGN_IN_PATH,
    SIGN_OUT_PATH,
    Handler,
    Sessions,
)
from ffleet.master.ui.views import VIEWS, Context, View, may_act, may_drain, viewer
from ffleet.store import NotFound, Store

# The master's authentication and role check (readers and up), audited, around a handler.
Guard = Callable[[Handler], Handler]


def events_path(path: str) -> str:
    return path.rstrip("/") + "/events"


def _context(view: View, store: Store, request: Request) -> Context:
    context = view.context(store, request)
    context.update(may_act=may_act(request), may_drain=may_drain(request), viewer=viewer(request))
    return context


def _page(view: View, store: Store) -> Handler:
    async def handle(request: Request) -> Response:
        try:
            context = _context(view, store, request)
        except NotFound as exc:
            missing = {"title": "Not found", "message": str(exc), "live": None}
            return page("missing.html", {**missing, "viewer": viewer(request)}, 404)
        live_url = None
        if view.region is not None:
            query = f"?{request.url.query}" if request.url.query else ""
            live_url = events_path(request.url.path) + query
        context["live"] = live_url
        return page(view.template, context)

    return handle


def _events(view: View, store: Store, access: Access) -> Handler:
    assert view.region is not None
    region = view.region

    async def handle(request: Request) -> Response:
        def current() -> str:
            access.identify(request)  # a token revoked or expired meanwhile ends the stream
            return render(region, _context(view, store, request))

        return StreamingResponse(
            live.stream(current, request.headers.get("last-event-id")),
            media_type="text/event-stream",
            headers={**SECURITY_HEADERS, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return handle


async def _home(request: Request) -> Response:
    return RedirectResponse("/ui")


def routes(store: Store, access: Access, guard: Guard) -> list[BaseRoute]:
    """The dashboard's routes; each live page's event stream is listed before the pages, so
    that `/ui/jobs/events` is not taken for a job id. The static files, the sign-in page and
    signing out are public; signing in is guarded, so it is checked and audited like a change."""
    sessions = Sessions(access)
    found: list[BaseRoute] = [
        Route("/", sessions.signed_in(guard(_home)), methods=["GET"]),
        Mount(STATIC_PREFIX, StaticFiles(packages=[("ffleet.master.ui", "static")])),
        Route(SIGN_IN_PATH, sessions.page, methods=["GET"]),
        Route(SESSION_PATH, guard(sessions.sign_in), methods=["POST"]),
        Route(SIGN_OUT_PATH, sessions.sign_out, methods=["POST"]),
    ]
    found += [
        Route(events_path(view.path), guard(_events(view, store, access)), methods=["GET"])
        for view in VIEWS
        if view.region is not None
    ]
    found += [
        Route(view.path, sessions.signed_in(guard(_page(view, store))), methods=["GET"])
        for view in VIEWS
    ]
    return found
