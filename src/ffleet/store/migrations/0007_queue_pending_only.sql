-- ix_jobs_queue holds pending jobs only: every query that reads it asks for status 'pending'
DROP INDEX ix_jobs_queue;

CREATE INDEX ix_jobs_queue ON jobs (status, priority DESC, seq) WHERE status = 'pending';
