"""The SQL store: one implementation for in-memory SQLite, SQLite files and PostgreSQL.

One code path for all three backends means the state machine cannot drift between them; the
dialect only changes how a transaction takes its locks (see db.py):
- SQLite: every transaction is `BEGIN IMMEDIATE` (the write lock up front). WAL with
  synchronous=NORMAL keeps every committed change through a `kill -9` of the master.
- PostgreSQL: claim and reap lock rows with `FOR UPDATE SKIP LOCKED`, so several masters can share
  one database without handing a job out twice or blocking on each other.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

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
from ffleet.states import Event, JobStatus, NodeStatus, allows, describe_sources
from ffleet.store.base import (
    Conflict,
    IllegalTransition,
    InvalidRequest,
    NotFound,
    ReapReport,
    ResultOutcome,
    SchedulingPolicy,
)
from ffleet.store.db import Database, Row, Tx
from ffleet.store.migrate import migrate
from ffleet.store.transitions import transition

log = logging.getLogger(__name__)

# Candidates read per query: the best job usually fits, so the first read is small; if the head
# of the queue is work this node cannot take, later reads walk past it in larger steps.
CLAIM_FIRST_BATCH = 4
CLAIM_BATCH = 64
NO_LIMIT = 2**62
# The agent enforces a job's timeout itself, from when it receives the job; the master's bound
# is the backstop for an agent that hangs, so it allows for dispatch and the result's trip back.
DEADLINE_SLACK_S = 10.0
LOST_CLAIM_GRACE_S = 10.0  # a claim reply older than this has reached its agent, or never will
# What each reported result status does to the job (a failure may still be retried).
RESULT_EVENTS = {"completed": Event.COMPLETE, "canceled": Event.ABORT, "failed": Event.FAIL}

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


def _dumps(value: Any) -> str | None:
    return None if value is None else _encode(value).decode()


def _loads(text: str | None) -> Any:
    return None if text is None else _decode(text)


# ------------------------------------------------------------------------------------ SQL

NODE_COLUMNS = (
    "address, type, cpu_threads, cpu_model, has_gpu, gpu_type, ram_bytes, labels, hostname, "
    "ffmpeg_version, encoders, gpus, slots, online, last_heartbeat"
)
JOB_COLUMNS = (
    "id, scenario, confidence, parameters, status, node_id, created_at, started_at, "
    "completed_at, retry_count, error, priority, base_priority, aged_at, requirements, req_gpu, "
    "req_min_ram, req_min_threads, affinity, anti_affinity, timeout_s, max_attempts, attempt, "
    "not_before, lease_expires_at, deadline_at, progress, cancel_requested, unschedulable_reason"
)


def _bind_params(columns: str) -> str:
    return ", ".join(f":{c.strip()}" for c in columns.split(","))


SQL_NODE_GET = "SELECT * FROM nodes WHERE id = :id"
SQL_NODE_INSERT = (
    f"INSERT INTO nodes (id, registered_at, draining, {NODE_COLUMNS}) "
    f"VALUES (:id, :registered_at, FALSE, {_bind_params(NODE_COLUMNS)}) RETURNING *"
)
SQL_NODE_UPDATE = (
    "UPDATE nodes SET "
    + ", ".join(f"{c.strip()} = :{c.strip()}" for c in NODE_COLUMNS.split(","))
    + " WHERE id = :id RETURNING *"
)
SQL_NODES = "SELECT * FROM nodes ORDER BY registered_at, id"
SQL_NODE_DRAIN = "UPDATE nodes SET draining = :draining WHERE id = :id"
SQL_NODE_BEAT = (
    "UPDATE nodes SET last_heartbeat = :now, online = TRUE WHERE id = :id RETURNING draining, slots"
)
SQL_RENEW = (
    "UPDATE jobs SET lease_expires_at = :lease WHERE node_id = :node AND status = 'running' "
    "RETURNING id, attempt, cancel_requested, started_at"
)
SQL_PROGRESS = "UPDATE jobs SET progress = :progress WHERE id = :id AND status = 'running'"
SQL_RUNNING = "SELECT node_id, id FROM jobs WHERE status = 'running' ORDER BY started_at, seq"
SQL_RUNNING_OF = (
    "SELECT node_id, id FROM jobs WHERE status = 'running' AND node_id = :node "
    "ORDER BY started_at, seq"
)
SQL_RUNNING_ROWS = "SELECT * FROM jobs WHERE status = 'running' AND node_id = :node {lock}"
SQL_BUSY = (  # reads at most `slots` index entries, however many jobs the node holds
    "SELECT count(*) >= :slots FROM (SELECT 1 FROM jobs WHERE status = 'running' "
    "AND node_id = :node LIMIT :slots) AS running"
)
SQL_ONLINE_NODES = (
    "SELECT * FROM nodes WHERE online = TRUE AND draining = FALSE AND last_heartbeat >= :since"
)

SQL_JOB_INSERT = f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({_bind_params(JOB_COLUMNS)})"
SQL_JOB_GET = "SELECT * FROM jobs WHERE id = :id"
SQL_JOB_LOCK = "SELECT * FROM jobs WHERE id = :id FOR UPDATE"
SQL_JOBS = "SELECT * FROM jobs ORDER BY seq LIMIT :limit OFFSET :offset"
SQL_JOBS_BY_STATUS = (
    "SELECT * FROM jobs WHERE status = :status ORDER BY seq LIMIT :limit OFFSET :offset"
)
SQL_JOBS_COUNT = "SELECT count(*) FROM jobs"
SQL_JOBS_COUNT_BY_STATUS = "SELECT count(*) FROM jobs WHERE status = :status"
SQL_CANDIDATES = (
    "SELECT seq, id, status, attempt, priority, timeout_s, requirements, affinity, "
    "anti_affinity, req_gpu, created_at, not_before FROM jobs "
    "WHERE status = 'pending' AND not_before <= :now "
    "AND req_min_ram <= :ram AND req_min_threads <= :threads {gpu} {after} "
    "ORDER BY priority DESC, seq LIMIT :batch {lock}"
)
SQL_AFTER = "AND (priority < :last_priority OR (priority = :last_priority AND seq > :last_seq))"
SQL_CANCEL_FLAG = "UPDATE jobs SET cancel_requested = TRUE WHERE seq = :seq RETURNING *"
SQL_EXPIRED = (
    "SELECT * FROM jobs WHERE status = 'running' "
    "AND (lease_expires_at < :now OR deadline_at < :now) {lock}"
)
SQL_TOP_PRIORITY = "SELECT max(priority) FROM jobs WHERE status = 'pending'"
SQL_AGE = (
    "UPDATE jobs SET priority = priority + 1, aged_at = :now WHERE status = 'pending' "
    "AND priority < :top AND aged_at <= :cut"
)
SQL_UNSCHEDULABLE_KINDS = (
    "SELECT DISTINCT requirements FROM jobs WHERE unschedulable_reason IS NOT NULL"
)
SQL_NOW_SCHEDULABLE = (
    "UPDATE jobs SET unschedulable_reason = NULL "
    "WHERE unschedulable_reason IS NOT NULL AND requirements = :requirements"
)
# Nodes that pass the requirements SQL can check; the rest is checked in Python on these.
SQL_CAPABLE_NODES = (
    "SELECT * FROM nodes WHERE ram_bytes >= :ram AND cpu_threads >= :threads "
    "AND (has_gpu = TRUE OR :gpu = FALSE) LIMIT 2000"
)
SQL_SAMPLE_NODES = "SELECT * FROM nodes ORDER BY registered_at LIMIT 5"
SQL_OFFLINE = (
    "UPDATE nodes SET online = FALSE WHERE online = TRUE AND last_heartbeat < :cut RETURNING id"
)

SQL_ATTEMPT_INSERT = (
    "INSERT INTO attempts (job_id, attempt, node_id, started_at) "
    "VALUES (:job_id, :attempt, :node_id, :now)"
)
SQL_ATTEMPT_CLOSE = (
    "UPDATE attempts SET ended_at = :now, outcome = :outcome, error = :error "
    "WHERE job_id = :job_id AND attempt = :attempt AND ended_at IS NULL"
)
SQL_ATTEMPTS = "SELECT * FROM attempts WHERE job_id = :job_id ORDER BY attempt"
SQL_FAILED_ATTEMPTS = (
    "SELECT attempt, error FROM attempts WHERE job_id = :job_id AND outcome = 'failed' "
    "ORDER BY attempt"
)

SQL_RESULT_OF = "SELECT status, node_id FROM results WHERE job_id = :job_id AND attempt = :attempt"
SQL_RESULT_INSERT = (
    "INSERT INTO results (job_id, attempt, node_id, status, metrics, analyzer_output, error, "
    "completed_at, received_at) VALUES (:job_id, :attempt, :node_id, :status, :metrics, "
    ":analyzer_output, :error, :completed_at, :received_at)"
)
SQL_RESULT_LATEST = "SELECT * FROM results WHERE job_id = :job_id ORDER BY attempt DESC LIMIT 1"
SQL_RESULTS = (
    "SELECT * FROM results ORDER BY received_at, job_id, attempt LIMIT :limit OFFSET :offset"
)
SQL_RESULTS_OF = (
    "SELECT * FROM results WHERE job_id = :job_id ORDER BY attempt LIMIT :limit OFFSET :offset"
)


class SqlStore:
    """Store over SQL. `url`: `memory`, `sqlite:///PATH` or `postgresql://...`."""

    def __init__(self, url: str, policy: SchedulingPolicy | None = None) -> None:
        self.policy = policy or SchedulingPolicy()
        self.url = url
        self.db = Database(url)
        self._for_update = not self.db.is_sqlite
        try:
            applied = migrate(self.db, time.time())
        except BaseException:
            self.db.close()
            raise
        if applied:
            log.info("schema migrated to version %s (%s)", applied[-1], redact_url(url))

    def close(self) -> None:
        self.db.close()

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
            "labels": _dumps(registration.labels),
            "hostname": registration.hostname,
            "ffmpeg_version": registration.ffmpeg_version,
            "encoders": _dumps(registration.encoders),
            "gpus": _dumps(registration.gpus),
            "slots": registration.slots,
            "online": True,
            "last_heartbeat": now,
        }
        with self.db.transaction() as tx:
            row = None
            if registration.id is not None:
                row = tx.one(SQL_NODE_UPDATE, {**values, "id": registration.id})
            if row is not None:
                # A known node re-registers: its agent restarted, and whatever it was running
                # died with it.
                for job in tx.all(SQL_RUNNING_ROWS, {"node": row["id"]}):
                    self._end_attempt(tx, job, now, "agent restarted", retryable=True)
            else:
                node_id = registration.id or str(uuid.uuid4())
                row = tx.one(SQL_NODE_INSERT, {**values, "id": node_id, "registered_at": now})
                assert row is not None
            self._clear_unschedulable(tx, _traits_from_row(row))
            return _node_from_row(row, [])

    def get_node(self, node_id: str) -> Node:
        with self.db.transaction() as tx:
            return self._node(tx, node_id)

    def list_nodes(self) -> list[Node]:
        with self.db.transaction() as tx:
            running = _group(tx.all(SQL_RUNNING))
            return [_node_from_row(row, running.get(row["id"], [])) for row in tx.all(SQL_NODES)]

    def set_draining(self, node_id: str, draining: bool) -> Node:
        with self.db.transaction() as tx:
            if tx.run(SQL_NODE_DRAIN, {"draining": draining, "id": node_id}) == 0:
                raise NotFound(f"node {node_id} not found")
            return self._node(tx, node_id)

    def heartbeat(self, node_id: str, beat: Heartbeat, now: float) -> HeartbeatReply:
        with self.db.transaction() as tx:
            node = tx.one(SQL_NODE_BEAT, {"now": now, "id": node_id})
            if node is None:
                raise NotFound(f"node {node_id} not found")
            lease = now + self.policy.node_timeout_s
            mine = {row["id"]: row for row in tx.all(SQL_RENEW, {"lease": lease, "node": node_id})}
            directives: list[Directive] = []
            reports = beat.jobs or []
            if beat.jobs is not None:
                self._hand_back_unreported(tx, mine, {r.job_id for r in reports}, now)
            for report in reports:
                row = mine.get(report.job_id)
                if row is None or (report.attempt is not None and report.attempt != row["attempt"]):
                    directives.append(
                        Directive(
                            action="abandon",
                            job_id=report.job_id,
                            attempt=report.attempt,
                            reason="this attempt is no longer yours (it ended or was reassigned)",
                        )
                    )
                elif report.progress is not None:
                    progress = msgspec.structs.replace(report.progress, updated_at=rfc3339(now))
                    tx.run(SQL_PROGRESS, {"progress": _dumps(progress), "id": report.job_id})
            directives.extend(
                Directive(
                    action="cancel",
                    job_id=row["id"],
                    attempt=row["attempt"],
                    reason="canceled by a user",
                )
                for row in mine.values()
                if row["cancel_requested"]
            )
            status = _node_status(True, bool(node["draining"]), node["slots"], len(mine))
            return HeartbeatReply(node_status=status, directives=directives)

    def _hand_back_unreported(
        self, tx: Tx, mine: dict[str, Row], reported: set[str], now: float
    ) -> None:
        """Requeue attempts the agent does not know it has, once they are older than the grace
        that covers a claim reply still on its way to the agent."""
        for job_id, row in list(mine.items()):
            if job_id in reported or row["started_at"] > now - LOST_CLAIM_GRACE_S:
                continue
            full = tx.one(SQL_JOB_GET, {"id": job_id})
            assert full is not None
            log.warning("job %s: node %s does not run it; queued again", job_id, full["node_id"])
            self._close_attempt(tx, full, now, "released", "the agent never received the job")
            self._requeue(
                tx, full, Event.REQUEUE, now, not_before=now, retry_count=full["retry_count"]
            )
            del mine[job_id]

    # ------------------------------------------------------------------ jobs

    def create_jobs(self, requests: Sequence[JobRequest], now: float) -> list[Job]:
        rows = [self._job_values(req, now) for req in requests]
        with self.db.transaction() as tx:
            reasons: dict[str, str | None] = {}
            for row, req in zip(rows, requests, strict=True):
                if req.requirements is None:
                    continue
                if row["requirements"] not in reasons:
                    reasons[row["requirements"]] = self._unschedulable(tx, req.requirements)
                row["unschedulable_reason"] = reasons[row["requirements"]]
            tx.many(SQL_JOB_INSERT, rows)
        return [_job_from_row(row) for row in rows]

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
        timeout = min(req.timeout_s or default_timeout_s(spec), self.policy.max_job_timeout_s)
        reqs = req.requirements
        return {
            "id": str(uuid.uuid4()),
            "scenario": req.scenario,
            "confidence": req.confidence,
            "parameters": _dumps(req.parameters),
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
            "requirements": _dumps(reqs),
            "req_gpu": scheduling.needs_gpu(reqs),
            "req_min_ram": reqs.min_ram_bytes if reqs else 0,
            "req_min_threads": reqs.min_cpu_threads if reqs else 0,
            "affinity": _dumps(req.affinity),
            "anti_affinity": _dumps(req.anti_affinity),
            "timeout_s": timeout,
            "max_attempts": req.max_attempts,
            "attempt": 0,
            "not_before": not_before,
            "lease_expires_at": None,
            "deadline_at": None,
            "progress": None,
            "cancel_requested": False,
            "unschedulable_reason": None,
        }

    def get_job(self, job_id: str) -> JobDetail:
        with self.db.transaction() as tx:
            row = tx.one(SQL_JOB_GET, {"id": job_id})
            if row is None:
                raise NotFound(f"job {job_id} not found")
            history = [
                Attempt(
                    attempt=a["attempt"],
                    node_id=a["node_id"],
                    started_at=rfc3339(a["started_at"]),
                    ended_at=rfc3339(a["ended_at"]),
                    outcome=a["outcome"],
                    error=a["error"],
                )
                for a in tx.all(SQL_ATTEMPTS, {"job_id": job_id})
            ]
            stored = tx.one(SQL_RESULT_LATEST, {"job_id": job_id})
            return JobDetail(
                job=_job_from_row(row),
                attempts=history,
                result=_result_from_row(stored) if stored is not None else None,
            )

    def list_jobs(
        self, status: str | None, limit: int | None, offset: int
    ) -> tuple[list[Job], int]:
        page = {"limit": NO_LIMIT if limit is None else limit, "offset": offset, "status": status}
        with self.db.transaction() as tx:
            if status is None:
                total = tx.scalar(SQL_JOBS_COUNT)
                rows = tx.all(SQL_JOBS, page)
            else:
                total = tx.scalar(SQL_JOBS_COUNT_BY_STATUS, page)
                rows = tx.all(SQL_JOBS_BY_STATUS, page)
            return [_job_from_row(row) for row in rows], int(total)

    def claim(self, node_id: str, now: float) -> Job | None:
        with self.db.transaction() as tx:
            node = tx.one(SQL_NODE_GET, {"id": node_id})
            if node is None:
                raise NotFound(f"node {node_id} not found; register first")
            return self._claim(tx, node, now)

    def _claim(self, tx: Tx, node: Row, now: float) -> Job | None:
        node_id = node["id"]
        if node["draining"]:
            return None
        slots = node["slots"]  # None: a v1.0 client, which the seed never limited
        if slots is not None and tx.scalar(SQL_BUSY, {"node": node_id, "slots": slots}):
            return None
        chosen = self._pick(tx, node, now)
        if chosen is None:
            return None
        return self._start_attempt(tx, chosen, node_id, now)

    def _pick(self, tx: Tx, node: Row, now: float) -> Row | None:
        """Best pending job this node may run: highest priority, then oldest.

        Hard limits that map to columns (GPU, RAM, threads) filter in SQL; the rest is checked
        here, walking the queue in batches, so a job this node cannot run never blocks the jobs
        behind it. A GPU node looks at GPU work first.
        """
        me = _traits_from_row(node)
        idle: list[scheduling.NodeTraits] | None = None
        if not node["has_gpu"]:
            passes = ["AND req_gpu = FALSE"]
        else:
            passes = ["AND req_gpu = TRUE", "AND req_gpu = FALSE"]
        params: dict[str, Any] = {
            "now": now,
            "ram": node["ram_bytes"],
            "threads": node["cpu_threads"],
            "batch": CLAIM_FIRST_BATCH,
        }
        for gpu in passes:
            after = ""
            params["batch"] = CLAIM_FIRST_BATCH
            while True:
                sql = SQL_CANDIDATES.replace("{gpu}", gpu).replace("{after}", after)
                batch = tx.all(sql if self._for_update else sql.replace("{lock}", ""), params)
                for row in batch:
                    req = _requirements(row["requirements"])
                    if scheduling.unmet(req, me):
                        continue
                    waited = now - max(row["created_at"], row["not_before"])
                    if waited < scheduling.PREFERENCE_WINDOW_S and _has_preference(row, me):
                        if idle is None:
                            idle = self._idle_traits(tx, now)
                        affinity = _loads(row["affinity"])
                        anti = _loads(row["anti_affinity"])
                        if scheduling.should_defer(req, affinity, anti, waited, me, idle):
                            continue
                    return row
                if len(batch) < params["batch"]:
                    break
                after = SQL_AFTER
                params["batch"] = CLAIM_BATCH
                params["last_priority"] = batch[-1]["priority"]
                params["last_seq"] = batch[-1]["seq"]
        return None

    def _start_attempt(self, tx: Tx, row: Row, node_id: str, now: float) -> Job:
        attempt = row["attempt"] + 1
        claimed = transition(
            tx,
            row,
            Event.CLAIM,
            node_id=node_id,
            attempt=attempt,
            now=now,
            lease=now + self.policy.node_timeout_s,
            deadline=now + row["timeout_s"] + DEADLINE_SLACK_S,
        )
        tx.run(
            SQL_ATTEMPT_INSERT,
            {"job_id": row["id"], "attempt": attempt, "node_id": node_id, "now": now},
        )
        return _job_from_row(claimed)

    def submit_result(self, result: ResultSubmission, now: float) -> ResultOutcome:
        event = RESULT_EVENTS[result.status]
        with self.db.transaction() as tx:
            row = self._locked_job(tx, result.job_id)
            attempt = result.attempt if result.attempt is not None else row["attempt"]
            key = {"job_id": row["id"], "attempt": attempt}
            if (
                not allows(row["status"], event)
                or row["attempt"] != attempt
                or row["node_id"] != result.node_id
            ):
                # Results are stored only while their attempt is current, so a repeat of one
                # that was accepted always lands here.
                stored = tx.one(SQL_RESULT_OF, key)
                if stored is not None:
                    if stored["status"] == result.status and stored["node_id"] == result.node_id:
                        return ResultOutcome(
                            job=_job_from_row(row),
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
            completed_at = now
            if result.completed_at:
                try:
                    completed_at = parse_rfc3339(result.completed_at)
                except ValueError:
                    raise InvalidRequest(
                        f"completed_at {result.completed_at!r} is not an RFC 3339 time"
                    ) from None
            tx.run(
                SQL_RESULT_INSERT,
                {
                    **key,
                    "node_id": result.node_id,
                    "status": result.status,
                    "metrics": _dumps(result.metrics),
                    "analyzer_output": _dumps(result.analyzer_output),
                    "error": result.error,
                    "completed_at": completed_at,
                    "received_at": now,
                },
            )
            if event is Event.COMPLETE:
                self._close_attempt(tx, row, now, "completed", None)
                job = self._finish(tx, row, event, now, None)
            elif event is Event.ABORT:
                error = result.error or "canceled"
                self._close_attempt(tx, row, now, "canceled", error)
                job = self._finish(tx, row, event, now, error)
            else:
                error = result.error or "failed"
                job = self._end_attempt(tx, row, now, error, retryable=result.retryable)
            return ResultOutcome(job=job, next_job=self._claim_next(tx, result, now))

    def _claim_next(self, tx: Tx, result: ResultSubmission, now: float) -> Job | None:
        """The sender's next job, in the result's own transaction (one round trip per job).
        An unknown node gets none rather than an error: its result is already stored."""
        if not result.claim_next:
            return None
        node = tx.one(SQL_NODE_GET, {"id": result.node_id})
        return None if node is None else self._claim(tx, node, now)

    def release(self, job_id: str, node_id: str, attempt: int, reason: str, now: float) -> Job:
        with self.db.transaction() as tx:
            row = self._locked_job(tx, job_id)
            if (
                not allows(row["status"], Event.REQUEUE)
                or row["attempt"] != attempt
                or row["node_id"] != node_id
            ):
                raise Conflict(f"attempt {attempt} of job {job_id} is not running on {node_id}")
            self._close_attempt(tx, row, now, "released", reason)
            return self._requeue(
                tx, row, Event.REQUEUE, now, not_before=now, retry_count=row["retry_count"]
            )

    def cancel(self, job_id: str, now: float) -> Job:
        """Pending: the `cancel` event at once. Running: flagged, and the agent's report
        of the stopped attempt is the `abort` event."""
        with self.db.transaction() as tx:
            row = self._locked_job(tx, job_id)
            if allows(row["status"], Event.CANCEL):
                return self._finish(tx, row, Event.CANCEL, now, "canceled by a user")
            if allows(row["status"], Event.ABORT):
                flagged = tx.one(SQL_CANCEL_FLAG, {"seq": row["seq"]})
                assert flagged is not None
                return _job_from_row(flagged)
            raise IllegalTransition(f"job {job_id} is already {row['status']}")

    def retry(self, job_id: str, now: float) -> Job:
        with self.db.transaction() as tx:
            row = self._locked_job(tx, job_id)
            if not allows(row["status"], Event.RETRY):
                raise IllegalTransition(
                    f"only {describe_sources(Event.RETRY)} jobs can be retried; "
                    f"job is {row['status']}"
                )
            return self._requeue(tx, row, Event.RETRY, now, not_before=now, retry_count=0)

    def list_results(
        self, job_id: str | None, limit: int | None, offset: int
    ) -> list[StoredResult]:
        page = {"limit": NO_LIMIT if limit is None else limit, "offset": offset, "job_id": job_id}
        with self.db.transaction() as tx:
            rows = tx.all(SQL_RESULTS if job_id is None else SQL_RESULTS_OF, page)
            return [_result_from_row(row) for row in rows]

    # ------------------------------------------------------------------ reaper

    def reap(self, now: float) -> ReapReport:
        report = ReapReport()
        with self.db.transaction() as tx:
            cut = now - self.policy.node_timeout_s
            report.offline_nodes = [row["id"] for row in tx.all(SQL_OFFLINE, {"cut": cut})]
            for row in tx.all(SQL_EXPIRED, {"now": now}):
                if row["deadline_at"] is not None and row["deadline_at"] < now:
                    reason = f"timed out after {row['timeout_s']:g} s"
                else:
                    reason = f"node {row['node_id']} stopped sending heartbeats"
                job = self._end_attempt(tx, row, now, reason, retryable=True)
                if job.status == JobStatus.PENDING:
                    report.requeued_jobs.append(job.id)
                    report.retry_at.append(parse_rfc3339(job.not_before or ""))
                else:
                    report.failed_jobs.append(job.id)
            report.aged_jobs = self._age(tx, now)
        return report

    def _age(self, tx: Tx, now: float) -> int:
        """Aging: a pending job gains one priority step per `aging_interval_s` it waits, but only
        while something better is queued, so a stream of high-priority work cannot starve it."""
        top = tx.scalar(SQL_TOP_PRIORITY)
        if top is None:
            return 0
        cut = now - self.policy.aging_interval_s
        return tx.run(SQL_AGE, {"now": now, "top": top, "cut": cut})

    # ------------------------------------------------------------------ helpers

    def _locked_job(self, tx: Tx, job_id: str) -> Row:
        row = tx.one(SQL_JOB_LOCK if self._for_update else SQL_JOB_GET, {"id": job_id})
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return row

    def _end_attempt(self, tx: Tx, row: Row, now: float, reason: str, *, retryable: bool) -> Job:
        """A running attempt failed or was lost: retry with backoff, or fail for good."""
        failures = row["retry_count"] + 1
        decision = retry.decide(
            failures,
            row["max_attempts"],
            retryable,
            now,
            self.policy.backoff_base_s,
            self.policy.backoff_cap_s,
        )
        self._close_attempt(tx, row, now, "failed", reason)
        if decision.not_before is not None:
            log.info("job %s attempt %s ended (%s); retrying", row["id"], row["attempt"], reason)
            return self._requeue(
                tx,
                row,
                Event.REQUEUE,
                now,
                not_before=decision.not_before,
                retry_count=failures,
                error=reason,
            )
        summary = "; ".join(
            f"attempt {a['attempt']}: {a['error']}"
            for a in tx.all(SQL_FAILED_ATTEMPTS, {"job_id": row["id"]})
        )
        log.info("job %s failed: %s", row["id"], reason)
        return self._finish(tx, row, Event.FAIL, now, summary or reason, failures)

    def _close_attempt(self, tx: Tx, row: Row, now: float, outcome: str, error: str | None) -> None:
        tx.run(
            SQL_ATTEMPT_CLOSE,
            {
                "now": now,
                "outcome": outcome,
                "error": error,
                "job_id": row["id"],
                "attempt": row["attempt"],
            },
        )

    def _finish(
        self,
        tx: Tx,
        row: Row,
        event: Event,
        now: float,
        error: str | None,
        retry_count: int | None = None,
    ) -> Job:
        """Move the job to the final status of `event` (complete, fail, cancel, abort)."""
        count = row["retry_count"] if retry_count is None else retry_count
        return _job_from_row(transition(tx, row, event, now=now, error=error, retry_count=count))

    def _requeue(
        self,
        tx: Tx,
        row: Row,
        event: Event,
        now: float,
        *,
        not_before: float,
        retry_count: int,
        error: str | None = None,
    ) -> Job:
        """Queue the job again (`requeue` an ended attempt, or a user's `retry`) at its own
        priority, claimable from `not_before`."""
        changed = transition(
            tx, row, event, now=now, not_before=not_before, retry_count=retry_count, error=error
        )
        return _job_from_row(changed)

    def _node(self, tx: Tx, node_id: str) -> Node:
        row = tx.one(SQL_NODE_GET, {"id": node_id})
        if row is None:
            raise NotFound(f"node {node_id} not found")
        running = _group(tx.all(SQL_RUNNING_OF, {"node": node_id}))
        return _node_from_row(row, running.get(node_id, []))

    def _idle_traits(self, tx: Tx, now: float) -> list[scheduling.NodeTraits]:
        """Online, undrained nodes with a free slot: the candidates a preference may wait for."""
        running = _group(tx.all(SQL_RUNNING))
        since = now - self.policy.node_timeout_s
        return [
            _traits_from_row(row)
            for row in tx.all(SQL_ONLINE_NODES, {"since": since})
            if len(running.get(row["id"], [])) < (row["slots"] or 1)
        ]

    def _unschedulable(self, tx: Tx, req: Requirements) -> str | None:
        """Why no registered node could run a job with `req`, or None if one could.

        Informational only (claims never read it), so it is bounded: SQL narrows the fleet to
        nodes with enough RAM, threads and a GPU if needed, and at most 2,000 of those are
        checked for encoders, labels and GPU model.
        """
        params = {
            "ram": req.min_ram_bytes,
            "threads": req.min_cpu_threads,
            "gpu": scheduling.needs_gpu(req),
        }
        capable = tx.all(SQL_CAPABLE_NODES, params)
        if any(not scheduling.unmet(req, _traits_from_row(row)) for row in capable):
            return None  # stops at the first node that fits
        sample = capable[:5] or tx.all(SQL_SAMPLE_NODES)
        return scheduling.unschedulable_reason(req, [_traits_from_row(row) for row in sample])

    def _clear_unschedulable(self, tx: Tx, node: scheduling.NodeTraits) -> None:
        """A node joined or changed: jobs it can run are no longer unschedulable."""
        for kind in tx.all(SQL_UNSCHEDULABLE_KINDS):
            if not scheduling.unmet(_requirements(kind["requirements"]), node):
                tx.run(SQL_NOW_SCHEDULABLE, {"requirements": kind["requirements"]})


# ---------------------------------------------------------------------- rows -> models


def redact_url(url: str) -> str:
    """Hide a password in a database URL before it reaches a log line."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"


def _group(rows: list[Row]) -> dict[str, list[str]]:
    running: dict[str, list[str]] = {}
    for row in rows:
        running.setdefault(row["node_id"], []).append(row["id"])
    return running


def _requirements(raw: str | None) -> Requirements | None:
    return None if raw is None else _decode(raw, type=Requirements)


def _has_preference(row: Row, node: scheduling.NodeTraits) -> bool:
    no_labels = row["affinity"] == "{}" and row["anti_affinity"] == "{}"
    return not no_labels or (node.has_gpu and not row["req_gpu"])


def _traits_from_row(row: Row) -> scheduling.NodeTraits:
    gpus = _loads(row["gpus"])
    return scheduling.NodeTraits(
        node_id=row["id"],
        has_gpu=bool(row["has_gpu"]),
        gpu_names=[g.get("name", "") for g in gpus]
        or ([row["gpu_type"]] if row["gpu_type"] else []),
        encoders=frozenset(_loads(row["encoders"])),
        ram_bytes=row["ram_bytes"],
        cpu_threads=row["cpu_threads"],
        labels=_loads(row["labels"]),
    )


def _node_status(online: bool, draining: bool, slots: int | None, running: int) -> str:
    if not online:
        return NodeStatus.OFFLINE.value
    if draining:
        return NodeStatus.DRAINING.value
    if running and running >= (slots or 1):
        return NodeStatus.BUSY.value
    return NodeStatus.AVAILABLE.value


def _node_from_row(row: Row, running: list[str]) -> Node:
    return Node(
        id=row["id"],
        address=row["address"],
        type=row["type"],
        cpu_threads=row["cpu_threads"],
        cpu_model=row["cpu_model"],
        has_gpu=bool(row["has_gpu"]),
        gpu_type=row["gpu_type"],
        ram_bytes=row["ram_bytes"],
        labels=_loads(row["labels"]),
        status=_node_status(bool(row["online"]), bool(row["draining"]), row["slots"], len(running)),
        last_heartbeat=rfc3339(row["last_heartbeat"]),
        registered_at=rfc3339(row["registered_at"]),
        current_job_id=running[0] if running else None,
        hostname=row["hostname"],
        ffmpeg_version=row["ffmpeg_version"],
        encoders=_loads(row["encoders"]),
        gpus=_decode(row["gpus"], type=list[GpuDescription]),
        slots=row["slots"],
        draining=bool(row["draining"]),
        running_job_ids=running,
    )


def _job_from_row(row: Mapping[str, Any]) -> Job:
    progress = row["progress"]
    return Job(
        id=row["id"],
        scenario=row["scenario"],
        confidence=row["confidence"],
        parameters=_loads(row["parameters"]),
        status=row["status"],
        node_id=row["node_id"],
        created_at=rfc3339(row["created_at"]),
        started_at=rfc3339(row["started_at"]),
        completed_at=rfc3339(row["completed_at"]),
        retry_count=row["retry_count"],
        error=row["error"],
        priority=row["priority"],
        requirements=_requirements(row["requirements"]),
        affinity=_loads(row["affinity"]),
        anti_affinity=_loads(row["anti_affinity"]),
        timeout_s=row["timeout_s"],
        max_attempts=row["max_attempts"],
        attempt=row["attempt"],
        not_before=rfc3339(row["not_before"]),
        progress=None if progress is None else _decode(progress, type=Progress),
        cancel_requested=bool(row["cancel_requested"]),
        unschedulable_reason=row["unschedulable_reason"],
    )


def _result_from_row(row: Row) -> StoredResult:
    return StoredResult(
        job_id=row["job_id"],
        attempt=row["attempt"],
        node_id=row["node_id"],
        status=row["status"],
        metrics=_loads(row["metrics"]),
        analyzer_output=_loads(row["analyzer_output"]),
        error=row["error"],
        completed_at=rfc3339(row["completed_at"]),
        received_at=rfc3339(row["received_at"]),
    )
