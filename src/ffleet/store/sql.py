"""The SQL store: one implementation for in-memory SQLite, SQLite files and PostgreSQL.

One code path for all three backends means the state machine cannot drift between them; the
dialect only changes how a transaction takes its locks (the statements that differ are written
out in queries.sqlite.sql and queries.postgresql.sql):
- SQLite: every transaction is `BEGIN IMMEDIATE` (the write lock up front). WAL with
  synchronous=NORMAL keeps every committed change through a `kill -9` of the master.
- PostgreSQL: claim and reap lock rows with `FOR UPDATE SKIP LOCKED`, so several masters can share
  one database without handing a job out twice or blocking on each other.

Each public method is one transaction. The pieces it is built from live beside it: rows.py
(rows into structs), placement.py (the claim walk), attempts.py (how attempts start and end)
and transitions.py (the only writer of a job's status). The node registry (nodes.py), split
jobs (splits.py) and credentials (credentials.py) are mixins of SqlStore, on its transactions.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Literal

import msgspec

from ffleet.models import (
    Explanation,
    Job,
    JobDetail,
    JobRequest,
    ResultSubmission,
    StoredResult,
    parse_rfc3339,
)
from ffleet.redaction import redact_url
from ffleet.states import Event, JobStatus, allows, describe_sources
from ffleet.store import attempts, coordination, efficiency, placement, splits, submission
from ffleet.store.base import (
    REAP_BATCH,
    Conflict,
    IllegalTransition,
    InvalidRequest,
    JobTally,
    NotFound,
    ReapReport,
    ResultOutcome,
    SchedulingPolicy,
)
from ffleet.store.credentials import CredentialStore
from ffleet.store.db import Database, Row, Tx
from ffleet.store.explain import explain
from ffleet.store.group_commit import redoable
from ffleet.store.handed_out import HandedOut
from ffleet.store.migrate import migrate
from ffleet.store.nodes import NodeRegistry
from ffleet.store.rows import (
    attempt_from_row,
    dumps,
    job_after_result,
    job_from_row,
    result_from_row,
)

log = logging.getLogger(__name__)

NO_LIMIT = 2**62
# What each reported result status does to the job (a failure may still be retried).
RESULT_EVENTS = {"completed": Event.COMPLETE, "canceled": Event.ABORT, "failed": Event.FAIL}


class SqlStore(NodeRegistry, CredentialStore, splits.SplitMethods):
    """Store over SQL. `url`: `memory`, `sqlite:///PATH` or `postgresql://...`."""

    def __init__(self, url: str, policy: SchedulingPolicy | None = None) -> None:
        self.policy = policy or SchedulingPolicy()
        self._handed_out = HandedOut()  # what this process's claims wrote, for their results
        self.url = url
        self.db = Database(url)
        self.inline = self.db.is_sqlite
        self.origin = uuid.uuid4().hex  # names this process in the wake-up hints it sends
        try:
            applied = migrate(self.db, time.time())
        except BaseException:
            self.db.close()
            raise
        if applied:
            log.info("schema migrated to version %s (%s)", applied[-1], redact_url(url))

    def close(self) -> None:
        self.db.close()

    def check(self) -> None:
        with self.db.transaction() as tx:
            tx.run("store_write_probe")

    # ------------------------------------------------------------------ jobs

    def create_jobs(
        self,
        requests: Sequence[JobRequest],
        now: float,
        *,
        submitted_by: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[Job]:
        prepared = self._prepare(requests, now, submitted_by)
        checks = list({id(job.checked): job.checked for job in prepared}.values())
        kinds = {checked.columns["requirements"] for checked in checks if checked.requirements}
        if len(kinds) > placement.MAX_REQUIREMENT_SETS:  # each costs a walk over the fleet
            raise InvalidRequest(
                f"one submission may name at most {placement.MAX_REQUIREMENT_SETS} distinct "
                f"requirement sets; this one names {len(kinds)}"
            )
        with self.db.transaction() as tx:
            if idempotency_key is not None:
                first = coordination.replayed(tx, idempotency_key, requests, submitted_by, now)
                if first is not None:
                    return first
            reasons: dict[str, str | None] = {}
            for checked in checks:
                if checked.requirements is None:
                    continue
                text = checked.columns["requirements"]
                if text not in reasons:
                    reasons[text] = placement.unschedulable_reason(tx, checked.requirements)
                checked.columns["unschedulable_reason"] = reasons[text]
            for statement, rows in submission.inserts(prepared):
                tx.many(statement, rows)
            created = submission.created(prepared)
            if idempotency_key is not None:
                coordination.remember(tx, idempotency_key, created)
            self._announce(tx, count=len(created))
        return created

    def _prepare(
        self, requests: Sequence[JobRequest], now: float, submitted_by: str | None = None
    ) -> list[submission.Pending]:
        """Validate every request before anything is written (bad input changes nothing)."""
        return submission.prepare(requests, now, self.policy.max_job_timeout_s, submitted_by)

    def get_job(self, job_id: str) -> JobDetail:
        with self.db.transaction() as tx:
            row = tx.one("job_get", {"id": job_id})
            if row is None:
                raise NotFound(f"job {job_id} not found")
            return self._detail(tx, row)

    @staticmethod
    def _detail(tx: Tx, row: Row) -> JobDetail:
        job_id = row["id"]
        history = [attempt_from_row(a) for a in tx.all("attempts_of_job", {"job_id": job_id})]
        stored = tx.one("result_latest", {"job_id": job_id})
        return JobDetail(
            job=job_from_row(row),
            attempts=history,
            result=result_from_row(stored) if stored is not None else None,
        )

    def explain(self, job_id: str, now: float) -> Explanation:
        with self.db.transaction() as tx:
            row = tx.one("job_get", {"id": job_id})
            if row is None:
                raise NotFound(f"job {job_id} not found")
            return explain(tx, row, now, self.policy.node_timeout_s)

    def list_jobs(
        self,
        status: str | None,
        limit: int | None,
        offset: int,
        *,
        scenario: str | None = None,
        node_id: str | None = None,
    ) -> tuple[list[Job], int]:
        page = {
            "limit": NO_LIMIT if limit is None else limit,
            "offset": offset,
            "status": status,
            "scenario": scenario,
            "node": node_id,
        }
        with self.db.transaction() as tx:
            if scenario is not None or node_id is not None:
                total = tx.scalar("jobs_count_filtered", page)
                rows = tx.all("jobs_page_filtered", page)
            elif status is None:
                total = tx.scalar("jobs_count")
                rows = tx.all("jobs_page", page)
            else:
                total = tx.scalar("jobs_count_by_status", page)
                rows = tx.all("jobs_page_by_status", page)
            return [job_from_row(row) for row in rows], int(total)

    def tally_jobs(self) -> list[JobTally]:
        with self.db.transaction() as tx:
            return [
                JobTally(
                    status=row["status"],
                    priority=int(row["priority"]),
                    unschedulable=bool(row["unschedulable"]),
                    jobs=int(row["jobs"]),
                )
                for row in tx.all("jobs_tally")
            ]

    def pending_exceeds(self, bound: int) -> bool:
        if bound < 0:
            return True
        with self.db.transaction() as tx:
            span = tx.scalar("pending_seq_span")  # an upper bound of their count
            if span is None or span <= bound:
                return False
            return int(tx.scalar("pending_count_up_to", {"limit": bound + 1})) > bound

    def ids_with_prefix(self, kind: Literal["job", "node"], prefix: str, limit: int) -> list[str]:
        params = {"prefix": prefix, "length": len(prefix), "limit": limit}
        with self.db.transaction() as tx:
            return [row["id"] for row in tx.all(f"{kind}_ids_with_prefix", params)]

    def claim(self, node_id: str, now: float) -> Job | None:
        with self.db.transaction() as tx:
            first = tx.one("claim_first", {"id": node_id, "now": now})
            if first is None:
                raise NotFound(f"node {node_id} not found; register first")
            return self._claim(tx, first, now)

    def _claim(self, tx: Tx, first: Row, now: float) -> Job | None:
        """The next job of a node, from its `claim_first` row: none while it drains or is full."""
        if first["busy"]:
            return None
        me = placement.claimer(first)
        head = [] if first["seq"] is None else [first]
        chosen = placement.pick(tx, me, now, self.policy.node_timeout_s, first=head)
        if chosen is None:
            return None
        claimed = attempts.start(tx, chosen, me.node_id, now, self.policy)
        self._handed_out.add(claimed)
        return job_from_row(claimed)

    @redoable
    def submit_result(self, result: ResultSubmission, now: float) -> ResultOutcome:
        event = RESULT_EVENTS[result.status]
        completed_at = _completed_at(result, now)
        with self.db.transaction() as tx:
            written = (
                self._completed_as_claimed(tx, result, now)
                if event is Event.COMPLETE and completed_at is not None
                else None
            )
            # A failure may queue the job again, which reads the whole row; a completion or a
            # cancellation reads only the columns its check and its writes need.
            read = "job_locked" if event is Event.FAIL else "job_for_result"
            row = written or self._locked_job(tx, result.job_id, read)
            attempt = result.attempt if result.attempt is not None else row["attempt"]
            key = {"job_id": row["id"], "attempt": attempt}
            if written is None and (
                not allows(row["status"], event)
                or row["attempt"] != attempt
                or row["node_id"] != result.node_id
            ):
                # Results are stored only while their attempt is current, so a repeat of one
                # that was accepted always lands here.
                stored = tx.one("result_of_attempt", key)
                if stored is not None:
                    if stored["status"] == result.status and stored["node_id"] == result.node_id:
                        return ResultOutcome(
                            job=job_after_result(self._locked_job(tx, row["id"])),
                            duplicate=True,
                            next_job=self._claim_next(tx, result, now),
                        )
                    raise Conflict(
                        f"attempt {attempt} of job {row['id']} already has a "
                        f"{stored['status']} result"
                    )
                raise Conflict(
                    f"attempt {attempt} of job {row['id']} on node {result.node_id} is not "
                    f"current (job is {row['status']}, attempt {row['attempt']} on node "
                    f"{row['node_id']})"
                )
            if completed_at is None:  # refused after the checks above, as it always was
                raise InvalidRequest(
                    f"completed_at {result.completed_at!r} is not an RFC 3339 time"
                )
            tx.run(
                "result_insert",
                {
                    **key,
                    "node_id": result.node_id,
                    "status": result.status,
                    "metrics": dumps(result.metrics),
                    "analyzer_output": dumps(result.analyzer_output),
                    "error": result.error,
                    "completed_at": completed_at,
                    "received_at": now,
                },
            )
            if event is Event.FAIL:
                error = result.error or "failed"
                if result.wrong_node:  # another node may run it: never this one again
                    job = attempts.refused(tx, row, now, error, result.node_id)
                else:
                    job = attempts.fail(
                        tx, row, now, error, retryable=result.retryable, policy=self.policy
                    )
                after = job_after_result(msgspec.structs.asdict(job))
            else:
                if written is None:
                    reason = None if event is Event.COMPLETE else result.error or "canceled"
                    written = attempts.reported(tx, row, event, result.status, now, reason)
                if event is Event.COMPLETE:
                    efficiency.record(tx, row, result.node_id, result.metrics, now)
                after = job_after_result(written)
            return ResultOutcome(job=after, next_job=self._claim_next(tx, result, now))

    def _completed_as_claimed(self, tx: Tx, result: ResultSubmission, now: float) -> Row | None:
        """A completion of an attempt this process handed out, written without reading the job
        (handed_out.py): the row as written; None when it is not one, or no longer current
        (then nothing was written and the caller reads the job)."""
        claimed = self._handed_out.take(result.job_id)
        if (
            claimed is None
            or claimed["node_id"] != result.node_id
            or result.attempt not in (None, claimed["attempt"])
        ):
            return None
        return attempts.completed_as_claimed(tx, claimed, now)

    def _claim_next(self, tx: Tx, result: ResultSubmission, now: float) -> Job | None:
        """The sender's next job, in the result's own transaction (one round trip per job).
        An unknown node gets none rather than an error: its result is already stored."""
        if not result.claim_next:
            return None
        first = tx.one("claim_first", {"id": result.node_id, "now": now})
        return None if first is None else self._claim(tx, first, now)

    def release(self, job_id: str, node_id: str, attempt: int, reason: str, now: float) -> Job:
        with self.db.transaction() as tx:
            row = self._locked_job(tx, job_id)
            if (
                not allows(row["status"], Event.REQUEUE)
                or row["attempt"] != attempt
                or row["node_id"] != node_id
            ):
                raise Conflict(f"attempt {attempt} of job {job_id} is not running on {node_id}")
            attempts.close(tx, row, now, "released", reason)
            self._announce(tx)
            return attempts.requeue(
                tx, row, Event.REQUEUE, now, not_before=now, retry_count=row["retry_count"]
            )

    def cancel(self, job_id: str, now: float) -> Job:
        """Pending: the `cancel` event at once. Running: flagged, and the agent's report
        of the stopped attempt is the `abort` event."""
        with self.db.transaction() as tx:
            row = self._locked_job(tx, job_id)
            if allows(row["status"], Event.CANCEL):
                return attempts.finish(tx, row, Event.CANCEL, now, "canceled by a user")
            if allows(row["status"], Event.ABORT):
                flagged = tx.one("cancel_flag", {"seq": row["seq"]})
                assert flagged is not None
                return job_from_row(flagged)
            raise IllegalTransition(f"job {job_id} is already {row['status']}")

    def retry(self, job_id: str, now: float) -> Job:
        with self.db.transaction() as tx:
            row = self._locked_job(tx, job_id)
            if not allows(row["status"], Event.RETRY):
                raise IllegalTransition(
                    f"only {describe_sources(Event.RETRY)} jobs can be retried; "
                    f"job is {row['status']}"
                )
            self._announce(tx)
            job = attempts.requeue(tx, row, Event.RETRY, now, not_before=now, retry_count=0)
            return splits.restart_if_parent(tx, job, now)

    def list_results(
        self, job_id: str | None, limit: int | None, offset: int
    ) -> list[StoredResult]:
        page = {"limit": NO_LIMIT if limit is None else limit, "offset": offset, "job_id": job_id}
        with self.db.transaction() as tx:
            rows = tx.all("results_page" if job_id is None else "results_of_job", page)
            return [result_from_row(row) for row in rows]

    def finished_between(
        self, since: float, until: float, limit: int, offset: int
    ) -> list[JobDetail]:
        page = {"since": since, "until": until, "limit": limit, "offset": offset}
        with self.db.transaction() as tx:
            return [self._detail(tx, row) for row in tx.all("finished_between", page)]

    def delete_finished(self, job_ids: Sequence[str]) -> int:
        removed = 0
        with self.db.transaction(alone=True) as tx:
            for job_id in job_ids:
                if tx.one("job_delete_finished", {"id": job_id}) is None:
                    continue
                tx.run("attempts_delete", {"id": job_id})
                tx.run("results_delete", {"id": job_id})
                tx.run("split_delete", {"id": job_id})
                tx.run("split_child_delete", {"id": job_id})
                removed += 1
        return removed

    # ------------------------------------------------------------------ reaper

    def reap(self, now: float, limit: int = REAP_BATCH) -> ReapReport:
        report = ReapReport()
        with self.db.transaction() as tx:
            cut = now - self.policy.node_timeout_s
            bound = {"cut": cut, "limit": limit}
            report.offline_nodes = [row["id"] for row in tx.all("nodes_mark_offline", bound)]
            expired = tx.all("running_expired_locked", {"now": now, "limit": limit})
            for row in expired:
                if row["deadline_at"] is not None and row["deadline_at"] < now:
                    reason = f"timed out after {row['timeout_s']:g} s"
                else:
                    reason = f"node {row['node_id']} stopped sending heartbeats"
                job = attempts.fail(tx, row, now, reason, retryable=True, policy=self.policy)
                if job.status == JobStatus.PENDING:
                    report.requeued_jobs.append(job.id)
                    assert job.not_before is not None  # a queued job always has one
                    report.retry_at.append(job.not_before)
                else:
                    report.failed_jobs.append(job.id)
            report.aged_jobs = self._age(tx, now, limit)
        report.more = limit in (len(report.offline_nodes), len(expired), report.aged_jobs)
        return report

    def _age(self, tx: Tx, now: float, limit: int) -> int:
        """Aging: a pending job gains one priority step per `aging_interval_s` it waits, but only
        while something better is queued, so a stream of high-priority work cannot starve it."""
        top = tx.scalar("pending_top_priority")
        if top is None:
            return 0
        cut = now - self.policy.aging_interval_s
        return tx.run("pending_age", {"now": now, "top": top, "cut": cut, "limit": limit})

    # ------------------------------------------------------------------ several masters

    def database_time(self) -> float:
        with self.db.transaction() as tx:
            return float(tx.scalar("clock_now"))

    def take_leadership(self, holder: str, now: float, lease_s: float) -> str | None:
        with self.db.transaction() as tx:
            return coordination.take_lease(tx, holder, now, lease_s)

    def resign_leadership(self, holder: str) -> None:
        with self.db.transaction() as tx:
            tx.run("lease_resign", {"holder": holder})
            self._announce(tx, "leader")  # the other masters: take over now, not at expiry

    def announce_work(self) -> None:
        with self.db.transaction() as tx:
            self._announce(tx)

    def expire_idempotency_keys(self, now: float) -> int:
        with self.db.transaction(alone=True) as tx:
            return tx.run("idempotency_expire", {"cut": now - coordination.IDEMPOTENCY_KEY_TTL_S})

    def _announce(self, tx: Tx, topic: str = "work", count: int = 1) -> None:
        """Hint the other masters (on commit) that `count` jobs became claimable, or that the
        lead is free; SQLite has no other masters."""
        if not self.inline:
            tx.run("work_announce", {"origin": f"{topic} {self.origin} {count}"})

    # ------------------------------------------------------------------ helpers

    def _locked_job(self, tx: Tx, job_id: str, read: str = "job_locked") -> Row:
        """The job's row, locked where the engine locks rows: all of it, or what `read` reads."""
        row = tx.one(read, {"id": job_id})
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return row


def _completed_at(result: ResultSubmission, now: float) -> float | None:
    """When the agent says the attempt ended (else `now`); None when that is not a time."""
    if not result.completed_at:
        return now
    try:
        return parse_rfc3339(result.completed_at)
    except ValueError:
        return None
