"""The attempts this process handed out, as their claims wrote the job's row.

A completed result's check and writes read 9 columns of its job, all of which its claim wrote
or read: kept here from the claim, the result reads nothing (one statement of its five, ~5 % of
its instructions, BENCHMARKS.md). A kept row may be stale (the attempt was lost and the job
claimed again, by another master too), so it is never trusted: the completion's UPDATE is
guarded by the attempt, its node and its start, and when that guard fails the job is read as
before. What this holds is bounded: at most KEPT claims, oldest dropped first (a claim whose
result never comes, one that ended otherwise), each with parameters of at most
KEPT_PARAMETERS characters (a job with more is read, as before): ~1 KiB a claim, ~20 MiB in
all at most, a few MiB in practice.
"""

from __future__ import annotations

import operator
from collections import OrderedDict

from ffleet.store.db import Row

KEPT = 16_384  # more than the running jobs of a 10,000-node fleet
KEPT_PARAMETERS = 512  # characters of a job's parameters (JSON): a scenario's few options
# What a completed result reads of its job: `job_for_result`'s columns (queries.*.sql).
COLUMNS: tuple[str, ...] = ("seq", "id", "scenario", "parameters", "status", "node_id")
COLUMNS += ("started_at", "retry_count", "attempt")
_kept_values = operator.itemgetter(*COLUMNS)  # one C call, where a comprehension cost ~1 %


class HandedOut:
    """Claimed rows by job id. Safe across the store's threads (PostgreSQL): each step is one
    call of OrderedDict's C implementation, atomic under the GIL; two threads adding at once
    may drop one claim more than the bound asks, which only costs that result a read."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._rows: OrderedDict[str, Row] = OrderedDict()

    def add(self, claimed: Row) -> None:
        """Keep what a result will read of the job a claim wrote as `claimed`, as the newest."""
        if len(claimed["parameters"]) > KEPT_PARAMETERS:
            return
        rows = self._rows
        job_id = claimed["id"]
        rows.pop(job_id, None)  # a job claimed again is as new as its claim
        rows[job_id] = dict(zip(COLUMNS, _kept_values(claimed), strict=True))
        if len(rows) > self._kept:
            rows.popitem(last=False)

    def take(self, job_id: str) -> Row | None:
        """The job's claimed row, forgotten here: a result uses it once."""
        return self._rows.pop(job_id, None)
