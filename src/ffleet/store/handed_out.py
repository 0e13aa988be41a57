"""The attempts this process handed out, as their claims wrote the job's row.

A completed result's check and writes read 9 columns of its job, all of which its claim wrote
or read: kept here from the claim, the result reads nothing (one statement of its five, ~5 % of
its instructions, BENCHMARKS.md). A kept row may be stale (the attempt was lost and the job
claimed again, by another master too), so it is never trusted: the completion's UPDATE is
guarded by the attempt, its node and its start, and when that guard fails the job is read as
before. What this holds is bounded: a claim whose result never comes is dropped, oldest first.
"""

from __future__ import annotations

from collections import OrderedDict

from ffleet.store.db import Row

KEPT = 16_384  # ~10 MiB at most: more than the running jobs of a 10,000-node fleet
# What a completed result reads of its job: `job_for_result`'s columns (queries.*.sql).
COLUMNS: tuple[str, ...] = ("seq", "id", "scenario", "parameters", "status", "node_id")
COLUMNS += ("started_at", "retry_count", "attempt")


class HandedOut:
    """Claimed rows by job id. Safe across the store's threads: each operation is one call of
    OrderedDict's C implementation, atomic under the GIL."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._rows: OrderedDict[str, Row] = OrderedDict()

    def add(self, claimed: Row) -> None:
        """Keep what a result will read of the job a claim wrote as `claimed`."""
        rows = self._rows
        rows[claimed["id"]] = {column: claimed[column] for column in COLUMNS}
        if len(rows) > self._kept:
            rows.popitem(last=False)

    def take(self, job_id: str) -> Row | None:
        """The job's claimed row, forgotten here: a result uses it once."""
        return self._rows.pop(job_id, None)
