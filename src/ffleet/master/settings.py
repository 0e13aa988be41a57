"""Master configuration: one object, filled from CLI flags (each with an FFLEET_* twin)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ffleet.store.base import SchedulingPolicy


@dataclass(frozen=True)
class MasterSettings:
    store_url: str = "sqlite:///ffleet.db"
    policy: SchedulingPolicy = field(default_factory=SchedulingPolicy)
    reap_interval_s: float = 1.0
    max_body_bytes: int = 1024 * 1024
    max_wait_s: float = 60.0  # longest long-poll a client may ask for
    # A long-poll re-tries its claim this often even unwoken: the safety net for work that
    # appears without this master knowing (another master on the same PostgreSQL database).
    recheck_s: float = 5.0
