"""The SQL store: one implementation for in-memory SQLite, SQLite files and PostgreSQL.

One code path for all three backends means the state machine cannot drift between them; the
dialect only changes how a transaction takes its locks:
- SQLite: every transaction is `BEGIN IMMEDIATE` (the write lock up front), and a process-local
  mutex serialises this process's use of its single connection. WAL with synchronous=NORMAL keeps
  every committed change through a `kill -9` of the master.
- PostgreSQL: claim and reap lock rows with `FOR UPDATE SKIP LOCKED`, so several masters can share
  one database without handing a job out twice or blocking on each other.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec
from sqlalchemy import (
    Connection,
    Engine,
    Row,
    and_,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.pool import StaticPool

from ffleet import retry, scheduling
from ffleet.models import (
    Attempt,
    Directive,
    GpuDescription,
    Heartbeat,
    HeartbeatReply,
    Job,
    JobDetail,
    JobRequest,
    Node,
    NodeRegistration,
    Progress,
    Requirements,
    ResultSubmission,
    StoredResult,
    parse_rfc3339,
    priority_value,
    rfc3339,
)
from ffleet.scenarios import ScenarioError, build_job_spec, default_timeout_s
from ffleet.states import JobStatus, NodeStatus, check_transition
from ffleet.store.base import (
    Conflict,
    InvalidRequest,
    NotFound,
    ReapReport,
    ResultOutcome,
    SchedulingPolicy,
)
from ffleet.store.schema import attempts, jobs, migrate, nodes, results

log = logging.getLogger(__name__)

CLAIM_BATCH = 32  # candidates examined per query when the best jobs don't fit the node


def _json_dumps(value: object) -> str:
    return msgspec.json.encode(value).decode()


def _dump(value: Any) -> Any:
    return msgspec.to_builtins(value)


class SqlStore:
    """Store over SQLAlchemy Core. `url`: `memory`, `sqlite:///PATH` or `postgresql://...`."""

    def __init__(self, url: str, policy: SchedulingPolicy | None = None) -> None:
        self.policy = policy or SchedulingPolicy()
        self.url = url
        self.engine = _make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._lock = threading.Lock() if self.is_sqlite else None
        self._row_lock = not self.is_sqlite  # FOR UPDATE [SKIP LOCKED] only where it exists
        with self._tx() as conn:
            applied = migrate(conn, time.time())
        if applied:
            log.info("schema migrated to version %s (%s)", applied[-1], redact_url(url))

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        if self._lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._lock, self.engine.begin() as conn:
            yield conn

    # ------------------------------------------------------------------ nodes

    def register_node(self, registration: NodeRegistration, now: float) -> Node:
        values = {
            "address": registration.address,
            "type": registration.type,
            "cpu_threads": registration.cpu_threads,
            "cpu_model": registration.cpu_model,
            "has_gpu": registration.has_gpu or bool(registration.gpus),
            "gpu_type": registration.gpu_type
            or (registration.gpus[0].name if registration.gpus else None),
            "ram_bytes": registration.ram_bytes,
            "labels": registration.labels,
            "hostname": registration.hostname,
            "ffmpeg_version": registration.ffmpeg_version,
            "encoders": registration.encoders,
            "gpus": _dump(registration.gpus),
            "slots": registration.slots,
            "online": True,
            "last_heartbeat": now,
        }
        with self._tx() as conn:
            wanted = registration.id
            known = (
                wanted is not None
                and conn.execute(select(nodes.c.id).where(nodes.c.id == wanted)).first() is not None
            )
            node_id = wanted or str(uuid.uuid4())
            if known:
                conn.execute(update(nodes).where(nodes.c.id == node_id).values(**values))
                # The agent restarted: whatever it was running died with it.
                for row in self._running_rows(conn, node_id=node_id):
                    self._end_attempt(conn, row, now, "agent restarted", retryable=True)
            else:
                conn.execute(
                    insert(nodes).values(id=node_id, registered_at=now, draining=False, **values)
                )
            self._refresh_unschedulable(conn)
            return self._node(conn, node_id)

    def get_node(self, node_id: str) -> Node:
        with self._tx() as conn:
            return self._node(conn, node_id)

    def list_nodes(self) -> list[Node]:
        with self._tx() as conn:
            running = self._running_by_node(conn)
            rows = conn.execute(select(nodes).order_by(nodes.c.registered_at, nodes.c.id))
            return [_node_from_row(row, running.get(row.id, [])) for row in rows]

    def set_draining(self, node_id: str, draining: bool) -> Node:
        with self._tx() as conn:
            done = conn.execute(
                update(nodes).where(nodes.c.id == node_id).values(draining=draining)
            )
            if done.rowcount == 0:
                raise NotFound(f"node {node_id} not found")
            return self._node(conn, node_id)

    def heartbeat(self, node_id: str, beat: Heartbeat, now: float) -> HeartbeatReply:
        with self._tx() as conn:
            node = conn.execute(
                update(nodes)
                .where(nodes.c.id == node_id)
                .values(last_heartbeat=now, online=True)
                .returning(nodes.c.draining, nodes.c.slots)
            ).first()
            if node is None:
                raise NotFound(f"node {node_id} not found")
            conn.execute(
                update(jobs)
                .where(jobs.c.node_id == node_id, jobs.c.status == JobStatus.RUNNING)
                .values(lease_expires_at=now + self.policy.node_timeout_s)
            )
            mine = {
                row.id: row
                for row in conn.execute(
                    select(jobs.c.id, jobs.c.attempt, jobs.c.cancel_requested).where(
                        jobs.c.node_id == node_id, jobs.c.status == JobStatus.RUNNING
                    )
                )
            }
            directives: list[Directive] = []
            for report in beat.jobs:
                row = mine.get(report.job_id)
                if row is None or (report.attempt is not None and report.attempt != row.attempt):
                    directives.append(
                        Directive(
                            action="abandon",
                            job_id=report.job_id,
                            attempt=report.attempt,
                            reason="this attempt is no longer yours (it ended or was reassigned)",
                        )
                    )
                elif report.progress is not None:
                    progress = _dump(report.progress)
                    progress["updated_at"] = rfc3339(now)
                    conn.execute(update(jobs).where(jobs.c.id == row.id).values(progress=progress))
            directives.extend(
                Directive(
                    action="cancel", job_id=row.id, attempt=row.attempt, reason="canceled by a user"
                )
                for row in mine.values()
                if row.cancel_requested
            )
            status = _node_status(True, node.draining, node.slots, len(mine))
            return HeartbeatReply(node_status=status, directives=directives)

    # ------------------------------------------------------------------ jobs

    def create_jobs(self, requests: Sequence[JobRequest], now: float) -> list[Job]:
        rows = [self._job_values(req, now) for req in requests]
        with self._tx() as conn:
            traits = self._traits(conn)
            for values in rows:
                req = _requirements(values["requirements"])
                values["unschedulable_reason"] = scheduling.unschedulable_reason(req, traits)
            conn.execute(insert(jobs), rows)
            ids = [values["id"] for values in rows]
            fetched = {
                row.id: _job_from_row(row)
                for row in conn.execute(select(jobs).where(jobs.c.id.in_(ids)))
            }
            return [fetched[job_id] for job_id in ids]

    def _job_values(self, req: JobRequest, now: float) -> dict[str, Any]:
        """Validate a request fully before anything is written (bad input changes nothing)."""
        try:
            spec = build_job_spec(req.scenario, req.parameters)
        except ScenarioError as exc:
            raise InvalidRequest(str(exc)) from None
        try:
            priority = priority_value(req.priority)
            not_before = parse_rfc3339(req.not_before) if req.not_before else now
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        cap = self.policy.max_job_timeout_s
        timeout = min(req.timeout_s or default_timeout_s(spec), cap)
        reqs = req.requirements
        return {
            "id": str(uuid.uuid4()),
            "scenario": req.scenario,
            "confidence": req.confidence,
            "parameters": req.parameters,
            "status": JobStatus.PENDING.value,
            "node_id": None,
            "created_at": now,
            "started_at": None,
            "completed_at": None,
            "retry_count": 0,
            "error": None,
            "priority": priority,
            "base_priority": priority,
            "aged_at": now,
            "requirements": _dump(reqs) if reqs is not None else None,
            "req_gpu": scheduling.needs_gpu(reqs),
            "req_min_ram": reqs.min_ram_bytes if reqs else 0,
            "req_min_threads": reqs.min_cpu_threads if reqs else 0,
            "affinity": req.affinity,
            "anti_affinity": req.anti_affinity,
            "timeout_s": timeout,
            "max_attempts": req.max_attempts,
            "attempt": 0,
            "not_before": not_before,
            "lease_expires_at": None,
            "deadline_at": None,
            "progress": None,
            "cancel_requested": False,
        }

    def get_job(self, job_id: str) -> JobDetail:
        with self._tx() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
            if row is None:
                raise NotFound(f"job {job_id} not found")
            history = [
                Attempt(
                    attempt=a.attempt,
                    node_id=a.node_id,
                    started_at=rfc3339(a.started_at),
                    ended_at=rfc3339(a.ended_at),
                    outcome=a.outcome,
                    error=a.error,
                )
                for a in conn.execute(
                    select(attempts).where(attempts.c.job_id == job_id).order_by(attempts.c.attempt)
                )
            ]
            stored = conn.execute(
                select(results)
                .where(results.c.job_id == job_id)
                .order_by(results.c.attempt.desc())
                .limit(1)
            ).first()
            return JobDetail(
                job=_job_from_row(row),
                attempts=history,
                result=_result_from_row(stored) if stored is not None else None,
            )

    def list_jobs(
        self, status: str | None, limit: int | None, offset: int
    ) -> tuple[list[Job], int]:
        query = select(jobs).order_by(jobs.c.seq)
        count = select(func.count()).select_from(jobs)
        if status is not None:
            query = query.where(jobs.c.status == status)
            count = count.where(jobs.c.status == status)
        if limit is not None:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        with self._tx() as conn:
            total = conn.execute(count).scalar_one()
            return [_job_from_row(row) for row in conn.execute(query)], total

    def claim(self, node_id: str, now: float) -> Job | None:
        with self._tx() as conn:
            node = conn.execute(select(nodes).where(nodes.c.id == node_id)).first()
            if node is None:
                raise NotFound(f"node {node_id} not found; register first")
            if node.draining:
                return None
            if node.slots is not None:
                busy = conn.execute(
                    select(func.count())
                    .select_from(jobs)
                    .where(jobs.c.node_id == node_id, jobs.c.status == JobStatus.RUNNING)
                ).scalar_one()
                if busy >= node.slots:
                    return None
            chosen = self._pick(conn, node, now)
            if chosen is None:
                return None
            return self._start_attempt(conn, chosen, node_id, now)

    def _pick(self, conn: Connection, node: Row[Any], now: float) -> Row[Any] | None:
        """Best pending job this node may run: highest priority, then oldest.

        Hard limits that map to columns (GPU, RAM, threads) filter in SQL; the rest is checked
        here, walking the queue in batches, so a job this node cannot run never blocks the jobs
        behind it. A GPU node looks at GPU work first.
        """
        me = _traits_from_row(node)
        idle: list[scheduling.NodeTraits] | None = None
        passes = [True, False] if node.has_gpu else [False]
        for gpu_only in passes:
            last: tuple[int, int] | None = None
            while True:
                query = (
                    select(jobs)
                    .where(
                        jobs.c.status == JobStatus.PENDING,
                        jobs.c.not_before <= now,
                        jobs.c.req_min_ram <= node.ram_bytes,
                        jobs.c.req_min_threads <= node.cpu_threads,
                    )
                    .order_by(jobs.c.priority.desc(), jobs.c.seq)
                    .limit(CLAIM_BATCH)
                )
                if not node.has_gpu:
                    query = query.where(jobs.c.req_gpu.is_(False))
                elif gpu_only:
                    query = query.where(jobs.c.req_gpu.is_(True))
                if last is not None:
                    query = query.where(
                        or_(
                            jobs.c.priority < last[0],
                            and_(jobs.c.priority == last[0], jobs.c.seq > last[1]),
                        )
                    )
                if self._row_lock:
                    query = query.with_for_update(skip_locked=True)
                batch = conn.execute(query).all()
                for row in batch:
                    req = _requirements(row.requirements)
                    if scheduling.unmet(req, me):
                        continue
                    waited = now - max(row.created_at, row.not_before)
                    if waited < scheduling.PREFERENCE_WINDOW_S and _has_preference(row, me):
                        if idle is None:
                            idle = self._idle_traits(conn, now)
                        if scheduling.should_defer(
                            req, row.affinity, row.anti_affinity, waited, me, idle
                        ):
                            continue
                    return row
                if len(batch) < CLAIM_BATCH:
                    break
                last = (batch[-1].priority, batch[-1].seq)
        return None

    def _start_attempt(self, conn: Connection, row: Row[Any], node_id: str, now: float) -> Job:
        check_transition(row.status, JobStatus.RUNNING)
        attempt = row.attempt + 1
        claimed = conn.execute(
            update(jobs)
            .where(jobs.c.seq == row.seq, jobs.c.status == JobStatus.PENDING)
            .values(
                status=JobStatus.RUNNING.value,
                node_id=node_id,
                attempt=attempt,
                started_at=now,
                completed_at=None,
                lease_expires_at=now + self.policy.node_timeout_s,
                deadline_at=now + row.timeout_s,
                progress=None,
                cancel_requested=False,
                unschedulable_reason=None,
            )
            .returning(*jobs.c)
        ).first()
        if claimed is None:  # lost a race that row locking should have prevented
            raise Conflict(f"job {row.id} was claimed concurrently")
        conn.execute(
            insert(attempts).values(job_id=row.id, attempt=attempt, node_id=node_id, started_at=now)
        )
        return _job_from_row(claimed)

    def submit_result(self, result: ResultSubmission, now: float) -> ResultOutcome:
        with self._tx() as conn:
            row = self._locked_job(conn, result.job_id)
            attempt = result.attempt if result.attempt is not None else row.attempt
            stored = conn.execute(
                select(results.c.status, results.c.node_id).where(
                    results.c.job_id == row.id, results.c.attempt == attempt
                )
            ).first()
            if stored is not None:
                if stored.status == result.status and stored.node_id == result.node_id:
                    return ResultOutcome(job=_job_from_row(row), duplicate=True)
                raise Conflict(
                    f"attempt {attempt} of job {row.id} already has a {stored.status} result"
                )
            if (
                row.status != JobStatus.RUNNING
                or row.attempt != attempt
                or row.node_id != result.node_id
            ):
                raise Conflict(
                    f"attempt {attempt} of job {row.id} on node {result.node_id} is not current "
                    f"(job is {row.status}, attempt {row.attempt} on node {row.node_id})"
                )
            completed_at = now
            if result.completed_at:
                try:
                    completed_at = parse_rfc3339(result.completed_at)
                except ValueError:
                    raise InvalidRequest(
                        f"completed_at {result.completed_at!r} is not an RFC 3339 time"
                    ) from None
            conn.execute(
                insert(results).values(
                    job_id=row.id,
                    attempt=attempt,
                    node_id=result.node_id,
                    status=result.status,
                    metrics=result.metrics,
                    analyzer_output=result.analyzer_output,
                    error=result.error,
                    completed_at=completed_at,
                    received_at=now,
                )
            )
            if result.status == "completed":
                job = self._finish(conn, row, JobStatus.COMPLETED, now, None, "completed")
            elif result.status == "canceled":
                job = self._finish(
                    conn, row, JobStatus.CANCELED, now, result.error or "canceled", "canceled"
                )
            else:
                job = self._end_attempt(
                    conn, row, now, result.error or "failed", retryable=result.retryable
                )
            return ResultOutcome(job=job)

    def release(self, job_id: str, node_id: str, attempt: int, reason: str, now: float) -> Job:
        with self._tx() as conn:
            row = self._locked_job(conn, job_id)
            if row.status != JobStatus.RUNNING or row.attempt != attempt or row.node_id != node_id:
                raise Conflict(f"attempt {attempt} of job {job_id} is not running on {node_id}")
            self._close_attempt(conn, row, now, "released", reason)
            return self._requeue(conn, row, now, not_before=now, retry_count=row.retry_count)

    def cancel(self, job_id: str, now: float) -> Job:
        with self._tx() as conn:
            row = self._locked_job(conn, job_id)
            if row.status == JobStatus.PENDING:
                return self._set_status(
                    conn, row, JobStatus.CANCELED, completed_at=now, error="canceled by a user"
                )
            if row.status == JobStatus.RUNNING:
                done = conn.execute(
                    update(jobs)
                    .where(jobs.c.seq == row.seq)
                    .values(cancel_requested=True)
                    .returning(*jobs.c)
                ).one()
                return _job_from_row(done)
            raise Conflict(f"job {job_id} is already {row.status}")

    def retry(self, job_id: str, now: float) -> Job:
        with self._tx() as conn:
            row = self._locked_job(conn, job_id)
            if row.status not in (JobStatus.FAILED, JobStatus.CANCELED):
                raise Conflict(f"only failed or canceled jobs can be retried; job is {row.status}")
            return self._requeue(conn, row, now, not_before=now, retry_count=0)

    def list_results(
        self, job_id: str | None, limit: int | None, offset: int
    ) -> list[StoredResult]:
        query = select(results).order_by(results.c.received_at, results.c.job_id)
        if job_id is not None:
            query = query.where(results.c.job_id == job_id)
        if limit is not None:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        with self._tx() as conn:
            return [_result_from_row(row) for row in conn.execute(query)]

    # ------------------------------------------------------------------ reaper

    def reap(self, now: float) -> ReapReport:
        report = ReapReport()
        policy = self.policy
        with self._tx() as conn:
            report.offline_nodes = list(
                conn.execute(
                    update(nodes)
                    .where(
                        nodes.c.online.is_(True),
                        nodes.c.last_heartbeat < now - policy.node_timeout_s,
                    )
                    .values(online=False)
                    .returning(nodes.c.id)
                ).scalars()
            )
            expired = select(jobs).where(
                jobs.c.status == JobStatus.RUNNING,
                or_(jobs.c.lease_expires_at < now, jobs.c.deadline_at < now),
            )
            if self._row_lock:
                expired = expired.with_for_update(skip_locked=True)
            for row in conn.execute(expired).all():
                if row.deadline_at is not None and row.deadline_at < now:
                    reason = f"timed out after {row.timeout_s:g} s"
                else:
                    reason = f"node {row.node_id} stopped sending heartbeats"
                job = self._end_attempt(conn, row, now, reason, retryable=True)
                target = report.requeued_jobs if job.status == "pending" else report.failed_jobs
                target.append(job.id)
            report.aged_jobs = self._age(conn, now)
        return report

    def _age(self, conn: Connection, now: float) -> int:
        """Aging: a pending job gains one priority step per `aging_interval_s` it waits, but only
        while something better is queued, so a stream of high-priority work cannot starve it."""
        top = conn.execute(
            select(func.max(jobs.c.priority)).where(jobs.c.status == JobStatus.PENDING)
        ).scalar()
        if top is None:
            return 0
        aged = conn.execute(
            update(jobs)
            .where(
                jobs.c.status == JobStatus.PENDING,
                jobs.c.priority < top,
                jobs.c.aged_at <= now - self.policy.aging_interval_s,
            )
            .values(priority=jobs.c.priority + 1, aged_at=now)
        )
        return aged.rowcount or 0

    # ------------------------------------------------------------------ helpers

    def _locked_job(self, conn: Connection, job_id: str) -> Row[Any]:
        query = select(jobs).where(jobs.c.id == job_id)
        if self._row_lock:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return row

    def _end_attempt(
        self, conn: Connection, row: Row[Any], now: float, reason: str, *, retryable: bool
    ) -> Job:
        """A running attempt failed or was lost: retry with backoff, or fail for good."""
        failures = row.retry_count + 1
        decision = retry.decide(
            failures,
            row.max_attempts,
            retryable,
            now,
            self.policy.backoff_base_s,
            self.policy.backoff_cap_s,
        )
        self._close_attempt(conn, row, now, "failed", reason)
        if decision.retry:
            assert decision.not_before is not None
            log.info("job %s attempt %s ended (%s); retrying", row.id, row.attempt, reason)
            return self._requeue(
                conn, row, now, not_before=decision.not_before, retry_count=failures, error=reason
            )
        summary = "; ".join(
            f"attempt {a.attempt}: {a.error}"
            for a in conn.execute(
                select(attempts.c.attempt, attempts.c.error)
                .where(attempts.c.job_id == row.id, attempts.c.outcome == "failed")
                .order_by(attempts.c.attempt)
            )
        )
        log.info("job %s failed: %s", row.id, reason)
        return self._finish(conn, row, JobStatus.FAILED, now, summary or reason, None, failures)

    def _close_attempt(
        self, conn: Connection, row: Row[Any], now: float, outcome: str, error: str | None
    ) -> None:
        conn.execute(
            update(attempts)
            .where(
                attempts.c.job_id == row.id,
                attempts.c.attempt == row.attempt,
                attempts.c.ended_at.is_(None),
            )
            .values(ended_at=now, outcome=outcome, error=error)
        )

    def _finish(
        self,
        conn: Connection,
        row: Row[Any],
        status: JobStatus,
        now: float,
        error: str | None,
        outcome: str | None,
        retry_count: int | None = None,
    ) -> Job:
        if outcome is not None:
            self._close_attempt(conn, row, now, outcome, error if outcome != "completed" else None)
        extra = {} if retry_count is None else {"retry_count": retry_count}
        return self._set_status(conn, row, status, completed_at=now, error=error, **extra)

    def _requeue(
        self,
        conn: Connection,
        row: Row[Any],
        now: float,
        *,
        not_before: float,
        retry_count: int,
        error: str | None = None,
    ) -> Job:
        return self._set_status(
            conn,
            row,
            JobStatus.PENDING,
            node_id=None,
            not_before=not_before,
            retry_count=retry_count,
            error=error,
            completed_at=None,
            lease_expires_at=None,
            deadline_at=None,
            cancel_requested=False,
            aged_at=now,
            priority=row.base_priority,
        )

    def _set_status(self, conn: Connection, row: Row[Any], status: JobStatus, **values: Any) -> Job:
        """The only place a job's status is written: checked against the transition table and
        guarded by the status it was read in, so a concurrent change makes it fail loudly."""
        check_transition(row.status, status)
        changed = conn.execute(
            update(jobs)
            .where(jobs.c.seq == row.seq, jobs.c.status == row.status)
            .values(status=status.value, **values)
            .returning(*jobs.c)
        ).first()
        if changed is None:
            raise Conflict(f"job {row.id} changed concurrently; try again")
        return _job_from_row(changed)

    def _running_rows(self, conn: Connection, *, node_id: str) -> list[Row[Any]]:
        query = select(jobs).where(jobs.c.node_id == node_id, jobs.c.status == JobStatus.RUNNING)
        if self._row_lock:
            query = query.with_for_update()
        return list(conn.execute(query).all())

    def _running_by_node(
        self, conn: Connection, node_id: str | None = None
    ) -> dict[str, list[str]]:
        query = (
            select(jobs.c.node_id, jobs.c.id)
            .where(jobs.c.status == JobStatus.RUNNING)
            .order_by(jobs.c.started_at)
        )
        if node_id is not None:
            query = query.where(jobs.c.node_id == node_id)
        running: dict[str, list[str]] = {}
        for owner, job_id in conn.execute(query):
            running.setdefault(owner, []).append(job_id)
        return running

    def _node(self, conn: Connection, node_id: str) -> Node:
        row = conn.execute(select(nodes).where(nodes.c.id == node_id)).first()
        if row is None:
            raise NotFound(f"node {node_id} not found")
        return _node_from_row(row, self._running_by_node(conn, node_id).get(node_id, []))

    def _traits(self, conn: Connection) -> list[scheduling.NodeTraits]:
        return [_traits_from_row(row) for row in conn.execute(select(nodes))]

    def _idle_traits(self, conn: Connection, now: float) -> list[scheduling.NodeTraits]:
        """Online, undrained nodes with a free slot: the candidates a preference may wait for."""
        running = self._running_by_node(conn)
        rows = conn.execute(
            select(nodes).where(
                nodes.c.online.is_(True),
                nodes.c.draining.is_(False),
                nodes.c.last_heartbeat >= now - self.policy.node_timeout_s,
            )
        )
        return [
            _traits_from_row(row)
            for row in rows
            if len(running.get(row.id, [])) < (row.slots if row.slots is not None else 1)
        ]

    def _refresh_unschedulable(self, conn: Connection) -> None:
        """After the fleet changed, recompute the reason on jobs no node could run."""
        flagged = conn.execute(
            select(jobs.c.seq, jobs.c.requirements).where(
                jobs.c.status == JobStatus.PENDING, jobs.c.unschedulable_reason.is_not(None)
            )
        ).all()
        if not flagged:
            return
        traits = self._traits(conn)
        for seq, requirements in flagged:
            reason = scheduling.unschedulable_reason(_requirements(requirements), traits)
            conn.execute(update(jobs).where(jobs.c.seq == seq).values(unschedulable_reason=reason))


# ---------------------------------------------------------------------- rows -> models


def redact_url(url: str) -> str:
    """Hide a password in a database URL before it reaches a log line."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"


def _make_engine(url: str) -> Engine:
    if url == "memory":
        engine = create_engine(
            "sqlite://",
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            json_serializer=_json_dumps,
            json_deserializer=msgspec.json.decode,
        )
    elif url.startswith("sqlite:"):
        engine = create_engine(
            url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False, "timeout": 30},
            json_serializer=_json_dumps,
            json_deserializer=msgspec.json.decode,
        )
    elif url.startswith(("postgresql:", "postgresql+psycopg:", "postgres:")):
        if url.startswith("postgres:"):
            url = "postgresql:" + url[len("postgres:") :]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return create_engine(
            url,
            pool_size=10,
            max_overflow=40,
            pool_pre_ping=True,
            json_serializer=_json_dumps,
            json_deserializer=msgspec.json.decode,
        )
    else:
        raise ValueError(
            f"unsupported store URL {url!r}: use memory, sqlite:///PATH or postgresql://..."
        )

    @event.listens_for(engine, "connect")
    def _sqlite_setup(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _requirements(raw: Mapping[str, Any] | None) -> Requirements | None:
    return None if raw is None else msgspec.convert(raw, Requirements)


def _has_preference(row: Row[Any], node: scheduling.NodeTraits) -> bool:
    return bool(row.affinity or row.anti_affinity or (node.has_gpu and not row.req_gpu))


def _traits_from_row(row: Row[Any]) -> scheduling.NodeTraits:
    return scheduling.NodeTraits(
        node_id=row.id,
        has_gpu=row.has_gpu,
        gpu_names=[g.get("name", "") for g in row.gpus] or ([row.gpu_type] if row.gpu_type else []),
        encoders=frozenset(row.encoders),
        ram_bytes=row.ram_bytes,
        cpu_threads=row.cpu_threads,
        labels=row.labels,
    )


def _node_status(online: bool, draining: bool, slots: int | None, running: int) -> str:
    if not online:
        return NodeStatus.OFFLINE.value
    if draining:
        return NodeStatus.DRAINING.value
    if running and running >= (slots or 1):
        return NodeStatus.BUSY.value
    return NodeStatus.AVAILABLE.value


def _node_from_row(row: Row[Any], running: list[str]) -> Node:
    return Node(
        id=row.id,
        address=row.address,
        type=row.type,
        cpu_threads=row.cpu_threads,
        cpu_model=row.cpu_model,
        has_gpu=row.has_gpu,
        gpu_type=row.gpu_type,
        ram_bytes=row.ram_bytes,
        labels=row.labels,
        status=_node_status(row.online, row.draining, row.slots, len(running)),
        last_heartbeat=rfc3339(row.last_heartbeat),
        registered_at=rfc3339(row.registered_at),
        current_job_id=running[0] if running else None,
        hostname=row.hostname,
        ffmpeg_version=row.ffmpeg_version,
        encoders=row.encoders,
        gpus=[msgspec.convert(g, GpuDescription) for g in row.gpus],
        slots=row.slots,
        draining=row.draining,
        running_job_ids=running,
    )


def _job_from_row(row: Row[Any]) -> Job:
    return Job(
        id=row.id,
        scenario=row.scenario,
        confidence=row.confidence,
        parameters=row.parameters,
        status=row.status,
        node_id=row.node_id,
        created_at=rfc3339(row.created_at),
        started_at=rfc3339(row.started_at),
        completed_at=rfc3339(row.completed_at),
        retry_count=row.retry_count,
        error=row.error,
        priority=row.priority,
        requirements=_requirements(row.requirements),
        affinity=row.affinity,
        anti_affinity=row.anti_affinity,
        timeout_s=row.timeout_s,
        max_attempts=row.max_attempts,
        attempt=row.attempt,
        not_before=rfc3339(row.not_before),
        progress=msgspec.convert(row.progress, Progress) if row.progress else None,
        cancel_requested=row.cancel_requested,
        unschedulable_reason=row.unschedulable_reason,
    )


def _result_from_row(row: Row[Any]) -> StoredResult:
    return StoredResult(
        job_id=row.job_id,
        attempt=row.attempt,
        node_id=row.node_id,
        status=row.status,
        metrics=row.metrics,
        analyzer_output=row.analyzer_output,
        error=row.error,
        completed_at=rfc3339(row.completed_at),
        received_at=rfc3339(row.received_at),
    )
