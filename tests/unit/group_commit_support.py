"""What the group commit's test modules share: a served SQLite store's group commit, the
transaction-control statements its connection runs, and what another connection reads."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from ffleet.models import JobRequest
from ffleet.store import submission
from ffleet.store.group_commit import GroupCommit
from ffleet.store.sql import SqlStore

T0 = 1_800_000_000.0
JOB = JobRequest(scenario="360p-h264")
CONTROL = {"BEGIN", "SAVEPOINT", "RELEASE", "ROLLBACK", "COMMIT"}


def grouping(store: SqlStore) -> GroupCommit:
    group_commit = store.db.group_commit
    assert group_commit is not None
    return group_commit


def statements(store: SqlStore, *, whole: bool = False) -> list[str]:
    """The transaction-control statements the store's connection runs from now on: their
    keyword, or with `whole` their text (which savepoint)."""
    seen: list[str] = []
    raw = store.db._sqlite
    assert raw is not None

    def control(sql: str) -> None:
        keyword = sql.split()[0]
        if keyword in CONTROL:
            seen.append(sql if whole else keyword)

    raw.set_trace_callback(control)
    return seen


def durable(path: Path, sql: str) -> list[Any]:
    """What another connection reads: what is committed."""
    with closing(sqlite3.connect(path)) as conn:
        return [row[0] for row in conn.execute(sql)]


def insert_one_at_a_time(store: SqlStore, count: int) -> None:
    """Jobs inserted a statement each (as a split's children are): SQLite answers a full disk
    that one of them meets by rolling back the whole transaction."""
    pending = submission.prepare([JOB] * count, T0, 3600.0, None)
    with store.db.transaction() as tx:
        tx.many("job_insert", (job.values for job in pending))
