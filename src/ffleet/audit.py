"""The audit trail's entry: who did what to which object, and how it ended.

An entry names its actor by credential id and name (or `anonymous` on an open master), never
by a secret; `action` is the route template (`POST /jobs/{job_id}/cancel`), so entries group by
what was attempted whatever the ids, and `outcome` is the HTTP status the caller got.
"""

from __future__ import annotations

from msgspec import Struct

from ffleet.models import Timestamp


class AuditEntry(Struct, kw_only=True, gc=False):  # text and numbers only: no cycles
    at: Timestamp
    actor_id: str
    actor_name: str
    role: str
    action: str
    target: str | None = None
    outcome: int
    remote: str | None = None
