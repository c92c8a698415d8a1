-- The worker's PostgreSQL store: jobs, the webhook outbox and its attempts.
-- The same tables as the SQLite store (migrations/worker), so one decoder
-- reads both. The worker runs these with `search_path` set to its own schema
-- (clipping_worker), which the migrator creates: the tables never mix with
-- another service's in a shared database.
--
-- Times are integer Unix milliseconds (UTC), as in the SQLite store.

CREATE TABLE jobs (
    job_id            TEXT PRIMARY KEY,
    -- The submitter's own id; unique so that a repeated submission, to any
    -- worker of the fleet and after any restart, finds the first job.
    external_job_id   TEXT UNIQUE,
    owner_user_id     TEXT,
    -- The accepted request, as JSON text, so any worker can run it.
    request           TEXT NOT NULL,
    callback_url      TEXT,
    state             TEXT NOT NULL,
    progress_percent  DOUBLE PRECISION NOT NULL DEFAULT 0,
    current_step      TEXT NOT NULL,
    clips_completed   BIGINT,
    total_clips       BIGINT,
    error             TEXT,
    output            TEXT,
    -- The sequence number of the last event emitted for the job; the next
    -- event takes last_sequence + 1 in the same transaction.
    last_sequence     BIGINT NOT NULL DEFAULT 0,
    -- Acceptance order, for the FIFO (created_at alone ties within a
    -- millisecond).
    intake_order      BIGINT GENERATED ALWAYS AS IDENTITY,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE INDEX jobs_by_state ON jobs (state, created_at, intake_order);

CREATE TABLE deliveries (
    -- Also the `webhook-id` header (`msg_…`).
    delivery_id       TEXT PRIMARY KEY,
    job_id            TEXT NOT NULL REFERENCES jobs (job_id),
    sequence          BIGINT NOT NULL,
    event             TEXT NOT NULL,
    url               TEXT NOT NULL,
    -- The exact bytes that are signed and sent on every attempt.
    body              BYTEA NOT NULL,
    -- pending, delivered, failed or superseded.
    status            TEXT NOT NULL,
    attempt_count     BIGINT NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT NOT NULL,
    last_error        TEXT,
    -- Set by `webhooks redeliver`; a running worker's sweep takes it.
    requeue_requested BOOLEAN NOT NULL DEFAULT false,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (job_id, sequence)
);

CREATE INDEX deliveries_pending ON deliveries (job_id, sequence) WHERE status = 'pending';
CREATE INDEX deliveries_by_created ON deliveries (created_at, job_id, sequence);
CREATE INDEX deliveries_requeue ON deliveries (delivery_id) WHERE requeue_requested;

CREATE TABLE delivery_attempts (
    attempt_id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id       TEXT NOT NULL REFERENCES deliveries (delivery_id),
    attempted_at      BIGINT NOT NULL,
    status_code       BIGINT,
    error             TEXT,
    duration_ms       BIGINT NOT NULL
);

CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id, attempt_id);
