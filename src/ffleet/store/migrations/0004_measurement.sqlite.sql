-- FFmpeg build identity of nodes, stall timeout, placement and refused nodes of jobs, node efficiency
-- Frozen: a change is a new numbered file.

ALTER TABLE nodes ADD COLUMN ffmpeg_sha256 TEXT;

ALTER TABLE nodes ADD COLUMN ffmpeg_configuration TEXT;

ALTER TABLE jobs ADD COLUMN stall_timeout_s DOUBLE;

ALTER TABLE jobs ADD COLUMN placement VARCHAR(16);

ALTER TABLE jobs ADD COLUMN avoid_nodes TEXT NOT NULL DEFAULT '[]';

CREATE TABLE node_efficiency (
    node_id VARCHAR(64) NOT NULL,
    family VARCHAR(128) NOT NULL,
    samples INTEGER NOT NULL,
    fps DOUBLE,
    cpu_seconds_per_frame DOUBLE,
    joules_per_frame DOUBLE,
    updated_at DOUBLE NOT NULL,
    PRIMARY KEY (node_id, family)
);
