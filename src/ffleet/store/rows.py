"""Database rows into API structs, and the JSON text columns both ways.

Times stay epoch floats (wrapped as Timestamp, which costs no parsing); they become RFC 3339
text only when the HTTP layer encodes a reply. Inside JSON columns (a job's progress) they are
stored as epoch numbers; text written by release 0.1.0 still reads back.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import msgspec

from ffleet import scheduling
from ffleet.models import (
    Attempt,
    Efficiency,
    GpuDescription,
    Job,
    Node,
    Progress,
    Requirements,
    ScenarioReading,
    StoredResult,
    Timestamp,
    as_timestamp,
    decode_hook,
)
from ffleet.scenarios import scenario_reading
from ffleet.states import JobStatus, NodeStatus
from ffleet.store.base import JobAfterResult
from ffleet.store.db import Row


def _epoch(value: object) -> object:
    if isinstance(value, Timestamp):
        return float(value)
    raise NotImplementedError(f"cannot store {type(value).__name__}")


_encode = msgspec.json.Encoder(enc_hook=_epoch).encode
_decode = msgspec.json.decode


def dumps(value: Any) -> str | None:
    return None if value is None else _encode(value).decode()


def loads(text: str | None) -> Any:
    if text is None:
        return None
    if text == "{}":  # most labels, affinities and refused-node lists are empty
        return {}
    if text == "[]":
        return []
    return _decode(text)


@functools.lru_cache(maxsize=1024)
def _understood(scenario: str) -> ScenarioReading | None:
    """A job's `understood`, once per scenario name (every job of a matrix repeats a few)."""
    return scenario_reading(scenario)


def requirements(raw: str | None) -> Requirements | None:
    return None if raw is None else _decode(raw, type=Requirements)


def _progress(raw: str | None) -> Progress | None:
    return None if raw is None else _decode(raw, type=Progress, dec_hook=decode_hook)


def group_running(rows: list[Row]) -> dict[str, list[str]]:
    """`(node_id, id)` rows of running jobs -> job ids per node."""
    running: dict[str, list[str]] = {}
    for row in rows:
        running.setdefault(row["node_id"], []).append(row["id"])
    return running


def node_status(
    online: bool, draining: bool, slots: int | None, running: int, problem: str | None = None
) -> str:
    if not online:
        return NodeStatus.OFFLINE.value
    if problem:
        return NodeStatus.UNHEALTHY.value
    if draining:
        return NodeStatus.DRAINING.value
    if running and running >= (slots or 1):
        return NodeStatus.BUSY.value
    return NodeStatus.AVAILABLE.value


# The node columns a node's traits are made of (every read that feeds traits_from_row has them).
TRAIT_COLUMNS = (
    "id",
    "has_gpu",
    "gpus",
    "gpu_type",
    "encoders",
    "ram_bytes",
    "cpu_threads",
    "labels",
    "ffmpeg_sha256",
    "ffmpeg_version",
)


_trait_values = operator.itemgetter(*TRAIT_COLUMNS)  # the cache key, as one tuple built in C


def traits_from_row(row: Row) -> scheduling.NodeTraits:
    """A node's traits, decoded once per distinct set of its trait columns: a claim reads its
    node's row every time, and the three JSON lists in it change only when it registers."""
    return _traits(_trait_values(row))


@functools.lru_cache(maxsize=1024)  # a claiming fleet's nodes; ~1 KiB each
def _traits(values: tuple[Any, ...]) -> scheduling.NodeTraits:
    (
        node_id,
        has_gpu,
        gpus_text,
        gpu_type,
        encoders,
        ram_bytes,
        cpu_threads,
        labels,
        sha,
        version,
    ) = values
    gpus = loads(gpus_text)
    return scheduling.NodeTraits(
        node_id=node_id,
        has_gpu=bool(has_gpu),
        gpu_names=[g.get("name", "") for g in gpus] or ([gpu_type] if gpu_type else []),
        encoders=frozenset(loads(encoders)),
        ram_bytes=ram_bytes,
        cpu_threads=cpu_threads,
        labels=loads(labels),
        ffmpeg_sha256=sha,
        ffmpeg_version=version,
    )


def node_from_row(row: Row, running: list[str]) -> Node:
    return Node(
        id=row["id"],
        address=row["address"],
        type=row["type"],
        cpu_threads=row["cpu_threads"],
        cpu_model=row["cpu_model"],
        has_gpu=bool(row["has_gpu"]),
        gpu_type=row["gpu_type"],
        ram_bytes=row["ram_bytes"],
        labels=loads(row["labels"]),
        status=node_status(
            bool(row["online"]), bool(row["draining"]), row["slots"], len(running), row["problem"]
        ),
        last_heartbeat=Timestamp(row["last_heartbeat"]),
        registered_at=Timestamp(row["registered_at"]),
        current_job_id=running[0] if running else None,
        hostname=row["hostname"],
        ffmpeg_version=row["ffmpeg_version"],
        encoders=loads(row["encoders"]),
        gpus=_decode(row["gpus"], type=list[GpuDescription]),
        slots=row["slots"],
        draining=bool(row["draining"]),
        running_job_ids=running,
        problem=row["problem"],
        ffmpeg_sha256=row["ffmpeg_sha256"],
        ffmpeg_configuration=row["ffmpeg_configuration"],
    )


def job_from_row(row: Row) -> Job:
    """A job's API struct from its row: every result decodes two (the finished job and the
    next one claimed), so the columns that are usually null or empty skip the decoder.

    At most 14 keywords go into the call, the rest are set after it: past ~15, CPython builds
    a dict of the keywords and unpacks it again (CALL_FUNCTION_EX), 11 K of the 28 K
    instructions a job cost with all 26 in one call."""
    started, completed, progress = row["started_at"], row["completed_at"], row["progress"]
    reqs, affinity, anti = row["requirements"], row["affinity"], row["anti_affinity"]
    avoided = row["avoid_nodes"]
    job = Job(
        id=row["id"],
        scenario=row["scenario"],
        confidence=row["confidence"],
        parameters=_decode(row["parameters"]),
        status=row["status"],
        node_id=row["node_id"],
        created_at=Timestamp(row["created_at"]),
        started_at=None if started is None else Timestamp(started),
        completed_at=None if completed is None else Timestamp(completed),
        retry_count=row["retry_count"],
        error=row["error"],
        priority=row["priority"],
        timeout_s=row["timeout_s"],
        max_attempts=row["max_attempts"],
    )
    job.attempt = row["attempt"]
    job.not_before = Timestamp(row["not_before"])
    job.cancel_requested = bool(row["cancel_requested"])
    job.unschedulable_reason = row["unschedulable_reason"]
    job.understood = _understood(row["scenario"])
    job.stall_timeout_s = row["stall_timeout_s"]
    job.placement = row["placement"]
    # Left at their defaults (None, a new {} or []) when the column says so.
    if reqs is not None:
        job.requirements = _decode(reqs, type=Requirements)
    if affinity != "{}":
        job.affinity = _decode(affinity)
    if anti != "{}":
        job.anti_affinity = _decode(anti)
    if progress is not None:
        job.progress = _progress(progress)
    if avoided != "[]":
        job.avoid_nodes = _decode(avoided)
    return job


_PENDING = JobStatus.PENDING.value


def job_after_result(row: Row) -> JobAfterResult:
    """What a result's outcome tells of its job, from its row as written (or a Job's fields)."""
    status = row["status"]
    return JobAfterResult(
        id=row["id"],
        scenario=row["scenario"],
        status=status,
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        retry_count=row["retry_count"],
        error=row["error"],
        not_before=row["not_before"] if status == _PENDING else None,
    )


def attempt_from_row(row: Row) -> Attempt:
    return Attempt(
        attempt=row["attempt"],
        node_id=row["node_id"],
        started_at=Timestamp(row["started_at"]),
        ended_at=as_timestamp(row["ended_at"]),
        outcome=row["outcome"],
        error=row["error"],
    )


def efficiency_from_row(row: Row) -> Efficiency:
    return Efficiency(
        family=row["family"],
        samples=row["samples"],
        fps=row["fps"],
        cpu_seconds_per_frame=row["cpu_seconds_per_frame"],
        joules_per_frame=row["joules_per_frame"],
        updated_at=Timestamp(row["updated_at"]),
    )


def result_from_row(row: Row) -> StoredResult:
    return StoredResult(
        job_id=row["job_id"],
        attempt=row["attempt"],
        node_id=row["node_id"],
        status=row["status"],
        metrics=loads(row["metrics"]),
        analyzer_output=loads(row["analyzer_output"]),
        error=row["error"],
        completed_at=as_timestamp(row["completed_at"]),
        received_at=Timestamp(row["received_at"]),
    )
