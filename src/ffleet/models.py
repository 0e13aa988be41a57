"""Wire models: what the HTTP API accepts and returns.

msgspec structs validate types at decode time (a wrong type becomes a 422 with the field's path)
and encode several times faster than dict-walking encoders, which matters on the master's hot
paths. Field names and shapes of the v1.0 API are kept exactly; everything ffleet adds is a new,
optional field with a safe default.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct, field

# Every bound below exists so that a value the store cannot hold (PostgreSQL INTEGER is 32-bit,
# BIGINT and SQLite INTEGER 64-bit, TEXT holds no NUL) is a 422 at the door, never a 500 later.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
NonNegInt = Annotated[int, Meta(ge=0, le=INT32_MAX)]
NonNegInt64 = Annotated[int, Meta(ge=0, le=INT64_MAX)]
Count = Annotated[int, Meta(ge=1, le=INT32_MAX)]
# Ids travel in URL paths and log lines: letters, digits and `._:-`, never `/`, `..` or NUL.
# `$(?!\n)`: Python's `$` also matches before a final newline, JSON Schema's does not.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$(?!\n)"
Id = Annotated[str, Meta(pattern=ID_PATTERN)]
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*$(?!\n)"  # no control characters
Name = Annotated[str, Meta(max_length=256, pattern=NAME_PATTERN)]
Text = Annotated[str, Meta(max_length=16_384, pattern=r"^[^\x00]*$")]  # errors: lines allowed
Labels = Annotated[dict[Name, Name], Meta(max_length=64)]
Names = Annotated[list[Name], Meta(max_length=512)]
NodeType = Literal["server", "desktop", "laptop"]
# `fastest`: prefer the idle node with the best measured fps for the job's scenario family;
# `energy`: the fewest joules per frame (CPU-seconds per frame where no energy was measured).
Placement = Literal["fastest", "energy"]
PRIORITY_NAMES: dict[str, int] = {"high": 10, "medium": 5, "low": 0}
MAX_PRIORITY = 1000


class Timestamp(float):
    """A time as epoch seconds that travels as RFC 3339 UTC text (what the v1.0 API sends).

    The store computes with it as the float it is; only JSON encoding and decoding see text,
    through `encode_hook` and `decode_hook`, which every encoder and decoder of these structs
    passes to msgspec. Formatting is msgspec's own (a datetime), as exact as `rfc3339`.
    """

    __slots__ = ()


def as_timestamp(epoch: float | None) -> Timestamp | None:
    return None if epoch is None else Timestamp(epoch)


# Times ffleet accepts: 1971 to the end of 9999 UTC, so that every accepted time, at any UTC
# offset, is one RFC 3339 and datetime can show (year 1 at +01:00 is year 0 in UTC).
MIN_EPOCH = 31_536_000.0  # 1971-01-01T00:00:00Z
END_EPOCH = 253_402_300_800.0  # 10000-01-01T00:00:00Z, excluded
# The same range as text, for the schema: 1972-9998 at any offset, 1971 and 9999 in UTC.
TIME_PATTERN = (
    r"^((197[2-9]|19[89][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9])-"
    r"|(1971|9999)-[0-9]{2}-[0-9]{2}T[^+-]*(Z|[+-]00:00)$)"
)


TimeText = Annotated[
    str, Meta(max_length=64, extra_json_schema={"format": "date-time", "pattern": TIME_PATTERN})
]


def in_range(epoch: float) -> bool:
    return MIN_EPOCH <= epoch < END_EPOCH  # also refuses NaN


def encode_hook(value: object) -> object:
    """msgspec `enc_hook`: a Timestamp goes out as RFC 3339 UTC, e.g. `2027-01-15T08:00:00Z`.

    A stored time outside the accepted range (written before it was checked) goes out as null,
    so one bad row cannot make every reply that lists it fail."""
    if isinstance(value, Timestamp):
        return _utc(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


@functools.lru_cache(maxsize=256)
def _utc(epoch: float) -> datetime | None:
    """A time as the datetime msgspec formats, once per distinct time: the jobs of a batch share
    their `created_at` and `not_before`, and each reply that carries one of them again (the
    claim's) formats the same time (datetime is immutable, so one serves every reply)."""
    return datetime.fromtimestamp(epoch, UTC) if in_range(epoch) else None


def decode_hook(kind: type, value: object) -> object:
    """msgspec `dec_hook`: a Timestamp comes in as RFC 3339 text (or epoch seconds)."""
    if kind is Timestamp:
        if isinstance(value, str):
            return Timestamp(parse_rfc3339(value))
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not in_range(value):
                raise ValueError(f"time {value!r} is outside 1971 to 9999")
            return Timestamp(value)
        raise TypeError(f"expected an RFC 3339 time, got {type(value).__name__}")
    raise NotImplementedError(f"cannot decode {kind.__name__}")


def rfc3339(epoch: float | None) -> str | None:
    """Format epoch seconds as RFC 3339 UTC (what the v1.0 Go master emitted)."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def parse_rfc3339(text: str) -> float:
    """Parse an RFC 3339 timestamp into epoch seconds; naive times are taken as UTC.

    Raises ValueError for text that is no time or a time outside 1971 to 9999 UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    epoch = value.timestamp()
    if not in_range(epoch):
        raise ValueError(f"time {text!r} is outside 1971 to 9999")
    return epoch


class GpuDescription(Struct):
    """One GPU of a node. NVIDIA GPUs are read from the NVIDIA driver; an Intel or AMD GPU is
    listed once a VAAPI or QSV encoder worked on its render node (`device`).

    `vendor` is None in registrations from before vendors were reported, which listed only
    NVIDIA GPUs; `driver` is the NVIDIA driver version, or the kernel driver of a render node.
    """

    index: NonNegInt = 0
    name: Name = ""
    memory_bytes: NonNegInt64 | None = None
    driver: Name | None = None
    vendor: Name | None = None  # "nvidia", "intel", "amd" or the PCI vendor id ("0x1af4")
    device: Name | None = None  # e.g. "/dev/dri/renderD128"; None for NVIDIA GPUs

    @property
    def is_nvidia(self) -> bool:
        """What a node's `has_gpu` counts (v1.0 meaning: an NVIDIA GPU was found)."""
        return self.vendor in (None, "nvidia")


class NodeRegistration(Struct, kw_only=True):
    """POST /nodes/register. v1.0 fields first; `id`, `slots` and the rest are ffleet additions."""

    address: Name = ""
    type: NodeType = "desktop"
    cpu_threads: NonNegInt = 0
    cpu_model: Name = ""
    has_gpu: bool = False
    gpu_type: Name | None = None
    ram_bytes: NonNegInt64 = 0
    labels: Labels = field(default_factory=dict)
    # ffleet additions
    id: Id | None = None  # re-register under a known id (agent restart); None = new node
    hostname: Name | None = None
    ffmpeg_version: Name | None = None
    encoders: Names = field(default_factory=list)
    gpus: Annotated[list[GpuDescription], Meta(max_length=64)] = field(default_factory=list)
    slots: Annotated[int, Meta(ge=1, le=256)] | None = None  # None = v1.0 client: no slot limit
    ffmpeg_sha256: str | None = None  # SHA-256 of the FFmpeg binary (hex)
    ffmpeg_configuration: str | None = None  # its `configuration:` line


class Node(Struct, kw_only=True):
    id: str
    address: str
    type: str
    cpu_threads: int
    cpu_model: str
    has_gpu: bool
    gpu_type: str | None
    ram_bytes: int
    labels: Labels
    status: str
    last_heartbeat: Timestamp | None
    registered_at: Timestamp | None
    current_job_id: str | None
    hostname: str | None = None
    ffmpeg_version: str | None = None
    encoders: list[str] = field(default_factory=list)
    gpus: list[GpuDescription] = field(default_factory=list)
    slots: int | None = None
    draining: bool = False
    running_job_ids: list[str] = field(default_factory=list)
    problem: str | None = None  # why the node is `unhealthy` (its agent's own report)
    ffmpeg_sha256: str | None = None
    ffmpeg_configuration: str | None = None
    efficiency: list[Efficiency] | None = None  # GET /nodes/{id} only


class Efficiency(Struct, kw_only=True):
    """A node's rolling measured efficiency for one scenario family (`codec/encoder/class`,
    e.g. `h264/libx264/720p`), from its completed, undisturbed results: each new result moves
    the figures EFFICIENCY_WEIGHT of the way towards it. None where never measured."""

    family: str
    samples: int
    fps: float | None
    cpu_seconds_per_frame: float | None
    joules_per_frame: float | None
    updated_at: Timestamp


class Requirements(Struct, kw_only=True, forbid_unknown_fields=True):
    """What a node must have to be given a job; every field is optional."""

    gpu: bool | None = None
    gpu_model: Name | None = None  # case-insensitive substring of the node's GPU name
    encoders: Names = field(default_factory=list)
    min_ram_bytes: NonNegInt64 = 0
    min_cpu_threads: NonNegInt = 0
    labels: Labels = field(default_factory=dict)
    ffmpeg_sha256: str | None = None  # the node's FFmpeg binary must have this SHA-256
    ffmpeg_version: str | None = None  # ... or report exactly this version


class JobRequest(Struct, kw_only=True):
    """POST /jobs. Only `scenario` is required, as in v1.0."""

    scenario: Name
    confidence: Name = "auto"
    parameters: Annotated[dict[Name, Any], Meta(max_length=32)] = field(default_factory=dict)
    priority: Annotated[int, Meta(ge=-INT32_MAX, le=INT32_MAX)] | Name = "medium"
    requirements: Requirements | None = None
    affinity: Labels = field(default_factory=dict)
    anti_affinity: Labels = field(default_factory=dict)
    not_before: TimeText | None = None
    timeout_s: Annotated[float, Meta(gt=0, le=365 * 86400)] | None = None
    max_attempts: Annotated[int, Meta(ge=1, le=100)] = 3
    stall_timeout_s: Annotated[float, Meta(gt=0)] | None = None  # None: from the scenario
    placement: Placement | None = None
    # Split the input (a blob) into segments of about this many seconds, cut at keyframes,
    # encoded as child jobs across the fleet and joined; the job itself is the parent.
    split_s: Annotated[float, Meta(ge=1, le=3600)] | None = None


class JobBatch(Struct, kw_only=True):
    """POST /jobs/batch: many jobs in one request, all accepted or none."""

    jobs: Annotated[list[JobRequest], Meta(min_length=1, max_length=10_000)]


class Progress(Struct, kw_only=True):
    percent: float | None = None
    fps: float | None = None
    frame: int | None = None
    speed: float | None = None
    updated_at: Timestamp | None = None


class ScenarioReading(Struct, kw_only=True):
    """What ffleet understood a scenario name to ask for: tokens it did not recognise are the
    free-form `tags`, shown so that a user sees a word was taken as a tag, not as a setting."""

    resolution: str
    fps: int
    codec: str
    tags: list[str] = field(default_factory=list)


class Job(Struct, kw_only=True):
    id: str
    scenario: str
    confidence: str
    parameters: dict[str, Any]
    status: str
    node_id: str | None
    created_at: Timestamp | None
    started_at: Timestamp | None
    completed_at: Timestamp | None
    retry_count: int
    error: str | None
    # ffleet additions
    priority: int = PRIORITY_NAMES["medium"]
    requirements: Requirements | None = None
    affinity: Labels = field(default_factory=dict)
    anti_affinity: Labels = field(default_factory=dict)
    timeout_s: float | None = None
    max_attempts: int = 3
    attempt: int = 0
    not_before: Timestamp | None = None
    progress: Progress | None = None
    cancel_requested: bool = False
    unschedulable_reason: str | None = None
    understood: ScenarioReading | None = None  # None for a stored name this version refuses
    stall_timeout_s: float | None = None
    placement: Placement | None = None
    avoid_nodes: list[str] = field(default_factory=list)  # nodes that said they cannot run it


class Attempt(Struct, kw_only=True):
    attempt: int
    node_id: str
    started_at: Timestamp | None
    ended_at: Timestamp | None
    outcome: str | None  # None while running
    error: str | None


class ResultSubmission(Struct, kw_only=True):
    """POST /results. `attempt` and `retryable` are ffleet additions (v1.0 clients omit them)."""

    job_id: Id
    node_id: Id
    status: Literal["completed", "failed", "canceled"]
    metrics: dict[Name, Any] = field(default_factory=dict)
    analyzer_output: dict[Name, Any] = field(default_factory=dict)
    error: Text | None = None
    completed_at: TimeText | None = None
    attempt: Count | None = None
    retryable: bool = False  # v1.0 semantics: a reported failure is final unless the agent says so
    # This node cannot run the job but another may (its input file differs from the pinned
    # hash): the attempt fails, and the job is retried on other nodes only.
    wrong_node: bool = False
    claim_next: bool = False  # ffleet agents: reply with the next job in the same round trip
    # With `claim_next`: when no job is claimable, hold the reply up to this many seconds for
    # one (as GET /jobs/next?wait= does), so an idle agent's job costs no request of its own.
    claim_wait: Annotated[
        float,
        Meta(
            ge=0,
            description="with claim_next: seconds to wait for a job when none is claimable "
            "(a longer wait than the master's --max-wait is shortened to it)",
        ),
    ] = 0.0


# ReceivedResult's ids and figure names: Id and Name without msgspec's pattern check, which
# its __post_init__ makes instead, in two regex calls in all.
ResultId = Annotated[str, Meta(extra_json_schema={"pattern": ID_PATTERN})]
FigureName = Annotated[str, Meta(max_length=256, extra_json_schema={"pattern": NAME_PATTERN})]
_ID_BODY = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}"  # ID_PATTERN without its anchors
_TWO_IDS = re.compile(f"{_ID_BODY} {_ID_BODY}")
_ID = re.compile(ID_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ReceivedResult(ResultSubmission, kw_only=True):
    """A ResultSubmission as the master decodes it from POST /results: it accepts and refuses
    exactly what ResultSubmission does, with the same messages, but checks its ids and figure
    names in two regex calls, not one per field and name (msgspec calls a pattern per value,
    ~0.4 us each: 8 for a typical result, 40 % of its decode). Agents build ResultSubmission,
    which checks nothing when built in Python."""

    job_id: ResultId
    node_id: ResultId
    metrics: dict[FigureName, Any] = field(default_factory=dict)
    analyzer_output: dict[FigureName, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse what ResultSubmission's patterns refuse, with msgspec's own messages."""
        if _TWO_IDS.fullmatch(f"{self.job_id} {self.node_id}") is None:
            for where, value in (("job_id", self.job_id), ("node_id", self.node_id)):
                if _ID.search(value) is None:
                    raise ValueError(
                        f"Expected `str` matching regex {ID_PATTERN!r} - at `$.{where}`"
                    )
        if _CONTROL.search("".join(self.metrics) + "".join(self.analyzer_output)) is None:
            return
        figures_of = (("metrics", self.metrics), ("analyzer_output", self.analyzer_output))
        for where, figures in figures_of:
            if any(_CONTROL.search(name) for name in figures):
                raise ValueError(
                    f"Expected `str` matching regex {NAME_PATTERN!r} - at `key` in `$.{where}`"
                )


class StoredResult(Struct, kw_only=True):
    job_id: str
    attempt: int
    node_id: str
    status: str
    metrics: dict[str, Any]
    analyzer_output: dict[str, Any]
    error: str | None
    completed_at: Timestamp | None
    received_at: Timestamp | None


class JobDetail(Struct, kw_only=True):
    """GET /jobs/{id}: the job object plus its stored result and attempt history."""

    job: Job
    attempts: list[Attempt]
    result: StoredResult | None


class NodeVerdict(Struct, kw_only=True):
    """One node's answer to "why is my job pending?": the first thing that keeps it from
    taking the job (`verdict`: lacks, refused, offline, unhealthy, draining, busy, backoff,
    deferred, eligible), or that its next claim gets it (`next`)."""

    node_id: str
    hostname: str | None
    verdict: str
    reason: str


class Explanation(Struct, kw_only=True):
    """GET /jobs/{id}/explain. `ahead` counts due pending jobs a node would take first."""

    job_id: str
    status: str
    summary: str
    ahead: int = 0
    nodes: list[NodeVerdict] = field(default_factory=list)


class ProgressReport(Struct, kw_only=True):
    job_id: Id
    attempt: Count | None = None
    progress: Progress | None = None


class Heartbeat(Struct, kw_only=True):
    """Optional body of POST /nodes/{id}/heartbeat (v1.0 agents send none).

    `jobs` lists every job the agent is running (empty when idle). A running attempt the master
    holds for the node but the agent no longer lists was lost on the way (a claim reply that
    never arrived) and is handed back. `None` (v1.0) reports nothing, so nothing is judged.
    """

    jobs: Annotated[list[ProgressReport], Meta(max_length=1024)] | None = None
    problem: Text | None = None  # what keeps the agent from taking work (an unwritable spool)


class Directive(Struct, kw_only=True):
    """An order for an agent, carried in the heartbeat reply."""

    action: Literal["cancel", "abandon"]
    job_id: str
    attempt: int | None
    reason: str


class HeartbeatReply(Struct, kw_only=True):
    status: str = "ok"
    node_status: str = "available"
    directives: list[Directive] = field(default_factory=list)


class DrainRequest(Struct, kw_only=True):
    """Optional body of POST /nodes/{id}/drain; none drains."""

    drain: bool = True


class PurgeRequest(Struct, kw_only=True):
    """POST /jobs/purge: finished jobs to remove (after an export)."""

    job_ids: Annotated[list[Id], Meta(max_length=10_000)]


class Release(Struct, kw_only=True):
    """POST /jobs/{id}/release: an agent hands a job back unfinished (e.g. on shutdown)."""

    node_id: Id
    attempt: Count
    reason: Text = "released by agent"


def priority_value(value: int | str) -> int:
    """Normalise `high`/`medium`/`low` or an integer into the stored integer priority."""
    if isinstance(value, str):
        try:
            return PRIORITY_NAMES[value.lower()]
        except KeyError:
            raise ValueError(
                f"invalid priority {value!r}: use high, medium, low or an integer"
            ) from None
    if not -MAX_PRIORITY <= value <= MAX_PRIORITY:
        raise ValueError(f"priority must be between {-MAX_PRIORITY} and {MAX_PRIORITY}")
    return value
