"""The Store protocol: the only place where ffleet's state changes.

Every method is atomic: one transaction, or, on a SQLite master while it serves, one savepoint
in the transaction that the calls of one event-loop turn share and that is committed before
any of them returns (group_commit.py). The docstrings say what is atomic; the contract suite
in tests/contract proves each backend keeps those promises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec

from ffleet.audit import AuditEntry
from ffleet.models import (
    Efficiency,
    Explanation,
    Heartbeat,
    HeartbeatReply,
    Job,
    JobDetail,
    JobRequest,
    Node,
    NodeRegistration,
    Progress,
    ResultSubmission,
    StoredResult,
)
from ffleet.policy import SchedulingPolicy as SchedulingPolicy  # the store's input, re-exported
from ffleet.tokens import Credential

if TYPE_CHECKING:
    from ffleet.store.splits import SplitState

# What one reaper transaction ends at most: 100 failed attempts take ~7 ms here, so a fleet that
# vanished (20,000 leases) costs the event loop short pauses, not one of over a second.
REAP_BATCH = 100


class StoreError(Exception):
    """Base of every error a store raises on purpose; the message is shown to the user."""

    status_code = 400


class NotFound(StoreError):
    status_code = 404


class Conflict(StoreError):
    """The request is valid but the object is not in a state that allows it."""

    status_code = 409


class InvalidRequest(StoreError):
    status_code = 400


class IllegalTransition(Conflict):
    """A status change the state machine (ffleet.states) does not allow from the job's status."""


class StoreUnavailable(StoreError):
    """The database cannot serve now (disk full, read-only, connection lost, lock timeout):
    nothing is wrong with the request, so it is worth sending again later."""

    status_code = 503

    def __init__(self, cause: str) -> None:
        super().__init__(f"store unavailable: {cause}")
        self.cause = cause


class SchemaTooNew(StoreError, ValueError):
    """The database was migrated by a newer ffleet than this one. A ValueError too, so that
    `ffleet master` reports it as a bad `--store` like any other unusable store URL."""


class JobAfterResult(msgspec.Struct, kw_only=True):
    """The job as a result left it: what the master logs, counts and schedules from. Not the
    whole Job: a completed result reads the 9 of the job's 27 columns its check and writes
    need (all of them, and the Job built from them, cost it ~40 K instructions more)."""

    id: str
    scenario: str
    status: str
    started_at: float | None
    completed_at: float | None
    retry_count: int
    error: str | None
    not_before: float | None  # when a job queued again becomes claimable; None for any other


@dataclass
class ResultOutcome:
    """What `submit_result` did: `duplicate` when the same result had already been stored;
    `next_job` is the sender's next job when the submission asked for one (`claim_next`)."""

    job: JobAfterResult
    duplicate: bool = False
    next_job: Job | None = None


@dataclass
class ReapReport:
    """What one `reap` pass changed, for logs and for waking long-polling agents."""

    offline_nodes: list[str] = field(default_factory=list)
    requeued_jobs: list[str] = field(default_factory=list)
    failed_jobs: list[str] = field(default_factory=list)
    aged_jobs: int = 0

    retry_at: list[float] = field(default_factory=list)  # not_before of the requeued jobs
    more: bool = False  # the pass stopped at its bound: call `reap` again for the rest


@dataclass(frozen=True)
class JobTally:
    """How many jobs share a status and a submitted priority (`unschedulable`: pending jobs
    no registered node can run are counted apart)."""

    status: str
    priority: int
    unschedulable: bool
    jobs: int


class Store(Protocol):
    """Persistent registry of nodes, jobs, attempts and results."""

    # True when calls are cheap and serialised anyway (SQLite): run them on the event loop.
    # False (PostgreSQL): a call may wait on the network or a row lock; run it off the loop.
    inline: bool
    origin: str  # names this process in the hints it sends other masters

    def close(self) -> None: ...

    def check(self) -> None:
        """Prove the store answers and accepts a write; StoreUnavailable says why it cannot."""
        ...

    def register_node(self, registration: NodeRegistration, now: float) -> Node:
        """Add a node, or refresh a known one when `registration.id` names it.

        Re-registering a known id means the agent restarted: its running attempts end at once
        (requeued) because the FFmpeg processes behind them died with it.
        """
        ...

    def get_node(self, node_id: str) -> Node: ...

    def list_nodes(self) -> list[Node]: ...

    def node_efficiency(self, node_id: str) -> list[Efficiency]:
        """The node's rolling measured efficiency per scenario family (empty if none yet)."""
        ...

    def heartbeat(self, node_id: str, beat: Heartbeat, now: float) -> HeartbeatReply:
        """Atomically: mark the node alive, renew its running attempts' leases, store progress,
        and answer with directives (cancel requested; abandon work no longer this node's)."""
        ...

    def set_draining(self, node_id: str, draining: bool) -> Node: ...

    def create_jobs(
        self,
        requests: Sequence[JobRequest],
        now: float,
        *,
        submitted_by: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[Job]:
        """Insert all jobs in one transaction: all are queued or none. `submitted_by`: the
        id of the credential that asked (a submitter may cancel and retry only its own).

        With `idempotency_key`, a repeat of the same request by the same submitter (on any
        master, within a day) creates nothing and returns the jobs the first one created; the
        key used for other jobs or by another submitter is refused (Conflict)."""
        ...

    def get_job(self, job_id: str) -> JobDetail: ...

    def explain(self, job_id: str, now: float) -> Explanation:
        """Why the job is where it is; for a pending job, every node's first unmet need."""
        ...

    def list_jobs(
        self,
        status: str | None,
        limit: int | None,
        offset: int,
        *,
        scenario: str | None = None,
        node_id: str | None = None,
    ) -> tuple[list[Job], int]:
        """Jobs in submission order and the total matching every filter given (`node_id`:
        the node that runs or last ran the job)."""
        ...

    def tally_jobs(self) -> list[JobTally]:
        """Job counts read from the store, so every master reports the same, restart or not."""
        ...

    def pending_exceeds(self, bound: int) -> bool:
        """Whether more than `bound` jobs are pending: what a queue quota asks of every
        submission, so it reads at most `bound` + 1 index entries, and two while the pending
        jobs' sequence numbers span no more than `bound`."""
        ...

    def ids_with_prefix(self, kind: Literal["job", "node"], prefix: str, limit: int) -> list[str]:
        """Up to `limit` job or node ids that start with `prefix`, in id order."""
        ...

    def claim(self, node_id: str, now: float) -> Job | None:
        """Give the node the best pending job it can run, starting a new attempt.

        Atomic: under any number of concurrent claims a job goes to exactly one node.
        """
        ...

    def submit_result(self, result: ResultSubmission, now: float) -> ResultOutcome:
        """Store a result for the job's current attempt and move the job on.

        Refused (Conflict) unless the attempt is current and running on that node; the same
        result sent twice is stored once and reported as a duplicate. With `claim_next`, the
        node's next job is claimed in the same transaction.
        """
        ...

    def release(self, job_id: str, node_id: str, attempt: int, reason: str, now: float) -> Job:
        """Hand a running attempt back unfinished; the job is queued again at once and the
        attempt is not counted as a failure."""
        ...

    def cancel(self, job_id: str, now: float) -> Job:
        """Pending: canceled at once. Running: flagged; the agent is told on its next beat."""
        ...

    def retry(self, job_id: str, now: float) -> Job:
        """Queue a failed or canceled job again with a fresh attempt budget."""
        ...

    def list_results(
        self, job_id: str | None, limit: int | None, offset: int
    ) -> list[StoredResult]: ...

    def finished_between(
        self, since: float, until: float, limit: int, offset: int
    ) -> list[JobDetail]:
        """Finished jobs (completed, failed, canceled) completed in [since, until), in
        submission order, each with its attempts and latest result."""
        ...

    def delete_finished(self, job_ids: Sequence[str]) -> int:
        """Remove those of the jobs that are finished, with their attempts and results, in one
        transaction; returns how many were removed (a job that is not finished stays)."""
        ...

    def reap(self, now: float, limit: int = REAP_BATCH) -> ReapReport:
        """End what outlived its time: nodes past the node timeout go offline and their attempts
        end; attempts past their job timeout end; ended attempts retry with backoff or fail.
        Also ages long-waiting pending jobs. Safe to run concurrently from several masters.

        Each of those stops after `limit` (nodes, attempts, aged jobs) and the report says
        `more`: a long list is ended in short transactions, so that the master serves requests
        between them rather than wait for one pass over 20,000 leases."""
        ...

    # Several masters on one database: their clock, their leader, their hints to each other.

    def database_time(self) -> float:
        """The database's clock, in epoch seconds: the one time every master agrees on."""
        ...

    def take_leadership(self, holder: str, now: float, lease_s: float) -> str | None:
        """Take or renew the leader lease for `holder` until `now + lease_s`; returns who
        leads now (None: nobody, which a caller sees only if its own attempt failed)."""
        ...

    def resign_leadership(self, holder: str) -> None:
        """Give the lease up (clean shutdown) and tell the other masters at once."""
        ...

    def announce_work(self) -> None:
        """Tell the other masters that work may be claimable now (a backoff ended)."""
        ...

    def expire_idempotency_keys(self, now: float) -> int:
        """Forget idempotency keys older than a day; how many were removed."""
        ...

    # ------------------------------------------------------------------ credentials, audit

    def create_credential(
        self,
        role: str,
        name: str,
        now: float,
        *,
        expires_at: float | None = None,
        labels: Mapping[str, str] | None = None,
        one_time: bool = False,
    ) -> tuple[Credential, str]:
        """A new credential and its secret, returned this once and stored only as a hash."""
        ...

    def find_credential(self, secret: str) -> Credential | None: ...

    def list_credentials(self) -> list[Credential]: ...

    def count_credentials(self, now: float, role: str | None = None) -> int: ...

    def revoke_credential(self, credential_id: str, now: float) -> tuple[Credential, list[float]]:
        """Revoke at once; a node's credential also takes the node offline and ends its
        attempts (retried). Returns when each requeued job becomes claimable."""
        ...

    def enroll_node(
        self, registration: NodeRegistration, enrollment: Credential, now: float
    ) -> tuple[Node, Credential, str]:
        """Register a new node and issue its own credential in one transaction."""
        ...

    def job_submitter(self, job_id: str) -> str | None: ...

    def append_audit(self, entries: Sequence[AuditEntry]) -> None: ...

    def list_audit(
        self, since: float, actor: str | None, action: str | None, limit: int
    ) -> list[AuditEntry]:
        """Newest first."""
        ...

    def prune_audit(self, before: float) -> int: ...

    # ------------------------------------------------------------ split jobs (store/splits.py)

    def create_split(
        self,
        request: JobRequest,
        segment_s: float,
        now: float,
        submitted_by: str | None = None,
    ) -> Job:
        """Queue a split job's parent and start it at once, on no node: it runs over its
        children, which `plan_split` creates."""
        ...

    def running_splits(self) -> list[SplitState]:
        """Every running parent with its plan and its current attempt's children."""
        ...

    def plan_split(
        self,
        parent_id: str,
        attempt: int,
        plan: dict[str, Any],
        children: Sequence[JobRequest],
        now: float,
    ) -> list[Job]:
        """Record the plan and queue the children, atomically, once per parent attempt."""
        ...

    def record_split_progress(self, parent_id: str, progress: Progress) -> None: ...

    def finish_split(
        self,
        parent_id: str,
        attempt: int,
        status: str,
        metrics: dict[str, Any],
        error: str | None,
        now: float,
    ) -> Job:
        """End the parent (`completed`, `failed` or `canceled`) with its result."""
        ...

    def split_links(self, job_id: str) -> dict[str, Any]:
        """A parent's plan or a child's parent, for GET /jobs/{id}."""
        ...
