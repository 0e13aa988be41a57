"""Job requests into the rows to insert and the jobs to return, validated before any write.

A batch (a benchmark matrix, a sweep) repeats a few distinct requests many times, so each
distinct request is validated once (scenario grammar, parameters, timeout, placement
requirements) and its created job decoded once; the other jobs of the batch copy that work and
differ only in their id (and carry their own request's dicts). Consecutive jobs of one
distinct request are inserted by one statement.
"""

from __future__ import annotations

import itertools
import operator
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ffleet import scheduling
from ffleet.models import Job, JobRequest, Requirements, parse_rfc3339, priority_value
from ffleet.scenarios import ScenarioError, build_job_spec, default_timeout_s
from ffleet.states import JobStatus
from ffleet.store.base import InvalidRequest
from ffleet.store.rows import dumps, job_from_row

_request_key = msgspec.json.Encoder().encode


@dataclass(eq=False)  # compared by identity: `runs` tells runs apart by it
class Checked:
    """One distinct request, validated: its row's columns but the id (the store sets
    `unschedulable_reason` once it knows), and what placement enforces. `job` is the first of
    its jobs as created, the pattern of the others."""

    columns: dict[str, Any]
    requirements: Requirements | None
    job: Job | None = None


@dataclass
class Pending:
    """One job to insert: its id, its request and its distinct request's checks."""

    id: str
    request: JobRequest
    checked: Checked = field(repr=False)

    @property
    def values(self) -> dict[str, Any]:
        """Its row, built when asked: a batch of 5,000 jobs holds one row at a time."""
        return {**self.checked.columns, "id": self.id}


def prepare(
    requests: Sequence[JobRequest], now: float, max_timeout_s: float, submitted_by: str | None
) -> list[Pending]:
    """Every request validated (InvalidRequest on the first bad one: nothing is written)."""
    checked: dict[bytes, Checked] = {}
    pending = []
    for job_id, request in zip(uuid4_texts(len(requests)), requests, strict=True):
        key = _request_key(request)
        found = checked.get(key)
        if found is None:
            found = checked[key] = _check(request, now, max_timeout_s, submitted_by)
        pending.append(Pending(job_id, request, found))
    return pending


_BYTES = bytes(range(256))
_VERSION_4 = bytes.maketrans(_BYTES, bytes(byte & 0x0F | 0x40 for byte in _BYTES))
_RFC_4122 = bytes.maketrans(_BYTES, bytes(byte & 0x3F | 0x80 for byte in _BYTES))
# Where the i-th hex digit of a UUID stands in its text (8-4-4-4-12 digits, dashes between).
_DIGIT_PLACES = [i + (i >= 8) + (i >= 12) + (i >= 16) + (i >= 20) for i in range(32)]


def uuid4_texts(count: int) -> list[str]:
    """`count` random version-4 UUIDs as `str(uuid.uuid4())` writes them, from one read of
    the system's randomness: `uuid.UUID` built per job cost ~2 us each, a twentieth of a
    batched job. The version and variant bits are set by translating bytes and the digits laid
    out by 32 strided copies, whatever `count`: ~3,000 instructions an id, where an f-string
    of five slices and a generator over the bytes took ~8,500."""
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_RFC_4122)
    digits = raw.hex().encode()
    text = bytearray(b"-" * (36 * count))
    for digit, place in enumerate(_DIGIT_PLACES):
        text[place::36] = digits[digit::32]
    joined = text.decode()
    return [joined[i : i + 36] for i in range(0, 36 * count, 36)]


_checked = operator.attrgetter("checked")


def inserts(pending: Sequence[Pending]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The statements that insert `pending` in its order, each with its rows of parameters.

    A run of consecutive jobs of one distinct request is one `jobs_insert_run`, its common
    columns bound once and its ids a JSON array (a batch of 100 alike jobs: ~38,000
    instructions a job fewer than `job_insert` per job); a job alone between others is one
    `job_insert` (`jobs_insert_run` for one job costs ~15,000 more). Consecutive statements
    of one name share an `executemany`."""
    statements: list[tuple[str, list[dict[str, Any]]]] = []
    name = ""
    rows: list[dict[str, Any]] = []
    for checked, run in itertools.groupby(pending, key=_checked):
        first, *others = run
        if not others:
            row, kind = first.values, "job_insert"
        else:
            ids = [first.id, *(job.id for job in others)]
            row, kind = {**checked.columns, "ids": dumps(ids)}, "jobs_insert_run"
        if kind != name:
            name, rows = kind, []
            statements.append((name, rows))
        rows.append(row)
    return statements


def created(pending: Sequence[Pending]) -> list[Job]:
    """The jobs as inserted (call after `unschedulable_reason` is set on their checks)."""
    jobs = []
    for job in pending:
        first = job.checked.job
        if first is None:
            first = job.checked.job = job_from_row(job.values)
            jobs.append(first)
            continue
        request = job.request
        jobs.append(
            msgspec.structs.replace(
                first,
                id=job.id,
                parameters=request.parameters,
                affinity=request.affinity,
                anti_affinity=request.anti_affinity,
                avoid_nodes=[],
            )
        )
    return jobs


def _check(req: JobRequest, now: float, max_timeout_s: float, submitted_by: str | None) -> Checked:
    try:
        spec = build_job_spec(req.scenario, req.parameters)
    except ScenarioError as exc:
        raise InvalidRequest(str(exc)) from None
    try:
        priority = priority_value(req.priority)
        not_before = parse_rfc3339(req.not_before) if req.not_before else now
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    timeout = min(req.timeout_s or default_timeout_s(spec), max_timeout_s)
    reqs = scheduling.placement_requirements(req.requirements, spec)
    # The row as job_from_row reads it; job_insert writes the constants of a new job
    # (status, node_id, attempt, ...) itself, and the two must agree.
    columns = {
        "scenario": req.scenario,
        "confidence": req.confidence,
        "parameters": dumps(req.parameters),
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
        "requirements": dumps(reqs),
        "req_gpu": scheduling.needs_gpu(reqs),
        "req_min_ram": reqs.min_ram_bytes if reqs else 0,
        "req_min_threads": reqs.min_cpu_threads if reqs else 0,
        "affinity": dumps(req.affinity),
        "anti_affinity": dumps(req.anti_affinity),
        "timeout_s": timeout,
        "max_attempts": req.max_attempts,
        "attempt": 0,
        "not_before": not_before,
        "lease_expires_at": None,
        "deadline_at": None,
        "progress": None,
        "cancel_requested": False,
        "unschedulable_reason": None,
        "submitted_by": submitted_by,
        "stall_timeout_s": req.stall_timeout_s,
        "placement": req.placement,
        "avoid_nodes": "[]",
    }
    return Checked(columns, reqs)
