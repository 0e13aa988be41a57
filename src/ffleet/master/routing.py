"""Finding a request's route by a table lookup instead of trying every route's pattern in turn.

Starlette's router matches each route's regular expression against the path, in order: the
dashboard's routes come first, so a heartbeat tried fourteen patterns before its own, a fifth
of what the master spent on it beside the store. Here the plain routes (`/jobs/next`) are a
dict lookup and the ones with `{parameters}` are grouped by their number of path segments
and their first segment, each checked by comparing its fixed segments. What this finds is
exactly the route Starlette would take: the first route in the list that matches the path
and the method. Any other case (no route, a method the route does not allow, a path a mount
or a typed parameter could claim) goes to Starlette's own matching, so 404s, 405s and
redirects stay its.

A request the table finds, to a route whose handler is an `async def handler(request)`, is
also served without Starlette's layers between the app's own middleware and the handler (its
ExceptionMiddleware, the router, the route's exception wrapper: each wraps `send` once more
and builds its own Request): IndexedExceptions calls the handler and maps what it raises
through the ExceptionMiddleware's own handlers, as those layers would.
"""

from __future__ import annotations

import functools
import inspect
import operator
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette._exception_handler import _lookup_exception_handler
from starlette._utils import get_route_path, is_async_callable
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import StringConvertor
from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp, Lifespan, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class _Indexed:
    """One route the table can find: its place in the list, and its path split in segments
    (None where a `{parameter}` stands)."""

    position: int
    route: Route
    segments: tuple[str | None, ...]
    names: tuple[str, ...]  # the parameters, in the order of their segments
    endpoint: Endpoint | None  # the handler, when it can be called directly
    # Where the fixed segments and the parameters stand (derived from `segments`): the fixed
    # ones read with one itemgetter call and compared at once.
    _fixed_of: Callable[[Sequence[str]], Any] = field(init=False, repr=False, compare=False)
    _fixed: Any = field(init=False, repr=False, compare=False)
    _slots: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def accepts(self, method: str) -> bool:
        methods = self.route.methods
        return methods is None or method in methods

    def __post_init__(self) -> None:
        fixed_of = operator.itemgetter(*(i for i, s in enumerate(self.segments) if s is not None))
        object.__setattr__(self, "_fixed_of", fixed_of)
        object.__setattr__(self, "_fixed", fixed_of(self.segments))
        object.__setattr__(
            self, "_slots", tuple(i for i, s in enumerate(self.segments) if s is None)
        )

    def params(self, parts: Sequence[str]) -> dict[str, str] | None:
        """The path parameters if `parts` (the request path split at "/", as many segments as
        this route's: the table's key) is this route's."""
        if self._fixed_of(parts) != self._fixed:
            return None
        if len(self._slots) == 1:  # most routes: one parameter
            value = parts[self._slots[0]]
            return {self.names[0]: value} if value else None
        values = [parts[index] for index in self._slots]
        if not all(values):
            return None  # a parameter matches one segment or more characters
        return dict(zip(self.names, values, strict=True))


def _segments(route: Route) -> tuple[tuple[str | None, ...], tuple[str, ...]] | None:
    """The route's path as fixed segments and parameters, or None if the table cannot hold
    it (a parameter typed other than a plain string, or sharing a segment with text)."""
    if not all(type(c) is StringConvertor for c in route.param_convertors.values()):
        return None
    segments: list[str | None] = []
    names: list[str] = []
    for part in route.path.split("/"):
        if part.startswith("{") and part.endswith("}") and part.count("{") == 1:
            segments.append(None)
            names.append(part[1:-1])
        elif "{" in part or "}" in part:
            return None
        else:
            segments.append(part)
    return tuple(segments), tuple(names)


def _direct_endpoint(route: Route) -> Endpoint | None:
    """A route's async `handler(request)`, if Starlette would call it as such."""
    handler: Any = route.endpoint
    while isinstance(handler, functools.partial):
        handler = handler.func
    if not (inspect.isfunction(handler) or inspect.ismethod(handler)):
        return None  # an ASGI app: left to Starlette
    if not inspect.iscoroutinefunction(handler):
        return None  # Starlette runs it in a thread
    endpoint: Endpoint = route.endpoint
    return endpoint


def _mount_claims(prefix: str, path: str) -> bool:
    """Whether a mount at `prefix` (its path without a trailing "/") could take `path`."""
    return path == prefix or path.startswith(prefix + "/")


# Plain paths' answers kept per (path, method): bounded, as methods are the clients' text.
PLAIN_ANSWERS_KEPT = 1024


@dataclass(frozen=True)
class _Candidate:
    """A templated route as one (segment count, first segment) key offers it: `shadowed`
    holds the earlier mounts that could claim a path under that key, None when a route
    the table does not hold comes earlier (the table cannot answer past it)."""

    entry: _Indexed
    shadowed: tuple[str, ...] | None


class IndexedRouter(Router):
    """Starlette's Router with a table in front; see the module docstring."""

    def __init__(self, routes: Sequence[BaseRoute], *, lifespan: Lifespan[Any] | None) -> None:
        super().__init__(list(routes), lifespan=lifespan)
        self._plain: dict[str, list[_Indexed]] = {}
        # By (number of segments, first segment): "/nodes/{node_id}" under (3, "nodes").
        templated: dict[tuple[int, str | None], list[_Indexed]] = {}
        self._mounts: list[tuple[int, str]] = []  # (position, path without a trailing "/")
        self._first_other: int | None = None  # the first route neither indexed nor a mount
        for position, route in enumerate(self.routes):
            found = _segments(route) if isinstance(route, Route) else None
            if isinstance(route, Route) and found is not None:
                segments, names = found
                entry = _Indexed(position, route, segments, names, _direct_endpoint(route))
                if names:
                    key = (len(segments), segments[1])
                    templated.setdefault(key, []).append(entry)
                else:
                    self._plain.setdefault(route.path, []).append(entry)
            elif isinstance(route, Mount) and "{" not in route.path:
                self._mounts.append((position, route.path.rstrip("/")))
            elif self._first_other is None:
                self._first_other = position
        # Each key's candidates with those of a parameter first segment, in the list's order,
        # so the first that takes a path is the one: its two lists merged once, here.
        self._candidates = {
            key: self._merged(key, templated.get(key, []), templated.get((key[0], None), []))
            for key in templated
        }
        self._plain_answers: dict[tuple[str, str], tuple[_Indexed, dict[str, str]] | None] = {}

    def _merged(
        self, key: tuple[int, str | None], own: list[_Indexed], anywhere: list[_Indexed]
    ) -> tuple[_Candidate, ...]:
        entries = own if key[1] is None else sorted(own + anywhere, key=lambda e: e.position)
        return tuple(_Candidate(e, self._shadowing(e.position, key[1])) for e in entries)

    def _shadowing(self, position: int, first: str | None) -> tuple[str, ...] | None:
        """The mounts before `position` that could claim a path whose first segment is
        `first` (None: any); None if a route the table does not hold comes before."""
        if self._first_other is not None and self._first_other < position:
            return None
        return tuple(
            prefix
            for before, prefix in self._mounts
            if before < position
            and (first is None or prefix.count("/") < 2 or prefix.split("/")[1] == first)
        )

    def _find(self, path: str, method: str) -> tuple[_Indexed, dict[str, str]] | None:
        """The first route in the list that takes `path` and `method`, if the table knows.
        A plain path's answer is worked out once."""
        plain = self._plain.get(path)
        if plain is None:
            return self._search(path, method, None)
        key = (path, method)
        if key in self._plain_answers:
            return self._plain_answers[key]
        found = self._search(path, method, next((e for e in plain if e.accepts(method)), None))
        if len(self._plain_answers) < PLAIN_ANSWERS_KEPT:
            self._plain_answers[key] = found
        return found

    def _search(
        self, path: str, method: str, plain: _Indexed | None
    ) -> tuple[_Indexed, dict[str, str]] | None:
        """The first templated route before `plain` (the plain route there, if any) that
        takes `path`, else `plain`."""
        parts = path.split("/")
        key = (len(parts), parts[1] if len(parts) > 1 else None)
        candidates = self._candidates.get(key) or self._candidates.get((key[0], None), ())
        for candidate in candidates:
            entry = candidate.entry
            if plain is not None and entry.position > plain.position:
                break
            params = entry.params(parts) if entry.accepts(method) else None
            if params is not None:
                return self._unless_shadowed(path, (entry, params), candidate.shadowed)
        if plain is None:
            return None  # no route, or Starlette answers 405
        return self._unless_shadowed(path, (plain, {}), self._shadowing(plain.position, None))

    @staticmethod
    def _unless_shadowed(
        path: str, found: tuple[_Indexed, dict[str, str]], shadowed: tuple[str, ...] | None
    ) -> tuple[_Indexed, dict[str, str]] | None:
        if shadowed is None or (shadowed and any(_mount_claims(p, path) for p in shadowed)):
            return None
        return found

    def match(self, scope: Scope) -> tuple[_Indexed, dict[str, str]] | None:
        """The route for an HTTP request, with the scope updated as Starlette's router
        updates it; None when the table does not know."""
        if scope["type"] != "http":
            return None
        found = self._find(get_route_path(scope), scope["method"])
        if found is not None:
            entry, params = found
            scope.setdefault("router", self)
            scope["route"] = entry.route
            scope["endpoint"] = entry.route.endpoint
            scope["path_params"] = {**scope.get("path_params", {}), **params}
        return found

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.match(scope)
        if found is None:
            await super().app(scope, receive, send)
        elif found[0].endpoint is None:
            await found[0].route.handle(scope, receive, send)
        else:
            response = await found[0].endpoint(Request(scope, receive, send))
            await response(scope, receive, send)


class IndexedExceptions:
    """In place of the app's ExceptionMiddleware: a request the router's table finds is
    served here directly, every other one by the ExceptionMiddleware as before."""

    def __init__(self, exceptions: ExceptionMiddleware, router: IndexedRouter) -> None:
        self.exceptions = exceptions
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.router.match(scope)
        if found is None or found[0].endpoint is None:
            await self.exceptions(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await found[0].endpoint(request)
        except Exception as exc:
            response = await self._handled(request, exc)
        await response(scope, receive, send)

    async def _handled(self, request: Request, exc: Exception) -> Response:
        """The reply the ExceptionMiddleware's handlers give for `exc` (raised if none)."""
        handler: Any = None  # Starlette's type for it also admits websocket handlers
        if isinstance(exc, HTTPException):
            handler = self.exceptions._status_handlers.get(exc.status_code)
        if handler is None:
            handler = _lookup_exception_handler(self.exceptions._exception_handlers, exc)
        if handler is None:
            raise exc
        if is_async_callable(handler):
            response = await handler(request, exc)
        else:
            response = await run_in_threadpool(handler, request, exc)
        exc.__traceback__ = None  # a reused exception would gather tracebacks
        assert isinstance(response, Response)
        return response


class IndexedStarlette(Starlette):
    """Starlette, routing through IndexedRouter, with IndexedExceptions in place of its
    ExceptionMiddleware (the innermost of its middleware)."""

    def __init__(
        self, *, routes: Sequence[BaseRoute], lifespan: Lifespan[Any] | None, **kwargs: Any
    ) -> None:
        super().__init__(routes=routes, lifespan=lifespan, **kwargs)
        self.router: IndexedRouter = IndexedRouter(routes, lifespan=lifespan)

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        layer: Any = stack
        while not isinstance(layer.app, ExceptionMiddleware):
            layer = layer.app
        layer.app = IndexedExceptions(layer.app, self.router)
        return stack
