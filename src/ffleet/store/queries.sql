-- Statements both engines run as written. Those that differ between SQLite and PostgreSQL are
-- in queries.sqlite.sql and queries.postgresql.sql, under the same names in both.
-- Every section starts with a `-- name: NAME` line; parameters are `:name`.

-- ------------------------------------------------------------------------------- schema

-- name: schema_versions
SELECT version FROM ffleet_schema ORDER BY version

-- name: schema_record
INSERT INTO ffleet_schema (version, description, applied_at)
VALUES (:version, :description, :applied_at)

-- A write that changes nothing: proves that the database takes writes (a read-only database
-- refuses it; a full disk refuses it once the page cannot be written) with no table of its own.
-- name: store_write_probe
UPDATE ffleet_schema SET applied_at = applied_at
WHERE version = (SELECT max(version) FROM ffleet_schema)

-- ------------------------------------------------------------------------------- nodes

-- name: node_get
SELECT * FROM nodes WHERE id = :id

-- name: node_insert
INSERT INTO nodes (
    id, registered_at, draining, address, type, cpu_threads, cpu_model, has_gpu, gpu_type,
    ram_bytes, labels, hostname, ffmpeg_version, encoders, gpus, slots, online, last_heartbeat,
    ffmpeg_sha256, ffmpeg_configuration
) VALUES (
    :id, :registered_at, FALSE, :address, :type, :cpu_threads, :cpu_model, :has_gpu, :gpu_type,
    :ram_bytes, :labels, :hostname, :ffmpeg_version, :encoders, :gpus, :slots, :online,
    :last_heartbeat, :ffmpeg_sha256, :ffmpeg_configuration
) RETURNING *

-- name: node_update
UPDATE nodes SET
    address = :address, type = :type, cpu_threads = :cpu_threads, cpu_model = :cpu_model,
    has_gpu = :has_gpu, gpu_type = :gpu_type, ram_bytes = :ram_bytes, labels = :labels,
    hostname = :hostname, ffmpeg_version = :ffmpeg_version, encoders = :encoders, gpus = :gpus,
    slots = :slots, online = :online, last_heartbeat = :last_heartbeat, problem = NULL,
    ffmpeg_sha256 = :ffmpeg_sha256, ffmpeg_configuration = :ffmpeg_configuration
WHERE id = :id RETURNING *

-- name: nodes_all
SELECT * FROM nodes ORDER BY registered_at, id

-- name: node_drain
UPDATE nodes SET draining = :draining WHERE id = :id

-- A heartbeat on PostgreSQL: node_beat, then leases_renew (one round trip each).
-- name: node_beat
UPDATE nodes SET last_heartbeat = :now, online = TRUE, problem = :problem WHERE id = :id
RETURNING draining, slots

-- A heartbeat on SQLite, where each RETURNING builds a temporary table, dearer than a read:
-- node_with_running (one row per running attempt, one with NULL attempt columns for an idle
-- node), node_beat_plain, then leases_renew_plain only if the node runs anything.
-- name: node_with_running
SELECT n.draining, n.slots, j.id, j.attempt, j.cancel_requested, j.started_at
FROM nodes n LEFT JOIN jobs j ON j.node_id = n.id AND j.status = 'running'
WHERE n.id = :id

-- name: node_beat_plain
UPDATE nodes SET last_heartbeat = :now, online = TRUE, problem = :problem WHERE id = :id

-- name: nodes_online
SELECT * FROM nodes WHERE online = TRUE AND draining = FALSE AND last_heartbeat >= :since

-- Nodes that pass the requirements SQL can check; the rest is checked in Python on these
-- (rows.traits_from_row reads these columns).
-- name: nodes_capable
SELECT id, has_gpu, gpus, gpu_type, encoders, ram_bytes, cpu_threads, labels, ffmpeg_sha256,
    ffmpeg_version
FROM nodes
WHERE ram_bytes >= :ram AND cpu_threads >= :threads AND (has_gpu = TRUE OR :gpu = FALSE)
LIMIT :limit

-- name: nodes_sample
SELECT id, has_gpu, gpus, gpu_type, encoders, ram_bytes, cpu_threads, labels, ffmpeg_sha256,
    ffmpeg_version
FROM nodes ORDER BY registered_at LIMIT 5

-- At most :limit a pass, as the reaper's other statements.
-- name: nodes_mark_offline
UPDATE nodes SET online = FALSE
WHERE online = TRUE AND last_heartbeat < :cut AND id IN (
    SELECT id FROM nodes WHERE online = TRUE AND last_heartbeat < :cut LIMIT :limit
) RETURNING id

-- ------------------------------------------------------------------------------- running jobs

-- name: leases_renew
UPDATE jobs SET lease_expires_at = :lease WHERE node_id = :node AND status = 'running'
RETURNING id, attempt, cancel_requested, started_at

-- name: leases_renew_plain
UPDATE jobs SET lease_expires_at = :lease WHERE node_id = :node AND status = 'running'

-- name: progress_store
UPDATE jobs SET progress = :progress WHERE id = :id AND status = 'running'

-- name: running_all
SELECT node_id, id FROM jobs WHERE status = 'running' ORDER BY started_at, seq

-- name: running_of_node
SELECT node_id, id FROM jobs WHERE status = 'running' AND node_id = :node ORDER BY started_at, seq


-- name: cancel_flag
UPDATE jobs SET cancel_requested = TRUE WHERE seq = :seq RETURNING *

-- ------------------------------------------------------------------------------- jobs

-- name: job_insert
-- What every new job starts with is written here, not bound: sqlite3 binds a NULL or a bool
-- through an adapter (~1,400 instructions each), ten of them a job in a batch.
INSERT INTO jobs (
    id, scenario, confidence, parameters, status, node_id, created_at, started_at,
    completed_at, retry_count, error, priority, base_priority, aged_at, requirements, req_gpu,
    req_min_ram, req_min_threads, affinity, anti_affinity, timeout_s, max_attempts, attempt,
    not_before, lease_expires_at, deadline_at, progress, cancel_requested, unschedulable_reason,
    submitted_by, stall_timeout_s, placement, avoid_nodes
) VALUES (
    :id, :scenario, :confidence, :parameters, 'pending', NULL, :created_at, NULL,
    NULL, 0, NULL, :priority, :base_priority, :aged_at, :requirements,
    :req_gpu, :req_min_ram, :req_min_threads, :affinity, :anti_affinity, :timeout_s,
    :max_attempts, 0, :not_before, NULL, NULL, NULL,
    FALSE, :unschedulable_reason, :submitted_by, :stall_timeout_s, :placement,
    '[]'
)

-- name: job_get
SELECT * FROM jobs WHERE id = :id

-- name: jobs_page
SELECT * FROM jobs ORDER BY seq LIMIT :limit OFFSET :offset

-- name: jobs_page_by_status
SELECT * FROM jobs WHERE status = :status ORDER BY seq LIMIT :limit OFFSET :offset

-- Any of status, scenario and node; a NULL filter matches every job.
-- name: jobs_page_filtered
SELECT * FROM jobs
WHERE (CAST(:status AS TEXT) IS NULL OR status = :status)
  AND (CAST(:scenario AS TEXT) IS NULL OR scenario = :scenario)
  AND (CAST(:node AS TEXT) IS NULL OR node_id = :node)
ORDER BY seq LIMIT :limit OFFSET :offset

-- name: jobs_count_filtered
SELECT count(*) FROM jobs
WHERE (CAST(:status AS TEXT) IS NULL OR status = :status)
  AND (CAST(:scenario AS TEXT) IS NULL OR scenario = :scenario)
  AND (CAST(:node AS TEXT) IS NULL OR node_id = :node)

-- name: jobs_count
SELECT count(*) FROM jobs

-- name: jobs_count_by_status
SELECT count(*) FROM jobs WHERE status = :status

-- At least the number of pending jobs, from two ends of ix_jobs_status_seq (a queue quota's
-- cheap answer while the queue has room).
-- name: pending_seq_span
SELECT (SELECT max(seq) FROM jobs WHERE status = 'pending')
    - (SELECT min(seq) FROM jobs WHERE status = 'pending') + 1 AS span

-- name: pending_count_up_to
SELECT count(*) FROM (SELECT 1 FROM jobs WHERE status = 'pending' LIMIT :limit) AS queued

-- What /metrics reports: jobs by status and submitted priority, unschedulable ones apart.
-- name: jobs_tally
SELECT status, base_priority AS priority, unschedulable_reason IS NOT NULL AS unschedulable,
       count(*) AS jobs
FROM jobs GROUP BY status, base_priority, unschedulable_reason IS NOT NULL

-- Ids starting with what a user typed (tables print 8 characters); rare, so a scan is fine.
-- name: job_ids_with_prefix
SELECT id FROM jobs WHERE substr(id, 1, :length) = :prefix ORDER BY id LIMIT :limit

-- name: node_ids_with_prefix
SELECT id FROM nodes WHERE substr(id, 1, :length) = :prefix ORDER BY id LIMIT :limit

-- Due pending jobs a claim would look at before the job at (:priority, :seq).
-- name: jobs_ahead
SELECT count(*) FROM jobs
WHERE status = 'pending' AND not_before <= :now
  AND (priority > :priority OR (priority = :priority AND seq < :seq))

-- name: pending_top_priority
SELECT max(priority) FROM jobs WHERE status = 'pending'

-- At most :limit a pass: a queue of a million jobs ages in many short transactions.
-- name: pending_age
UPDATE jobs SET priority = priority + 1, aged_at = :now
WHERE status = 'pending' AND priority < :top AND aged_at <= :cut AND seq IN (
    SELECT seq FROM jobs
    WHERE status = 'pending' AND priority < :top AND aged_at <= :cut LIMIT :limit
)

-- name: unschedulable_kinds
SELECT DISTINCT requirements FROM jobs WHERE unschedulable_reason IS NOT NULL

-- A node that joined can run jobs of these requirements (NULL: none), except those it refused.
-- name: now_schedulable
UPDATE jobs SET unschedulable_reason = NULL
WHERE unschedulable_reason IS NOT NULL
  AND (requirements = :requirements OR (requirements IS NULL AND CAST(:requirements AS TEXT) IS NULL))
  AND avoid_nodes NOT LIKE :refused_by ESCAPE '\'

-- name: unschedulable_with_reason
SELECT 1 FROM jobs WHERE unschedulable_reason = :old AND requirements = :requirements LIMIT 1

-- name: unschedulable_restate
UPDATE jobs SET unschedulable_reason = :reason
WHERE unschedulable_reason = :old AND requirements = :requirements

-- name: job_avoid_node
UPDATE jobs SET avoid_nodes = :avoid_nodes WHERE seq = :seq

-- name: job_unschedulable
UPDATE jobs SET unschedulable_reason = :reason WHERE seq = :seq

-- ------------------------------------------------------------------------------- efficiency

-- name: efficiency_of_node
SELECT * FROM node_efficiency WHERE node_id = :node ORDER BY family

-- name: efficiency_of_family
SELECT * FROM node_efficiency WHERE family = :family

-- A result's figures for its node and family: the first sample as it is, a later one blended
-- (ffleet.efficiency.blend: `old + :weight * (new - old)`, a figure either side lacks keeps the
-- other), in one statement and in the same floating-point steps as Python's.
-- name: efficiency_record
INSERT INTO node_efficiency (
    node_id, family, samples, fps, cpu_seconds_per_frame, joules_per_frame, updated_at
) VALUES (:node, :family, 1, :fps, :cpu_seconds_per_frame, :joules_per_frame, :now)
ON CONFLICT (node_id, family) DO UPDATE SET
    samples = node_efficiency.samples + 1,
    fps = CASE
        WHEN node_efficiency.fps IS NULL THEN excluded.fps
        WHEN excluded.fps IS NULL THEN node_efficiency.fps
        ELSE node_efficiency.fps + :weight * (excluded.fps - node_efficiency.fps) END,
    cpu_seconds_per_frame = CASE
        WHEN node_efficiency.cpu_seconds_per_frame IS NULL THEN excluded.cpu_seconds_per_frame
        WHEN excluded.cpu_seconds_per_frame IS NULL THEN node_efficiency.cpu_seconds_per_frame
        ELSE node_efficiency.cpu_seconds_per_frame
            + :weight * (excluded.cpu_seconds_per_frame - node_efficiency.cpu_seconds_per_frame)
        END,
    joules_per_frame = CASE
        WHEN node_efficiency.joules_per_frame IS NULL THEN excluded.joules_per_frame
        WHEN excluded.joules_per_frame IS NULL THEN node_efficiency.joules_per_frame
        ELSE node_efficiency.joules_per_frame
            + :weight * (excluded.joules_per_frame - node_efficiency.joules_per_frame) END,
    updated_at = excluded.updated_at

-- ------------------------------------------------------------------------------- transitions
-- The only statements that write `status`; run by store/transitions.py after the state
-- machine allowed the move, and guarded by the status the row was read in (or, for
-- transition_finish_claimed, the status, attempt, node and start its claim wrote). transitions.py reads
-- the row as written from the SET clause, so each assignment is `column = :param`, a literal
-- (NULL, TRUE, FALSE) or another column.

-- name: transition_claim
UPDATE jobs SET
    status = :status, node_id = :node_id, attempt = :attempt, started_at = :now,
    completed_at = NULL, lease_expires_at = :lease, deadline_at = :deadline, progress = NULL,
    cancel_requested = FALSE, unschedulable_reason = NULL
WHERE seq = :seq AND status = :from

-- name: transition_requeue
UPDATE jobs SET
    status = :status, node_id = NULL, not_before = :not_before, retry_count = :retry_count,
    error = :error, completed_at = NULL, lease_expires_at = NULL, deadline_at = NULL,
    cancel_requested = FALSE, aged_at = :now, priority = base_priority
WHERE seq = :seq AND status = :from

-- name: transition_finish
UPDATE jobs SET
    status = :status, completed_at = :now, error = :error, retry_count = :retry_count
WHERE seq = :seq AND status = :from

-- transition_finish for a row its claim wrote (store/handed_out.py), not read: only while that
-- claim's attempt is the job's current one.
-- name: transition_finish_claimed
UPDATE jobs SET
    status = :status, completed_at = :now, error = :error, retry_count = :retry_count
WHERE seq = :seq AND status = :from AND attempt = :attempt AND node_id = :node_id
    AND started_at = :started_at

-- ------------------------------------------------------------------------------- attempts

-- A job's running or completed attempt lives on its row (store/attempts.py); one that ended
-- otherwise is stored at its end. Earlier versions stored each attempt at its claim, open
-- (ended_at NULL), and closed it at its end: such a row is ended here, once.
-- name: attempt_close
INSERT INTO attempts (job_id, attempt, node_id, started_at, ended_at, outcome, error)
VALUES (:job_id, :attempt, :node_id, :started_at, :now, :outcome, :error)
ON CONFLICT (job_id, attempt) DO UPDATE SET
    ended_at = excluded.ended_at, outcome = excluded.outcome, error = excluded.error
WHERE attempts.ended_at IS NULL

-- The stored attempts, then the current one from the job's row where none ended is stored for
-- it: running (open), or completed (ended when the job completed). A split parent (no node)
-- has none. An open stored row of that attempt (an earlier version's) is the same attempt, read
-- from the job's row instead.
-- name: attempts_of_job
SELECT job_id, attempt, node_id, started_at, ended_at, outcome, error
FROM attempts AS stored
WHERE job_id = :job_id AND NOT (ended_at IS NULL AND EXISTS (
    SELECT 1 FROM jobs
    WHERE id = :job_id AND attempt = stored.attempt AND node_id IS NOT NULL
      AND status IN ('running', 'completed')
))
UNION ALL
SELECT id, attempt, node_id, started_at,
    CASE WHEN status = 'completed' THEN completed_at END,
    CASE WHEN status = 'completed' THEN 'completed' END, NULL
FROM jobs
WHERE id = :job_id AND node_id IS NOT NULL AND status IN ('running', 'completed')
  AND NOT EXISTS (
    SELECT 1 FROM attempts
    WHERE job_id = :job_id AND attempt = jobs.attempt AND ended_at IS NOT NULL
)
ORDER BY attempt

-- name: attempts_failed
SELECT attempt, error FROM attempts WHERE job_id = :job_id AND outcome = 'failed'
ORDER BY attempt

-- ------------------------------------------------------------------------------- results

-- name: result_of_attempt
SELECT status, node_id FROM results WHERE job_id = :job_id AND attempt = :attempt

-- name: result_insert
INSERT INTO results (
    job_id, attempt, node_id, status, metrics, analyzer_output, error, completed_at, received_at
) VALUES (
    :job_id, :attempt, :node_id, :status, :metrics, :analyzer_output, :error, :completed_at,
    :received_at
)

-- name: result_latest
SELECT * FROM results WHERE job_id = :job_id ORDER BY attempt DESC LIMIT 1

-- name: results_page
SELECT * FROM results ORDER BY received_at, job_id, attempt LIMIT :limit OFFSET :offset

-- Finished jobs by completion time, for `ffleet results export`.
-- name: finished_between
SELECT * FROM jobs
WHERE status IN ('completed', 'failed', 'canceled')
  AND completed_at >= :since AND completed_at < :until
ORDER BY seq LIMIT :limit OFFSET :offset

-- Only a finished job may be removed (after an export); its attempts and results go with it.
-- name: job_delete_finished
DELETE FROM jobs WHERE id = :id AND status IN ('completed', 'failed', 'canceled') RETURNING id

-- name: attempts_delete
DELETE FROM attempts WHERE job_id = :id

-- name: results_delete
DELETE FROM results WHERE job_id = :id

-- name: results_of_job
SELECT * FROM results WHERE job_id = :job_id ORDER BY attempt LIMIT :limit OFFSET :offset

-- ------------------------------------------------------------------------- leader lease

-- Take the lease when nobody holds it or its holder let it expire; renew it when it is ours.
-- A row comes back only to the holder.
-- name: lease_take
INSERT INTO leader_lease (name, holder, expires_at) VALUES ('leader', :holder, :expires)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE leader_lease.holder = excluded.holder OR leader_lease.expires_at < :now
RETURNING holder

-- name: lease_holder
SELECT holder FROM leader_lease WHERE name = 'leader' AND expires_at >= :now

-- name: lease_resign
DELETE FROM leader_lease WHERE name = 'leader' AND holder = :holder

-- ------------------------------------------------------------------------- idempotency keys

-- The first submission with a key inserts it; a concurrent one waits for that transaction and
-- then inserts nothing.
-- name: idempotency_claim
INSERT INTO idempotency_keys (key, fingerprint, reply, created_at)
VALUES (:key, :fingerprint, '', :now)
ON CONFLICT (key) DO NOTHING

-- name: idempotency_get
SELECT fingerprint, reply FROM idempotency_keys WHERE key = :key

-- name: idempotency_reply
UPDATE idempotency_keys SET reply = :reply WHERE key = :key

-- name: idempotency_expire
DELETE FROM idempotency_keys WHERE created_at < :cut

-- ------------------------------------------------------------------------------- credentials

-- name: job_submitter
SELECT submitted_by FROM jobs WHERE id = :id

-- name: credential_insert
INSERT INTO credentials (
    id, name, role, secret_hash, node_id, labels, one_time, created_at, expires_at, revoked_at
) VALUES (
    :id, :name, :role, :secret_hash, :node_id, :labels, :one_time, :created_at, :expires_at, NULL
) RETURNING *

-- name: credential_by_hash
SELECT * FROM credentials WHERE secret_hash = :secret_hash

-- name: credentials_all
SELECT * FROM credentials ORDER BY created_at, id

-- name: credential_revoke
UPDATE credentials SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL RETURNING *

-- name: credential_get
SELECT * FROM credentials WHERE id = :id

-- name: credentials_active_count
SELECT count(*) FROM credentials
WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > :now)
    AND (CAST(:role AS TEXT) IS NULL OR role = :role)

-- name: node_take_offline
UPDATE nodes SET online = FALSE WHERE id = :id

-- ------------------------------------------------------------------------------- audit

-- name: audit_insert
INSERT INTO audit (at, actor_id, actor_name, role, action, target, outcome, remote)
VALUES (:at, :actor_id, :actor_name, :role, :action, :target, :outcome, :remote)

-- Newest first, so that a limit keeps the latest entries.
-- name: audit_page
SELECT * FROM audit
WHERE at >= :since
    AND (CAST(:actor AS TEXT) IS NULL OR actor_id = :actor OR actor_name = :actor)
    AND (CAST(:action AS TEXT) IS NULL OR action = :action)
ORDER BY seq DESC LIMIT :limit

-- name: audit_prune
DELETE FROM audit WHERE at < :cut

-- ------------------------------------------------------------------------------- split jobs

-- name: split_insert
INSERT INTO splits (job_id, segment_s, plan) VALUES (:job_id, :segment_s, NULL)

-- name: split_get
SELECT * FROM splits WHERE job_id = :job_id

-- name: split_plan_store
UPDATE splits SET plan = :plan WHERE job_id = :job_id

-- name: splits_running
SELECT jobs.*, splits.segment_s AS split_segment_s, splits.plan AS split_plan
FROM jobs JOIN splits ON splits.job_id = jobs.id
WHERE jobs.status = 'running' ORDER BY jobs.seq

-- name: split_child_insert
INSERT INTO split_children (child_id, parent_id, parent_attempt, segment)
VALUES (:child_id, :parent_id, :parent_attempt, :segment)

-- name: split_children_of
SELECT split_children.segment, jobs.*
FROM split_children JOIN jobs ON jobs.id = split_children.child_id
WHERE split_children.parent_id = :parent_id AND split_children.parent_attempt = :attempt
ORDER BY split_children.segment

-- name: split_parent_of
SELECT parent_id, parent_attempt, segment FROM split_children WHERE child_id = :child_id

-- name: split_progress_store
UPDATE jobs SET progress = :progress WHERE id = :id AND status = 'running' AND node_id IS NULL

-- A purged job takes its split plan, or its link to its parent, with it.
-- name: split_delete
DELETE FROM splits WHERE job_id = :id

-- name: split_child_delete
DELETE FROM split_children WHERE child_id = :id
