"""The master: its store executor, background duties, lifecycle, and the route table.

The handlers live with their resource (node_routes.py, job_routes.py, result_routes.py,
service_routes.py, blob_routes.py, admin_api.py); guard.py puts each behind its roles.

On SQLite handlers call the store inline: an operation costs 8-50 us, less than a thread-pool
hop (150-450 us measured here), and the store serialises writers anyway; the calls of one
loop turn share one COMMIT, and each returns once it is durable (store/group_commit.py). On
PostgreSQL a call may wait on the network or on a row lock another master holds, so it runs on
a thread pool sized to the connection pool and the event loop (heartbeats included) never
waits on it. The long-poll waits on an asyncio event, never on the database.

Times come from the database's clock (clock.py); leader duties run where leadership.py says;
other masters' work arrives through wakeups.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ffleet.blobs import BlobStore, DirectoryBlobStore
from ffleet.master import openapi, ui
from ffleet.master.access import Access
from ffleet.master.admin_api import AdminApi
from ffleet.master.archive import ArchiveCollector, ResultArchive
from ffleet.master.audit_log import AuditLog
from ffleet.master.blob_routes import BlobRoutes
from ffleet.master.clock import REMEASURE_S, DatabaseClock
from ffleet.master.dispatch import Dispatcher
from ffleet.master.error_replies import EXCEPTION_HANDLERS
from ffleet.master.exposure import INSECURE_WARNING, authentication_on, bootstrap_admin
from ffleet.master.guard import ADMIN, NODE, READ, REGISTER, SUBMIT, Guard, Handler
from ffleet.master.job_routes import JobRoutes
from ffleet.master.leadership import Leadership
from ffleet.master.long_polls import LongPolls
from ffleet.master.metrics import (
    HttpMetricsMiddleware,
    MasterMetrics,
    route_templates,
)
from ffleet.master.node_routes import NodeRoutes
from ffleet.master.rate_limit import RateLimiter, RateLimitMiddleware
from ffleet.master.reap_hold import ReapHold
from ffleet.master.result_routes import ResultRoutes
from ffleet.master.routing import IndexedStarlette
from ffleet.master.service_routes import ServiceRoutes
from ffleet.master.settings import MasterSettings
from ffleet.master.single_master import hold_sqlite_file
from ffleet.master.slow_clients import BodyTimeoutMiddleware
from ffleet.master.splitter import Splitter
from ffleet.master.store_health import REFUSAL_PAUSE_S, StoreHealth
from ffleet.master.wakeups import WakeupListener
from ffleet.store import (
    Store,
    StoreUnavailable,
    open_store,
)
from ffleet.store.db import POOL_SIZE
from ffleet.store.sql import SqlStore

log = logging.getLogger("ffleet.master")

T = TypeVar("T")

RETENTION_INTERVAL_S = 60.0  # how often the leader forgets day-old idempotency keys


class MasterApp:
    """Routes bound to one store and one dispatcher."""

    def __init__(
        self, store: Store, settings: MasterSettings, blobs: BlobStore, *, enforced: bool
    ) -> None:
        self.store = store
        self.settings = settings
        self.dispatcher = Dispatcher()
        self.long_polls = LongPolls(settings.max_long_polls, settings.max_long_polls_per_node)
        self.metrics = MasterMetrics(store, lambda: self.dispatcher.waiting)
        self.archive: ResultArchive | None = None
        if settings.victoriametrics_url is not None:
            self.archive = ResultArchive(settings.victoriametrics_url)
            self.metrics.registry.register(ArchiveCollector(self.archive))
        self.limit = settings.max_body_bytes
        self.openapi = openapi.spec(settings.max_wait_s)
        self.docs_page = openapi.docs_html(settings.max_wait_s)
        self.id = f"{socket.gethostname()}:{settings.port}/{store.origin[:8]}"
        self.clock = DatabaseClock(None if store.inline else store.database_time)
        # PostgreSQL's store threads: made by start() and shut by stop(), so that an app served
        # again (a second lifespan) gets a live pool, never the one its last stop shut down.
        self._executor: ThreadPoolExecutor | None = None
        # SQLite's group commit: the calls of one loop turn share a COMMIT while served.
        self._group_commit = store.db.group_commit if isinstance(store, SqlStore) else None
        self.leadership = Leadership(
            store,
            self.clock,
            self.id,
            lease_s=settings.leader_lease_s,
            grace_s=settings.policy.node_timeout_s,
            call=self.call,
        )
        self.wakeups = (
            None
            if store.inline
            else WakeupListener(
                settings.store_url,
                store.origin,
                on_work=lambda count: self.dispatcher.notify(count),
                on_leader_free=self.leadership.poke,
                on_reconnect=self.dispatcher.notify_all,
            )
        )
        self.store_health = StoreHealth()
        self.hold = self._reap_hold()
        self.stopping = False  # a planned stop began: no more reaping nor dispatching
        self._reaper: asyncio.Task[None] | None = None
        self.access = Access(store, enforced=enforced, now=self.clock.now)
        self.audit = AuditLog(store, settings.audit_retention_s, self.call, self.clock.now)
        self.guard = Guard(store, self.access, self.audit, self.call, self.clock.now)
        self.admin = AdminApi(
            store, self.access, self.audit, self.limit, self.wake_at, self.call, self.clock.now
        )
        self.blobs = BlobRoutes(blobs, settings.max_blob_bytes)
        self.splitter = Splitter(store, blobs, None)
        self.nodes = NodeRoutes(self)
        self.jobs = JobRoutes(self)
        self.results = ResultRoutes(self)
        self.service = ServiceRoutes(self)

    def call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> Coroutine[Any, Any, T]:
        """Run a store method: inline on SQLite, returning once its change is committed (with
        the others of this loop turn: group_commit.py); on the store's thread pool on
        PostgreSQL. Inline and alone when the app is not being served (before its lifespan).
        A plain function handing back the coroutine: no coroutine of its own per store call."""
        if self._group_commit is not None:
            return self._group_commit.call(method, *args, **kwargs)
        return self._unshared_call(method, *args, **kwargs)

    async def _unshared_call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._executor is None:
            return method(*args, **kwargs)
        loop = asyncio.get_running_loop()
        bound = functools.partial(method, *args, **kwargs)
        return await loop.run_in_executor(self._executor, bound)

    @property
    def threaded(self) -> bool:
        """Whether store calls run on the store's threads (PostgreSQL, while served)."""
        return self._executor is not None

    def _reap_hold(self) -> ReapHold:
        return ReapHold(
            self.settings.policy.node_timeout_s,
            self.settings.reap_interval_s,
            refusal_pause_s=REFUSAL_PAUSE_S,
        )

    def wake_at(self, when: float) -> None:
        """Wake a waiter here, and tell the other masters, when a backoff ends."""
        delay = max(0.0, when - self.clock.now())
        asyncio.get_running_loop().call_later(delay, self._backoff_ended)

    def _backoff_ended(self) -> None:
        self.dispatcher.notify()
        if self.wakeups is not None:
            task = asyncio.ensure_future(self.call(self.store.announce_work))
            task.add_done_callback(_log_failure)

    def store_unavailable(self, cause: str) -> None:
        """A store call failed for a cause outside ffleet: log the change, and do not count the
        time against nodes (heartbeats fail too)."""
        self.store_health.failed(cause)
        self.hold.blind()

    def begin_stop(self) -> None:
        """A planned stop: stop reaping and dispatching first, then answer every waiting job
        request at once with no job, so the process can exit within moments."""
        if self.stopping:
            return
        self.stopping = True
        if self._reaper is not None:
            self._reaper.cancel()
        waiting = self.dispatcher.waiting
        self.dispatcher.notify_all()
        log.info("master stopping: reaper stopped, %d waiting job request(s) answered", waiting)

    async def reaper(self) -> None:
        """The leader's duties, every `reap_interval_s`: end what outlived its time, age the
        queue, and now and then forget day-old idempotency keys. Each pass runs only while
        this master holds the lead (see leadership.py: also why it starts late), and never
        while the master could not see its fleet (see reap_hold.py): one node timeout after
        its start, after a stall of its own or a clock step, after a store failure. While
        held it only checks the store, so that it knows when the store is back.
        """
        forgotten_at = 0.0
        while True:
            await asyncio.sleep(self.settings.reap_interval_s)
            gap = self.hold.tick()
            if gap is not None:
                log.warning(
                    "%s; no node is judged for %g s (heartbeats went unheard meanwhile)",
                    gap,
                    self.hold.hold_s,
                )
            if not self.leadership.is_leader:
                continue
            now = self.clock.now()
            try:
                if not self.hold.may_reap():
                    await self.call(self.store.check)
                    self.store_health.ok()
                    continue
                await self._reap(now)
                if now - forgotten_at >= RETENTION_INTERVAL_S:
                    await self.call(self.store.expire_idempotency_keys, now)
                    forgotten_at = now
            except StoreUnavailable as exc:
                self.store_unavailable(exc.cause)
                continue
            except Exception:
                log.exception("reaper pass failed; will try again")
                continue
            self.store_health.ok()

    async def _reap(self, now: float) -> None:
        """One pass, in the store's bounded batches: the event loop serves requests (heartbeats
        among them) between them, so a vanished fleet's 20,000 leases never hold it for long."""
        while True:
            report = await self.call(self.store.reap, now)
            for node_id in report.offline_nodes:
                log.warning("node %s missed its heartbeats: offline", node_id)
            self.metrics.reaped(report)
            for job_id in report.requeued_jobs:
                log.warning("job %s lost its attempt; queued again with backoff", job_id)
            for job_id in report.failed_jobs:
                log.warning("job %s failed: out of attempts", job_id)
            for when in report.retry_at:
                self.wake_at(when)
            if not report.more:
                break
            await asyncio.sleep(0)
        self.hold.worked()

    def endpoints(self) -> dict[str, dict[str, tuple[Handler, frozenset[str] | None]]]:
        """Path -> method -> (handler, roles that may call it; None: public). One route per
        path, so a 405 names every allowed method."""
        nodes, jobs, results, service, admin = (
            self.nodes,
            self.jobs,
            self.results,
            self.service,
            self.admin,
        )
        return {
            "/health": {"GET": (service.health, None)},
            "/ready": {"GET": (service.ready, None)},
            "/nodes/register": {"POST": (nodes.register, REGISTER)},
            "/nodes": {"GET": (nodes.list_nodes, READ)},
            "/nodes/{node_id}": {"GET": (nodes.get_node, READ)},
            "/nodes/{node_id}/heartbeat": {"POST": (nodes.heartbeat, NODE)},
            "/nodes/{node_id}/drain": {"POST": (nodes.drain, ADMIN)},
            "/jobs": {"GET": (jobs.list_jobs, READ), "POST": (jobs.create_job, SUBMIT)},
            "/jobs/batch": {"POST": (jobs.create_batch, SUBMIT)},
            "/jobs/purge": {"POST": (jobs.purge_jobs, ADMIN)},
            "/jobs/next": {"GET": (jobs.next_job, NODE), "POST": (jobs.next_job, NODE)},
            "/jobs/{job_id}": {"GET": (jobs.get_job, READ)},
            "/jobs/{job_id}/explain": {"GET": (jobs.explain, READ)},
            "/jobs/{job_id}/cancel": {"POST": (jobs.cancel, SUBMIT)},
            "/jobs/{job_id}/retry": {"POST": (jobs.retry, SUBMIT)},
            "/jobs/{job_id}/release": {"POST": (jobs.release, NODE)},
            "/results": {
                "GET": (results.list_results, READ),
                "POST": (results.post_result, NODE),
            },
            "/results/export": {"GET": (results.export_results, READ)},
            # Public like /health: Prometheus scrapes it, and it holds counts and node ids,
            # never a parameter, result or secret.
            "/metrics": {"GET": (service.metrics_text, None)},
            "/tokens": {"GET": (admin.list_tokens, ADMIN), "POST": (admin.create_token, ADMIN)},
            "/tokens/{token_id}/revoke": {"POST": (admin.revoke_token, ADMIN)},
            "/audit": {"GET": (admin.list_audit, ADMIN)},
            "/blobs/{digest}": {
                "GET": (self.blobs.download, READ | NODE),
                "PUT": (self.blobs.upload, SUBMIT | NODE),
            },
            "/blobs/{digest}/upload": {"GET": (self.blobs.upload_state, SUBMIT | NODE)},
            "/openapi.json": {"GET": (service.openapi_json, None)},
            "/docs": {"GET": (service.docs, None)},
        }

    async def remeasure_clock(self) -> None:
        while True:
            await asyncio.sleep(REMEASURE_S)
            try:
                await self.call(self.clock.measure)
            except Exception as exc:
                log.warning("could not measure the clock offset to the database: %s", exc)

    async def start(self) -> list[asyncio.Task[None]]:
        """Open the store's threads, measure the clock, then start the background duties."""
        if self._group_commit is not None:
            self._group_commit.serve(asyncio.get_running_loop())
        elif not self.store.inline:
            self._executor = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="store")
        self.stopping = False  # served again after a stop
        await self.call(self.clock.measure)
        self.clock.check(self.settings.policy.node_timeout_s)
        # The start grace counts from when the app begins to serve, not from its creation.
        self.hold = self._reap_hold()
        self._reaper = asyncio.create_task(self.reaper())
        duties = [self.leadership.run(), self.audit.run()]
        if self.settings.insecure:
            duties.append(self.warn_insecure())
        if self.archive is not None:
            duties.append(self.archive.run())
        if self.wakeups is not None:
            duties += [self.wakeups.run(), self.remeasure_clock()]
        return [self._reaper, *(asyncio.create_task(duty) for duty in duties)]

    async def stop(self, tasks: list[asyncio.Task[None]]) -> None:
        self.begin_stop()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.call(self.audit.flush)
        await self.leadership.resign()
        if self._group_commit is not None:
            self._group_commit.unserve()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def warn_insecure(self) -> None:
        """An open master on a reachable address keeps saying so."""
        while True:
            await asyncio.sleep(self.settings.insecure_warn_s)
            log.warning(INSECURE_WARNING)

    def routes(self) -> list[BaseRoute]:
        guarded = self.guard.guarded
        return [
            *ui.routes(self.store, self.access, lambda handler: guarded(handler, READ)),
            *(
                Route(
                    path,
                    _by_method({method: guarded(*guard) for method, guard in handlers.items()}),
                    methods=list(handlers),
                )
                for path, handlers in self.endpoints().items()
            ),
        ]


def _by_method(handlers: dict[str, Handler]) -> Handler:
    """One handler for a path's methods (HEAD is GET's); a path of one method is its handler
    itself, with no dispatching frame around it (a heartbeat's)."""
    if len(handlers) == 1:
        (handler,) = handlers.values()
        return handler

    async def dispatch(request: Request) -> Response:
        method = request.scope["method"]
        return await handlers["GET" if method == "HEAD" else method](request)

    return dispatch


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not tell the other masters: %s", task.exception())


def create_app(settings: MasterSettings, store: Store | None = None) -> Starlette:
    """Build the ASGI app; the store is opened here unless one is given (tests)."""
    owned = store is None
    lock = hold_sqlite_file(settings.store_url) if owned else None
    try:
        opened = store if store is not None else open_store(settings.store_url, settings.policy)
    except BaseException:
        if lock is not None:
            lock.close()
        raise
    try:
        enforced = authentication_on(settings, opened)
        if enforced:
            bootstrap_admin(opened, settings.admin_token_file)
        master = MasterApp(
            opened, settings, DirectoryBlobStore(settings.blob_root), enforced=enforced
        )
    except BaseException:
        if owned:
            opened.close()
        if lock is not None:
            lock.close()
        raise

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sweep_every = min(3600.0, settings.blob_retention_s / 2)
        tasks = await master.start()
        tasks += [
            asyncio.create_task(master.blobs.sweeper(settings.blob_retention_s, sweep_every)),
            asyncio.create_task(master.splitter.run(master.dispatcher.notify)),
        ]
        try:
            yield
        finally:
            await master.stop(tasks)
            if master.archive is not None:
                await master.archive.close()
            if owned:
                master.store.close()
            if lock is not None:
                lock.close()

    routes = master.routes()
    app = IndexedStarlette(
        routes=routes,
        middleware=[
            Middleware(
                HttpMetricsMiddleware, metrics=master.metrics, templates=route_templates(routes)
            )
        ],
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.master = master
    if settings.rate_limit > 0:
        app.add_middleware(
            RateLimitMiddleware,
            limiter=RateLimiter(settings.rate_limit, settings.rate_burst),
            key=master.guard.rate_key,
        )
    app.add_middleware(BodyTimeoutMiddleware, timeout_s=settings.body_timeout_s)
    return app
