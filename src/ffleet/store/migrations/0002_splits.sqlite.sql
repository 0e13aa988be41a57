-- split jobs: a parent's segment plan and the child job of each segment
-- Version 2 (sqlite). Frozen: a change is a new numbered file.

CREATE TABLE splits (
    job_id VARCHAR(64) NOT NULL,
    segment_s DOUBLE NOT NULL,
    plan TEXT,
    PRIMARY KEY (job_id)
);

CREATE TABLE split_children (
    child_id VARCHAR(64) NOT NULL,
    parent_id VARCHAR(64) NOT NULL,
    parent_attempt INTEGER NOT NULL,
    segment INTEGER NOT NULL,
    PRIMARY KEY (child_id)
);

CREATE INDEX ix_split_children_parent ON split_children (parent_id, parent_attempt, segment);
