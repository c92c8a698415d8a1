-- Job leases: the worker that claimed a job, and until when its claim holds
-- unless renewed (Unix ms, by the workers' clocks). A job whose lease
-- expired is taken over by another worker: a queued one is released to the
-- queue, a started one gets its one job.failed.
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at BIGINT;

-- What a claim looks for: the oldest queued job nobody holds.
CREATE INDEX jobs_claimable ON jobs (created_at, intake_order)
    WHERE state = 'queued' AND lease_owner IS NULL;
-- What the reaper looks for: held, unfinished jobs by expiry.
CREATE INDEX jobs_leased ON jobs (lease_expires_at)
    WHERE lease_owner IS NOT NULL AND state NOT IN ('completed', 'failed');
