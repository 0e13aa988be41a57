"""Who is asking, and may they: bearer tokens to identities, identities to allowed routes.

Every request but /health and the API's documentation names a route that lists the roles
allowed on it. A client sends `Authorization: Bearer <token>`; a browser, which cannot, sends
the dashboard's session cookie (ui/session.py), whose value is the token itself: so revoking
or expiring the token ends the session at once, on every master, with no session state of its
own. Any page could make a browser send that cookie (a cross-site form), so the cookie counts
only for reads and for requests that carry `X-FFleet-UI: 1`, a header only a same-origin
script can add. The token check runs on every request, so it is a dictionary lookup on this
master: a credential is read from the store once and kept `CACHE_S` seconds. A revocation
through this master's API drops it from the cache at once; one made elsewhere (another master,
or `ffleet token revoke --store`) is honoured within `CACHE_S`.

An open master (loopback without credentials, or `--insecure`) treats every caller as the
anonymous admin, as v1.0 did.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

from ffleet.master.http import ApiError
from ffleet.store import Store
from ffleet.tokens import PREFIX, Credential, Role

CACHE_S = 10.0
SESSION_COOKIE = "ffleet_session"
UI_HEADER = "X-FFleet-UI"  # the dashboard's script sends it with "1" on every request
SAFE_METHODS = frozenset({"GET", "HEAD"})
_CACHE_MAX = 10_000  # a flood of made-up tokens cannot grow it without bound


@dataclass(frozen=True)
class Identity:
    """The caller: its credential's id, name and role, and for a node credential its node."""

    id: str
    name: str
    role: str
    node_id: str | None = None
    credential: Credential | None = None
    session: bool = False  # identified by the dashboard's session cookie, not a header

    def require_node(self, node_id: str) -> None:
        """A node credential may act only for its own node (403 otherwise)."""
        if self.role == Role.NODE and node_id != self.node_id:
            raise ApiError(403, f"this credential belongs to node {self.node_id}, not {node_id}")


ANONYMOUS = Identity("anonymous", "anonymous", Role.ADMIN.value)


class Access:
    """Authenticates requests against the store's credentials, or lets everyone in (open).

    `now` is the master's clock (clock.py), the one every master shares: a token expires at
    the same moment for all of them, whatever this machine's clock says."""

    def __init__(self, store: Store, *, enforced: bool, now: Callable[[], float]) -> None:
        self.store = store
        self.enforced = enforced
        self.now = now
        self._cache: dict[str, tuple[float, Credential | None]] = {}
        self._lock = threading.Lock()

    def identify(self, request: Request) -> Identity:
        """The caller of `request`; 401 without a usable token when authentication is on."""
        if not self.enforced:
            return ANONYMOUS
        secret, session = _secret(request)
        return _identity(self.verify(secret), session)

    def verify(self, secret: str) -> Credential:
        """The usable credential `secret` is the token of; 401 for any other."""
        if not secret.startswith(PREFIX):
            raise ApiError(401, "invalid token")
        now = self.now()
        return _usable(self._lookup(secret, now), now)

    def identify_cached(self, request: Request) -> Identity | None:
        """The caller, when no store read is needed to know it (authentication off, or its
        token in the cache), else None: the event loop need not hand the request to the
        store's thread pool for what is a dictionary lookup."""
        if not self.enforced:
            return ANONYMOUS
        secret, session = _secret(request)
        if not secret.startswith(PREFIX):
            raise ApiError(401, "invalid token")
        now = self.now()
        with self._lock:
            hit = self._cache.get(secret)
        if hit is None or hit[0] <= now:
            return None
        return _identity(_usable(hit[1], now), session)

    def forget(self, credential_id: str) -> None:
        """Drop a revoked credential from the cache: refused from the next request on."""
        with self._lock:
            for key, (_, cached) in list(self._cache.items()):
                if cached is not None and cached.id == credential_id:
                    del self._cache[key]

    def _lookup(self, secret: str, now: float) -> Credential | None:
        with self._lock:
            hit = self._cache.get(secret)
        if hit is not None and hit[0] > now:
            return hit[1]
        credential = self.store.find_credential(secret)
        with self._lock:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[secret] = (now + CACHE_S, credential)
        return credential


def _usable(credential: Credential | None, now: float) -> Credential:
    if credential is None:
        raise ApiError(401, "invalid token")
    if not credential.usable(now):
        raise ApiError(401, "token revoked or expired")
    return credential


def _identity(credential: Credential, session: bool) -> Identity:
    return Identity(
        credential.id, credential.name, credential.role, credential.node_id, credential, session
    )


def _secret(request: Request) -> tuple[str, bool]:
    """The token a request carries, and whether it came in the session cookie."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise ApiError(401, "authentication required: send Authorization: Bearer <token>")
        return secret.strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise ApiError(401, "authentication required: send Authorization: Bearer <token>")
    if request.method not in SAFE_METHODS and request.headers.get(UI_HEADER) != "1":
        raise ApiError(
            403,
            f"the dashboard's session counts for changes only from the dashboard's own "
            f"pages (header {UI_HEADER}); other clients send Authorization: Bearer <token>",
        )
    return cookie, True


def allow(identity: Identity, roles: frozenset[str], action: str) -> None:
    """403 unless the caller's role is one of `roles`."""
    if identity.role not in roles:
        raise ApiError(403, f"role {identity.role} may not {action}")
