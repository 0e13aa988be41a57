"""The store's scheduling policy, in a module free of the store's imports.

The store applies it and the master's settings choose it; kept apart so that the command line
can show its defaults without loading a database driver.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SchedulingPolicy:
    """Timings that decide when attempts end and when they run again."""

    node_timeout_s: float = 90.0
    max_job_timeout_s: float = 6 * 3600.0
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 300.0
    aging_interval_s: float = 60.0  # a waiting job gains one priority step per interval
