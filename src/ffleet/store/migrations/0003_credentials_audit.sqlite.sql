-- credentials, audit log, job submitters
-- Version 3 (sqlite): tokens stored as hashes, the audit trail, and who submitted each job.

CREATE TABLE credentials (
    id VARCHAR(32) NOT NULL,
    name TEXT NOT NULL,
    role VARCHAR(16) NOT NULL,
    secret_hash VARCHAR(64) NOT NULL,
    node_id VARCHAR(64),
    labels TEXT,
    one_time BOOLEAN NOT NULL,
    created_at DOUBLE NOT NULL,
    expires_at DOUBLE,
    revoked_at DOUBLE,
    PRIMARY KEY (id),
    UNIQUE (secret_hash)
);

CREATE TABLE audit (
    seq INTEGER NOT NULL,
    at DOUBLE NOT NULL,
    actor_id VARCHAR(32) NOT NULL,
    actor_name TEXT NOT NULL,
    role VARCHAR(16) NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    outcome INTEGER NOT NULL,
    remote TEXT,
    PRIMARY KEY (seq)
);

ALTER TABLE jobs ADD COLUMN submitted_by VARCHAR(32);
