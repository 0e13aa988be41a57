-- leader lease and idempotency keys: several masters on one database
-- Version 5 (SQLite). Frozen: a change is a new numbered file.

CREATE TABLE leader_lease (
    name VARCHAR(32) NOT NULL,
    holder TEXT NOT NULL,
    expires_at DOUBLE NOT NULL,
    PRIMARY KEY (name)
);

CREATE TABLE idempotency_keys (
    key VARCHAR(200) NOT NULL,
    fingerprint VARCHAR(64) NOT NULL,
    reply TEXT NOT NULL,
    created_at DOUBLE NOT NULL,
    PRIMARY KEY (key)
);

CREATE INDEX ix_idempotency_keys_created_at ON idempotency_keys (created_at);
