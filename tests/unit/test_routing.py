"""The indexed router takes exactly the route Starlette's linear matching would, or defers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.testclient import TestClient

from ffleet.master.app import create_app
from ffleet.master.routing import IndexedRouter, IndexedStarlette
from ffleet.master.settings import MasterSettings


def linear(routes: list[BaseRoute], path: str, method: str) -> BaseRoute | None:
    """The route Starlette's Router hands the request to on a full match."""
    scope: dict[str, Any] = {"type": "http", "path": path, "root_path": "", "method": method}
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
    return None


@pytest.fixture(scope="module")
def master_router(tmp_path_factory: pytest.TempPathFactory) -> IndexedRouter:
    blobs = tmp_path_factory.mktemp("blobs")
    app = create_app(MasterSettings(store_url="memory", blob_dir=Path(blobs)))
    assert isinstance(app.router, IndexedRouter)
    return app.router


PATHS = [
    "/",
    "/health",
    "/nodes",
    "/nodes/register",
    "/nodes/n1",
    "/nodes/n1/heartbeat",
    "/nodes/register/heartbeat",
    "/nodes//heartbeat",
    "/nodes/n1/drain",
    "/jobs",
    "/jobs/next",
    "/jobs/batch",
    "/jobs/abc",
    "/jobs/abc/explain",
    "/jobs/next/cancel",
    "/results",
    "/results/export",
    "/ui",
    "/ui/jobs",
    "/ui/jobs/events",
    "/ui/jobs/abc",
    "/ui/jobs/abc/events",
    "/ui/static/app.css",
    "/ui/static",
    "/blobs/sha256",
    "/blobs/sha256/upload",
    "/health/",
    "/nowhere",
    "/jobs/a/b/c/d",
]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "HEAD", "DELETE"])
def test_the_master_routes_as_starlette_would(master_router: IndexedRouter, method: str) -> None:
    for path in PATHS:
        found = master_router._find(path, method)
        expected = linear(master_router.routes, path, method)
        if found is not None:
            assert found[0].route is expected, (method, path)
        elif expected is not None:  # deferring is allowed only to a mount or a typed route
            assert not isinstance(expected, Route) or expected.param_convertors, (method, path)


async def _named(request: Request) -> Response:
    return PlainTextResponse(f"{request.scope['route'].path} {request.path_params}")


def test_earlier_routes_win_and_mounts_are_respected(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("static")
    routes: list[BaseRoute] = [
        Route("/items/{item_id}", _named, methods=["GET"]),
        Route("/items/special", _named, methods=["GET", "POST"]),
        Mount("/files", StaticFiles(directory=tmp_path)),
        Route("/files/{name}", _named, methods=["GET"]),
        Route("/numbers/{n:int}", _named, methods=["GET"]),
    ]
    client = TestClient(IndexedStarlette(routes=routes, lifespan=None))

    assert client.get("/items/special").text == "/items/{item_id} {'item_id': 'special'}"
    assert client.post("/items/special").text == "/items/special {}"  # the first full match
    assert client.get("/files/file.txt").text == "static"  # the mount comes first
    assert client.get("/numbers/7").text == "/numbers/{n:int} {'n': 7}"
    assert client.get("/numbers/x").status_code == 404
    reply = client.delete("/items/1")
    assert reply.status_code == 405 and set(reply.headers["allow"].split(", ")) == {"GET", "HEAD"}


class Refused(Exception):
    pass


async def _refuses(request: Request) -> Response:
    raise Refused("no")


async def _teapot(request: Request) -> Response:
    raise HTTPException(418, "short and stout")


async def _breaks(request: Request) -> Response:
    raise RuntimeError("broken")


async def _as_json(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(f"mapped {type(exc).__name__}", status_code=409)


async def _status(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("status handler", status_code=418)


async def _internal(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("internal", status_code=500)


def test_errors_of_a_routed_handler_get_the_apps_exception_handlers() -> None:
    routes: list[BaseRoute] = [
        Route("/refuses", _refuses, methods=["GET"]),
        Route("/teapot", _teapot, methods=["GET"]),
        Route("/breaks", _breaks, methods=["GET"]),
    ]
    app = IndexedStarlette(
        routes=routes,
        lifespan=None,
        exception_handlers={Refused: _as_json, 418: _status, Exception: _internal},
    )
    client = TestClient(app, raise_server_exceptions=False)
    assert (client.get("/refuses").status_code, client.get("/refuses").text) == (
        409,
        "mapped Refused",
    )
    assert client.get("/teapot").text == "status handler"
    assert (client.get("/breaks").status_code, client.get("/breaks").text) == (500, "internal")
