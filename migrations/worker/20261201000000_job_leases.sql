-- Job leases: the worker that claimed a job, and until when its claim holds
-- unless renewed. A job whose lease expired is taken over (a queued one is
-- released, a started one failed). With one worker per SQLite file, a
-- restart takes over every lease the previous process held.
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at INTEGER;
