"""The declared current schema of the SQL store: what every migrated database must be.

This is a declaration, never executed: databases are built and upgraded only by the frozen DDL
files in migrations/ (see migrate.py), and tests/contract/test_schema.py proves on SQLite and
PostgreSQL that all migrations together build exactly these tables, columns, types and indexes.
A schema change edits this file and adds one migration.

Times are epoch seconds (double precision): cheap to compare in indexes and identical on both
engines. Structured values (labels, parameters, metrics) are JSON text, encoded and decoded by
the store with msgspec, so both engines store and return exactly the same thing.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

schema_version = Table(
    "ffleet_schema",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("description", Text, nullable=False),
    Column("applied_at", Double, nullable=False),
)

nodes = Table(
    "nodes",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("address", Text, nullable=False),
    Column("type", String(16), nullable=False),
    Column("cpu_threads", Integer, nullable=False),
    Column("cpu_model", Text, nullable=False),
    Column("has_gpu", Boolean, nullable=False),
    Column("gpu_type", Text),
    Column("ram_bytes", BigInteger, nullable=False),
    Column("labels", Text, nullable=False),
    Column("hostname", Text),
    Column("ffmpeg_version", Text),
    Column("encoders", Text, nullable=False),
    Column("gpus", Text, nullable=False),
    Column("slots", Integer),
    Column("draining", Boolean, nullable=False),
    Column("online", Boolean, nullable=False),
    Column("last_heartbeat", Double, nullable=False),
    Column("registered_at", Double, nullable=False),
    Column("ffmpeg_sha256", Text),
    Column("ffmpeg_configuration", Text),
    Column("problem", Text),  # migration 6
)

jobs = Table(
    "jobs",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", String(64), nullable=False, unique=True),
    Column("scenario", Text, nullable=False),
    Column("confidence", Text, nullable=False),
    Column("parameters", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("node_id", String(64)),
    Column("created_at", Double, nullable=False),
    Column("started_at", Double),
    Column("completed_at", Double),
    Column("retry_count", Integer, nullable=False),
    Column("error", Text),
    Column("priority", Integer, nullable=False),
    Column("base_priority", Integer, nullable=False),
    Column("aged_at", Double, nullable=False),
    Column("requirements", Text),
    Column("req_gpu", Boolean, nullable=False),
    Column("req_min_ram", BigInteger, nullable=False),
    Column("req_min_threads", Integer, nullable=False),
    Column("affinity", Text, nullable=False),
    Column("anti_affinity", Text, nullable=False),
    Column("timeout_s", Double, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("not_before", Double, nullable=False),
    Column("lease_expires_at", Double),
    Column("deadline_at", Double),
    Column("progress", Text),
    Column("cancel_requested", Boolean, nullable=False),
    Column("unschedulable_reason", Text),
    Column("submitted_by", String(32)),  # the credential that created it (None: open master)
    Column("stall_timeout_s", Double),
    Column("placement", String(16)),
    Column("avoid_nodes", Text, nullable=False, server_default="[]"),  # nodes that refused it
)

attempts = Table(
    "attempts",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("node_id", String(64), nullable=False),
    Column("started_at", Double, nullable=False),
    Column("ended_at", Double),
    Column("outcome", String(16)),
    Column("error", Text),
)

results = Table(
    "results",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("node_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("metrics", Text, nullable=False),
    Column("analyzer_output", Text, nullable=False),
    Column("error", Text),
    Column("completed_at", Double),
    Column("received_at", Double, nullable=False),
)

# Who leads: one row per duty set, taken over only once its holder stops renewing it.
leader_lease = Table(
    "leader_lease",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("holder", Text, nullable=False),
    Column("expires_at", Double, nullable=False),
)

# The first reply to a job submission sent with an Idempotency-Key, kept a day.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("reply", Text, nullable=False),
    Column("created_at", Double, nullable=False),
)

# Rolling measured efficiency per node and scenario family (codec/encoder/resolution class),
# from completed, undisturbed results: what `placement: fastest|energy` compares.
node_efficiency = Table(
    "node_efficiency",
    metadata,
    Column("node_id", String(64), primary_key=True),
    Column("family", String(128), primary_key=True),
    Column("samples", Integer, nullable=False),
    Column("fps", Double),
    Column("cpu_seconds_per_frame", Double),
    Column("joules_per_frame", Double),
    Column("updated_at", Double, nullable=False),
)

# Tokens are kept only as the SHA-256 of the secret: the unique index is the lookup.
credentials = Table(
    "credentials",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", Text, nullable=False),
    Column("role", String(16), nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("node_id", String(64)),
    Column("labels", Text),
    Column("one_time", Boolean, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double),
    Column("revoked_at", Double),
)

audit = Table(
    "audit",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("at", Double, nullable=False),
    Column("actor_id", String(32), nullable=False),
    Column("actor_name", Text, nullable=False),
    Column("role", String(16), nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text),
    Column("outcome", Integer, nullable=False),
    Column("remote", Text),
)

# A split job's parent: its segment length and, once planned, the plan (JSON) of its attempt.
splits = Table(
    "splits",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("segment_s", Double, nullable=False),
    Column("plan", Text),
)

# The child job encoding one segment for one attempt of its parent.
split_children = Table(
    "split_children",
    metadata,
    Column("child_id", String(64), primary_key=True),
    Column("parent_id", String(64), nullable=False),
    Column("parent_attempt", Integer, nullable=False),
    Column("segment", Integer, nullable=False),
)
Index(
    "ix_split_children_parent",
    split_children.c.parent_id,
    split_children.c.parent_attempt,
    split_children.c.segment,
)

# The queue index: claim reads pending jobs best-first straight off it, so claim cost does not
# grow with queue depth. Pending jobs only: every query that reads it asks for them, and a job's
# claim and its end no longer write it (an entry for `running`, then for `completed`). `status`
# stays its first column, so that SQLite's planner prefers it to ix_jobs_status_seq for every
# pending query (EXPLAIN QUERY PLAN, 200,000 jobs, with and without ANALYZE), where an earlier
# partial index lost to it and sorted every pending row.
Index(
    "ix_jobs_queue",
    jobs.c.status,
    jobs.c.priority.desc(),
    jobs.c.seq,
    sqlite_where=jobs.c.status == "pending",
    postgresql_where=jobs.c.status == "pending",
)
Index(
    "ix_jobs_running",
    jobs.c.node_id,
    sqlite_where=jobs.c.status == "running",
    postgresql_where=jobs.c.status == "running",
)
Index("ix_jobs_status_seq", jobs.c.status, jobs.c.seq)
# Few jobs are unschedulable; registering a node looks only at those.
Index(
    "ix_jobs_unschedulable",
    jobs.c.requirements,
    sqlite_where=jobs.c.unschedulable_reason.is_not(None),
    postgresql_where=jobs.c.unschedulable_reason.is_not(None),
)
Index("ix_idempotency_keys_created_at", idempotency_keys.c.created_at)
