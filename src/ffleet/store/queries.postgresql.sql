-- PostgreSQL's side of the statements that differ. Claim and reap lock the rows they read with
-- FOR UPDATE SKIP LOCKED, so several masters share one database without handing a job out
-- twice or waiting on each other; single-job changes lock the row they change.

-- Concurrent masters starting at once apply the migrations once.
-- name: schema_lock
SELECT pg_advisory_xact_lock(7716221)

-- name: schema_table_create
CREATE TABLE IF NOT EXISTS ffleet_schema (
    version SERIAL NOT NULL,
    description TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (version)
)

-- A job changed by one request, with what a transition, its reply and its attempt's end read
-- (rows.job_from_row's columns, `seq` and `base_priority`).
-- name: job_locked
SELECT seq, id, scenario, confidence, parameters, status, node_id, created_at, started_at,
    completed_at, retry_count, error, priority, base_priority, requirements, affinity,
    anti_affinity, timeout_s, max_attempts, attempt, not_before, progress, cancel_requested,
    unschedulable_reason, stall_timeout_s, placement, avoid_nodes
FROM jobs WHERE id = :id FOR UPDATE

-- A job a completed or canceled result ends: what its check, its writes and its outcome
-- (rows.job_after_result, less what the writes set) read.
-- name: job_for_result
SELECT seq, id, scenario, parameters, status, node_id, started_at, retry_count, attempt
FROM jobs WHERE id = :id FOR UPDATE

-- name: running_of_node_locked
SELECT * FROM jobs WHERE status = 'running' AND node_id = :node FOR UPDATE SKIP LOCKED

-- At most :limit a pass: the reaper ends a long list (a fleet that vanished) in short
-- transactions, serving requests between them.
-- name: running_expired_locked
SELECT * FROM jobs
WHERE status = 'running' AND (lease_expires_at < :now OR deadline_at < :now)
ORDER BY seq LIMIT :limit
FOR UPDATE SKIP LOCKED

-- The claim walk's first read: the best pending jobs this node's RAM and threads allow, with
-- every column the claimed job's reply needs beside those the claim writes. Not `status` or
-- `req_gpu`: the WHERE clause fixes both, and placement.pick sets them (each column read costs
-- ~2.5 K instructions on SQLite).
-- name: claim_candidates
SELECT seq, id, attempt, priority, timeout_s, requirements, affinity, anti_affinity,
    created_at, not_before, scenario, parameters, placement, avoid_nodes, confidence,
    retry_count, error, max_attempts, stall_timeout_s
FROM jobs
WHERE status = 'pending' AND not_before <= :now AND req_min_ram <= :ram
    AND req_min_threads <= :threads AND req_gpu = :gpu AND unschedulable_reason IS NULL
ORDER BY priority DESC, seq LIMIT :batch
FOR UPDATE SKIP LOCKED

-- The walk's later reads continue after the last job the previous read returned.
-- name: claim_candidates_after
SELECT seq, id, attempt, priority, timeout_s, requirements, affinity, anti_affinity,
    created_at, not_before, scenario, parameters, placement, avoid_nodes, confidence,
    retry_count, error, max_attempts, stall_timeout_s
FROM jobs
WHERE status = 'pending' AND not_before <= :now AND req_min_ram <= :ram
    AND req_min_threads <= :threads AND req_gpu = :gpu AND unschedulable_reason IS NULL
    AND (priority < :last_priority OR (priority = :last_priority AND seq > :last_seq))
ORDER BY priority DESC, seq LIMIT :batch
FOR UPDATE SKIP LOCKED

-- ------------------------------------------------------------------------- several masters

-- The database's clock, the one every master stamps times with.
-- name: clock_now
SELECT extract(epoch FROM clock_timestamp())::float8 AS now

-- A hint to the other masters' listeners that work appeared (delivered at commit); the payload
-- names the sender so that it can ignore its own.
-- name: work_announce
SELECT pg_notify('ffleet_work', :origin)
