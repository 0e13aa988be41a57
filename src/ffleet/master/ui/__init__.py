"""The web dashboard at /ui: server-rendered pages, live by Server-Sent Events.

Actions (submit, cancel, retry, drain) are not routes of their own: the page's script calls
the same JSON API as the CLI, so they pass the same validation and fail with the same messages.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ffleet.master.ui import live
from ffleet.master.ui.render import SECURITY_HEADERS, STATIC_PREFIX, page, render
from ffleet.master.ui.views import VIEWS, Context, View, may_act
from ffleet.store import NotFound, Store


def events_path(path: str) -> str:
    return path.rstrip("/") + "/events"


def _context(view: View, store: Store, request: Request) -> Context:
    context = view.context(store, request)
    context["may_act"] = may_act(request)
    return context


def _page(view: View, store: Store) -> Route:
    async def handle(request: Request) -> Response:
        try:
            context = _context(view, store, request)
        except NotFound as exc:
            return page(
                "missing.html", {"title": "Not found", "message": str(exc), "live": None}, 404
            )
        live_url = None
        if view.region is not None:
            query = f"?{request.url.query}" if request.url.query else ""
            live_url = events_path(request.url.path) + query
        context["live"] = live_url
        return page(view.template, context)

    return Route(view.path, handle, methods=["GET"])


def _events(view: View, store: Store) -> Route:
    assert view.region is not None
    region = view.region

    async def handle(request: Request) -> Response:
        def current() -> str:
            return render(region, _context(view, store, request))

        return StreamingResponse(
            live.stream(current, request.headers.get("last-event-id")),
            media_type="text/event-stream",
            headers={**SECURITY_HEADERS, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return Route(events_path(view.path), handle, methods=["GET"])


async def _home(request: Request) -> Response:
    return RedirectResponse("/ui")


def routes(store: Store) -> list[BaseRoute]:
    """The dashboard's routes; each live page's event stream is listed before the pages, so
    that `/ui/jobs/events` is not taken for a job id."""
    found: list[BaseRoute] = [
        Route("/", _home, methods=["GET"]),
        Mount(STATIC_PREFIX, StaticFiles(packages=[("ffleet.master.ui", "static")])),
    ]
    found += [_events(view, store) for view in VIEWS if view.region is not None]
    found += [_page(view, store) for view in VIEWS]
    return found
