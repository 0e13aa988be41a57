-- SQLite's side of the statements that differ. Every transaction is BEGIN IMMEDIATE, so it
-- already holds the database's write lock: reads that lock rows on PostgreSQL lock nothing here.

-- name: schema_lock
SELECT 1

-- name: schema_table_create
CREATE TABLE IF NOT EXISTS ffleet_schema (
    version INTEGER NOT NULL,
    description TEXT NOT NULL,
    applied_at DOUBLE NOT NULL,
    PRIMARY KEY (version)
)

-- The jobs of one run of a submission (consecutive jobs of one distinct request): their common
-- columns bound once, their ids a JSON array, inserted in its order. One statement for a
-- batch of 100 alike, where job_insert, executed per job, binds 26 values each time.
-- name: jobs_insert_run
INSERT INTO jobs (
    id, scenario, confidence, parameters, status, node_id, created_at, started_at,
    completed_at, retry_count, error, priority, base_priority, aged_at, requirements, req_gpu,
    req_min_ram, req_min_threads, affinity, anti_affinity, timeout_s, max_attempts, attempt,
    not_before, lease_expires_at, deadline_at, progress, cancel_requested, unschedulable_reason,
    submitted_by, stall_timeout_s, placement, avoid_nodes
)
SELECT
    value, :scenario, :confidence, :parameters, 'pending', NULL, :created_at, NULL,
    NULL, 0, NULL, :priority, :base_priority, :aged_at, :requirements,
    :req_gpu, :req_min_ram, :req_min_threads, :affinity, :anti_affinity, :timeout_s,
    :max_attempts, 0, :not_before, NULL, NULL, NULL,
    FALSE, :unschedulable_reason, :submitted_by, :stall_timeout_s, :placement,
    '[]'
FROM json_each(:ids)

-- A job changed by one request, with what a transition, its reply and its attempt's end read
-- (rows.job_from_row's columns, `seq` and `base_priority`).
-- name: job_locked
SELECT seq, id, scenario, confidence, parameters, status, node_id, created_at, started_at,
    completed_at, retry_count, error, priority, base_priority, requirements, affinity,
    anti_affinity, timeout_s, max_attempts, attempt, not_before, progress, cancel_requested,
    unschedulable_reason, stall_timeout_s, placement, avoid_nodes
FROM jobs WHERE id = :id

-- A job a completed or canceled result ends: what its check, its writes and its outcome
-- (rows.job_after_result, less what the writes set) read.
-- name: job_for_result
SELECT seq, id, scenario, parameters, status, node_id, started_at, retry_count, attempt
FROM jobs WHERE id = :id

-- name: running_of_node_locked
SELECT * FROM jobs WHERE status = 'running' AND node_id = :node

-- At most :limit a pass: the reaper ends a long list (a fleet that vanished) in short
-- transactions, serving requests between them.
-- name: running_expired_locked
SELECT * FROM jobs
WHERE status = 'running' AND (lease_expires_at < :now OR deadline_at < :now)
ORDER BY seq LIMIT :limit

-- A claim's first read, one statement for two (each a table lookup; and a column read costs
-- ~2.5 K instructions on SQLite): the node's traits (rows.TRAIT_COLUMNS, in that order, as one
-- JSON array: placement.claimer), whether it takes no job now (`busy`: drained, or all its
-- slots taken), and its first candidate, as `claim_candidates` reads it with `:gpu` the node's
-- own `has_gpu` (NULL columns when there is none). No row: no such node. A drained node or one
-- without slots (a v1.0 client, which the seed never limited) counts nothing. The count reads
-- the node's running jobs, never more than its slots: a claim stops there, and a node that
-- registers again (with other slots, say) loses every job it ran.
-- SQLite: the node is the outer loop (one row), the queue's index the inner one, in its order;
-- a busy node's candidate is read and left (a condition on the node in the ON clause would be
-- tested again at every job the scan passes; no row lock to take here).
-- name: claim_first
SELECT jobs.seq, jobs.id, jobs.attempt, jobs.priority, jobs.timeout_s, jobs.requirements,
    jobs.affinity, jobs.anti_affinity, jobs.created_at, jobs.not_before, jobs.scenario,
    jobs.parameters, jobs.placement, jobs.avoid_nodes, jobs.confidence, jobs.retry_count,
    jobs.error, jobs.max_attempts, jobs.stall_timeout_s,
    CASE WHEN nodes.draining THEN TRUE WHEN nodes.slots IS NULL THEN FALSE ELSE (
        SELECT count(*) FROM jobs AS running
        WHERE running.status = 'running' AND running.node_id = nodes.id
    ) >= nodes.slots END AS busy,
    json_array(nodes.id, nodes.has_gpu, nodes.gpus, nodes.gpu_type, nodes.encoders,
        nodes.ram_bytes, nodes.cpu_threads, nodes.labels, nodes.ffmpeg_sha256,
        nodes.ffmpeg_version) AS node_traits
FROM nodes LEFT JOIN jobs ON jobs.status = 'pending' AND jobs.not_before <= :now
    AND jobs.req_min_ram <= nodes.ram_bytes AND jobs.req_min_threads <= nodes.cpu_threads
    AND jobs.req_gpu = nodes.has_gpu AND jobs.unschedulable_reason IS NULL
WHERE nodes.id = :id
ORDER BY jobs.priority DESC, jobs.seq LIMIT 1

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

-- ------------------------------------------------------------------------- several masters

-- The database's clock, the one every master stamps times with (here the master's own: an
-- SQLite file has one master).
-- name: clock_now
SELECT (julianday('now') - 2440587.5) * 86400.0 AS now

-- A hint to the other masters that work appeared: SQLite has no other masters to tell.
-- name: work_announce
SELECT :origin AS origin
