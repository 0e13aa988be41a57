"""Who a request is, what it may call, and what of a job it may see.

Every route but the public ones runs behind `Guard.guarded`: authentication, the route's
roles, and an audit entry for every state-changing request and every refused one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ffleet.audit import AuditEntry
from ffleet.master.access import ANONYMOUS, Access, Identity, allow
from ffleet.master.audit_log import AuditLog
from ffleet.master.http import ApiError
from ffleet.master.leadership import Call
from ffleet.master.rate_limit import Scope, client_address
from ffleet.models import Job, Timestamp
from ffleet.redaction import without_stream_key
from ffleet.store import Store, StoreError
from ffleet.tokens import Role

Handler = Callable[[Request], Awaitable[Response]]

ADMIN = frozenset({Role.ADMIN.value})
READ = frozenset({Role.ADMIN.value, Role.SUBMITTER.value, Role.READER.value})
SUBMIT = frozenset({Role.ADMIN.value, Role.SUBMITTER.value})
NODE = frozenset({Role.ADMIN.value, Role.NODE.value})
REGISTER = frozenset({Role.ADMIN.value, Role.NODE.value, Role.ENROLL.value})

UNAUTHENTICATED = Identity("-", "unauthenticated", "-")  # who a refused request's entry names


def _state(request: Request) -> dict[str, Any]:
    """The request's `request.state` as its plain dict (the scope's "state"): a hot path reads
    it without Starlette's State wrapper, whose miss raises and formats an AttributeError."""
    state: dict[str, Any] = request.scope.setdefault("state", {})
    return state


def _joined(values: Collection[Any]) -> str:
    """The path parameters as the audit's target: most routes have one, a str."""
    if len(values) == 1:
        (value,) = values
        if type(value) is str:
            return value
    return ",".join(map(str, values))


class Guard:
    """Authentication and authorisation over one store's credentials, audited."""

    def __init__(
        self, store: Store, access: Access, audit: AuditLog, call: Call, now: Callable[[], float]
    ) -> None:
        self.store = store
        self.access = access
        self.audit = audit
        self.call = call
        self.now = now

    def guarded(self, handler: Handler, roles: frozenset[str] | None) -> Handler:
        """`handler` behind authentication and the route's roles (None: public), audited:
        every state-changing request, and every refused one, leaves an entry."""
        if roles is None:
            return handler

        async def run(request: Request) -> Response:
            identity: Identity | None = None
            status = 500
            try:
                identity = self.access.identify_cached(request)
                if identity is None:
                    identity = await self.call(self.access.identify, request)
                if identity.role not in roles:  # the refusal names the path: built only then
                    allow(identity, roles, f"{request.method} {request.url.path}")
                _state(request)["identity"] = identity
                response = await handler(request)
                status = response.status_code
                return response
            except (ApiError, StoreError) as exc:
                status = exc.status_code
                raise
            finally:
                self._audit(request, identity, status)

        return run

    def _audit(self, request: Request, identity: Identity | None, status: int) -> None:
        scope = request.scope
        state = scope.get("state")
        target = state.get("audit_target") if state else None
        method = scope["method"]
        if method == "GET" and target is None and status not in (401, 403):
            return  # a read, or a long-poll that handed nothing out
        path = getattr(scope.get("route"), "path", None) or request.url.path
        path_params = scope.get("path_params")
        if target is None and path_params:
            target = _joined(path_params.values())
        client = scope.get("client")
        who = identity or UNAUTHENTICATED
        self.audit.record(
            AuditEntry(
                at=Timestamp(self.now()),
                actor_id=who.id,
                actor_name=who.name,
                role=who.role,
                action=f"{method} {path}",
                target=target,
                outcome=status,
                remote=client[0] if client else None,
            )
        )

    @staticmethod
    def identity(request: Request) -> Identity:
        identity: Identity = _state(request).get("identity", ANONYMOUS)
        return identity

    def submitted_by(self, request: Request) -> str | None:
        return self.identity(request).id if self.access.enforced else None

    def shown_to(self, request: Request) -> Callable[[Job], Job]:
        """How jobs look to the caller: a stream key is a secret of those who own it (an
        admin, the credential that submitted the job, the node running it). On an open
        master nobody proves who they are, so only the agent's claim carries it."""
        identity = self.identity(request)
        if not self.access.enforced:
            return without_stream_key
        if identity.role == Role.ADMIN:
            return lambda job: job

        def shown(job: Job) -> Job:
            redacted = without_stream_key(job)
            if redacted is job:
                return job  # nothing secret: no store lookup
            if identity.role == Role.NODE and job.node_id == identity.node_id:
                return job
            if self.store.job_submitter(job.id) == identity.id:
                return job
            return redacted

        return shown

    def rate_key(self, scope: Scope) -> str | None:
        """Whom a rate limit counts: the credential a request authenticates with, else its
        address (so clients behind one address do not share a budget); None: not limited.
        On PostgreSQL only a credential the cache holds counts as such, as a read of the
        database here would hold up the event loop: a credential's first request there, and
        its first after the cache let it go, count against its address."""
        address = client_address(scope)
        if address is None or not self.access.enforced:
            return address
        identify = self.access.identify if self.store.inline else self.access.identify_cached
        try:
            identity = identify(Request(scope))
        except ApiError:
            return address  # refused later, by the route's guard
        return address if identity is None else "credential " + identity.id

    def require_own_job(self, request: Request, job_id: str) -> None:
        """A submitter may cancel and retry only the jobs it submitted (runs on the store's
        thread, inside the call that cancels or retries)."""
        identity = self.identity(request)
        if identity.role == Role.SUBMITTER and self.store.job_submitter(job_id) != identity.id:
            raise ApiError(403, f"job {job_id} was submitted by another credential")
