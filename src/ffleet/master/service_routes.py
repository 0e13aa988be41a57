"""The master's own endpoints: liveness and readiness probes, /metrics, and its API's
description (/openapi.json, /docs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ffleet.master.http import JsonResponse
from ffleet.master.metrics import CONTENT_TYPE
from ffleet.master.store_health import RETRY_AFTER_S
from ffleet.store import StoreUnavailable

if TYPE_CHECKING:
    from ffleet.master.app import MasterApp


class ServiceRoutes:
    """Routes that describe the master itself; `master` for its leader, store and state."""

    def __init__(self, master: MasterApp) -> None:
        self.master = master

    async def health(self, request: Request) -> Response:
        """Liveness, plus which master this is, which one leads, and how other masters'
        work reaches it ("local": an SQLite store has no other masters)."""
        master = self.master
        return JsonResponse(
            {
                "status": "healthy",
                "master": master.id,
                "leader": master.leadership.leader,
                "wakeups": "local" if master.wakeups is None else master.wakeups.mode,
            }
        )

    async def ready(self, request: Request) -> Response:
        """Whether this master can serve: its store answers and takes writes, and it is not
        stopping. 503 otherwise, so a load balancer routes elsewhere."""
        master = self.master
        try:
            await master.call(master.store.check)
        except StoreUnavailable as exc:
            master.store_unavailable(exc.cause)
            return _unready("unavailable", "unavailable", exc.cause)
        master.store_health.ok()
        if master.stopping:
            return _unready("stopping", "ok", "the master is shutting down")
        return JsonResponse({"status": "ready", "store": "ok", "reason": None})

    async def metrics_text(self, request: Request) -> Response:
        """Prometheus text format; the fleet's gauges are read from the store now."""
        return Response(await self.master.call(self.master.metrics.render), media_type=CONTENT_TYPE)

    async def openapi_json(self, request: Request) -> Response:
        return JsonResponse(self.master.openapi)

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(self.master.docs_page)


def _unready(status: str, store: str, reason: str) -> Response:
    return JsonResponse(
        {"status": status, "store": store, "reason": reason},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )
