"""The admin's routes: credentials (`/tokens`) and the audit trail (`/audit`).

A token's secret appears in exactly one reply, the one to the POST that created it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ffleet.master.access import Access
from ffleet.master.audit_log import AuditLog
from ffleet.master.http import ApiError, JsonResponse, decode, path_id, query_int, query_name
from ffleet.master.leadership import Call
from ffleet.models import encode_hook, parse_rfc3339
from ffleet.store import Store
from ffleet.tokens import ISSUABLE, Credential, Role, TokenRequest


def with_secret(credential: Credential, secret: str) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(credential, enc_hook=encode_hook)
    body["token"] = secret
    return body


class AdminApi:
    def __init__(
        self,
        store: Store,
        access: Access,
        audit: AuditLog,
        limit: int,
        wake_at: Callable[[float], None],
        call: Call,
        now: Callable[[], float],
    ) -> None:
        self.store = store
        self.access = access
        self.audit = audit
        self.limit = limit
        self.wake_at = wake_at
        self.call = call  # the master's way to the store (off its event loop on PostgreSQL)
        self.now = now

    async def create_token(self, request: Request) -> Response:
        asked = await decode(request, TokenRequest, self.limit)
        if asked.role not in ISSUABLE:
            raise ApiError(
                400,
                f"role must be one of {', '.join(ISSUABLE)} (node credentials are issued "
                "by enrollment)",
            )
        if asked.role != Role.ENROLL and (asked.labels is not None or asked.one_time):
            raise ApiError(400, "labels and one_time apply to enroll tokens only")
        if asked.expires_in_s is not None and not 0 < asked.expires_in_s <= 100 * 365 * 86400:
            raise ApiError(400, "expires_in_s must be more than 0 and at most 100 years")
        now = self.now()
        credential, secret = await self.call(
            self.store.create_credential,
            asked.role,
            asked.name,
            now,
            expires_at=None if asked.expires_in_s is None else now + asked.expires_in_s,
            labels=asked.labels,
            one_time=asked.one_time,
        )
        request.state.audit_target = credential.id
        return JsonResponse(with_secret(credential, secret), status_code=201)

    async def list_tokens(self, request: Request) -> Response:
        found = await self.call(self.store.list_credentials)
        return JsonResponse({"tokens": found, "count": len(found)})

    async def revoke_token(self, request: Request) -> Response:
        credential, retry_at = await self.call(
            self.store.revoke_credential, path_id(request, "token_id"), self.now()
        )
        self.access.forget(credential.id)
        for when in retry_at:
            self.wake_at(when)
        return JsonResponse(credential)

    async def list_audit(self, request: Request) -> Response:
        raw_since = request.query_params.get("since")
        try:
            since = parse_rfc3339(raw_since) if raw_since else 0.0
        except ValueError:
            raise ApiError(400, "query parameter since must be an RFC 3339 time") from None
        limit = query_int(request, "limit", 100, low=1, high=10_000) or 100
        await self.call(self.audit.flush)  # what this master did so far, written before it is read
        found = await self.call(
            self.store.list_audit,
            since,
            query_name(request, "actor"),
            query_name(request, "action"),
            limit,
        )
        return JsonResponse({"entries": found, "count": len(found)})
