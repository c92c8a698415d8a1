-- The worker's embedded store: jobs, the webhook outbox and its attempts.
--
-- Times are integer Unix milliseconds (UTC), so that the sender can compare
-- and order them without parsing text.

CREATE TABLE jobs (
    job_id            TEXT PRIMARY KEY NOT NULL,
    -- The submitter's own id; unique so that a repeated submission, even after
    -- a restart, finds the first job instead of creating a second.
    external_job_id   TEXT UNIQUE,
    owner_user_id     TEXT,
    -- The accepted request, as JSON, so that a queued job survives a restart.
    request           TEXT NOT NULL,
    callback_url      TEXT,
    state             TEXT NOT NULL,
    progress_percent  REAL NOT NULL DEFAULT 0,
    current_step      TEXT NOT NULL,
    clips_completed   INTEGER,
    total_clips       INTEGER,
    error             TEXT,
    output            TEXT,
    -- The sequence number of the last event emitted for the job; the next
    -- event takes last_sequence + 1 in the same transaction.
    last_sequence     INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE INDEX jobs_by_state ON jobs (state, created_at);

CREATE TABLE deliveries (
    -- Also the `webhook-id` header (`msg_…`): one id per message, the same on
    -- every attempt and every manual redelivery.
    delivery_id       TEXT PRIMARY KEY NOT NULL,
    job_id            TEXT NOT NULL REFERENCES jobs (job_id),
    sequence          INTEGER NOT NULL,
    event             TEXT NOT NULL,
    url               TEXT NOT NULL,
    -- The exact bytes that are signed and sent on every attempt.
    body              BLOB NOT NULL,
    -- pending, delivered, failed or superseded.
    status            TEXT NOT NULL,
    attempt_count     INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER NOT NULL,
    last_error        TEXT,
    -- Set by `webhooks redeliver` run against the store of a live worker; the
    -- worker's sweep picks the row up and clears the flag.
    requeue_requested INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    UNIQUE (job_id, sequence)
);

CREATE INDEX deliveries_pending ON deliveries (status, job_id, sequence);
CREATE INDEX deliveries_requeue ON deliveries (requeue_requested) WHERE requeue_requested = 1;

CREATE TABLE delivery_attempts (
    attempt_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id       TEXT NOT NULL REFERENCES deliveries (delivery_id),
    attempted_at      INTEGER NOT NULL,
    status_code       INTEGER,
    error             TEXT,
    duration_ms       INTEGER NOT NULL
);

CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id, attempt_id);
