-- nodes, jobs, attempts, results
-- Version 1, as release 0.1.0 created it (SQLite). Frozen: a change is a new numbered file.

CREATE TABLE nodes (
    id VARCHAR(64) NOT NULL,
    address TEXT NOT NULL,
    type VARCHAR(16) NOT NULL,
    cpu_threads INTEGER NOT NULL,
    cpu_model TEXT NOT NULL,
    has_gpu BOOLEAN NOT NULL,
    gpu_type TEXT,
    ram_bytes BIGINT NOT NULL,
    labels TEXT NOT NULL,
    hostname TEXT,
    ffmpeg_version TEXT,
    encoders TEXT NOT NULL,
    gpus TEXT NOT NULL,
    slots INTEGER,
    draining BOOLEAN NOT NULL,
    online BOOLEAN NOT NULL,
    last_heartbeat DOUBLE NOT NULL,
    registered_at DOUBLE NOT NULL,
    PRIMARY KEY (id)
);

CREATE TABLE jobs (
    seq INTEGER NOT NULL,
    id VARCHAR(64) NOT NULL,
    scenario TEXT NOT NULL,
    confidence TEXT NOT NULL,
    parameters TEXT NOT NULL,
    status VARCHAR(16) NOT NULL,
    node_id VARCHAR(64),
    created_at DOUBLE NOT NULL,
    started_at DOUBLE,
    completed_at DOUBLE,
    retry_count INTEGER NOT NULL,
    error TEXT,
    priority INTEGER NOT NULL,
    base_priority INTEGER NOT NULL,
    aged_at DOUBLE NOT NULL,
    requirements TEXT,
    req_gpu BOOLEAN NOT NULL,
    req_min_ram BIGINT NOT NULL,
    req_min_threads INTEGER NOT NULL,
    affinity TEXT NOT NULL,
    anti_affinity TEXT NOT NULL,
    timeout_s DOUBLE NOT NULL,
    max_attempts INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    not_before DOUBLE NOT NULL,
    lease_expires_at DOUBLE,
    deadline_at DOUBLE,
    progress TEXT,
    cancel_requested BOOLEAN NOT NULL,
    unschedulable_reason TEXT,
    PRIMARY KEY (seq),
    UNIQUE (id)
);

CREATE INDEX ix_jobs_queue ON jobs (status, priority DESC, seq);

CREATE INDEX ix_jobs_unschedulable ON jobs (requirements) WHERE unschedulable_reason IS NOT NULL;

CREATE INDEX ix_jobs_status_seq ON jobs (status, seq);

CREATE INDEX ix_jobs_running ON jobs (node_id) WHERE status = 'running';

CREATE TABLE attempts (
    job_id VARCHAR(64) NOT NULL,
    attempt INTEGER NOT NULL,
    node_id VARCHAR(64) NOT NULL,
    started_at DOUBLE NOT NULL,
    ended_at DOUBLE,
    outcome VARCHAR(16),
    error TEXT,
    PRIMARY KEY (job_id, attempt)
);

CREATE TABLE results (
    job_id VARCHAR(64) NOT NULL,
    attempt INTEGER NOT NULL,
    node_id VARCHAR(64) NOT NULL,
    status VARCHAR(16) NOT NULL,
    metrics TEXT NOT NULL,
    analyzer_output TEXT NOT NULL,
    error TEXT,
    completed_at DOUBLE,
    received_at DOUBLE NOT NULL,
    PRIMARY KEY (job_id, attempt)
);
