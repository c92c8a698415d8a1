-- The API's schema: users and their tokens, clipping jobs and their clips,
-- the webhook ledger, the per-user notification log, WebSocket tickets and
-- the submission queue.

CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL UNIQUE,
    name          text,
    -- The per-user notification counter. It is incremented in the same
    -- transaction that appends to user_events, under this row's lock, so a
    -- user's event ids are gap-free and commit in order.
    last_event_id bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Only the SHA-256 of a token is kept: a leaked table leaks no credentials.
CREATE TABLE api_tokens (
    token_hash bytea       PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Single-use WebSocket tickets, hashed like tokens, so that any API instance
-- can redeem a ticket another one issued.
CREATE TABLE ws_tickets (
    ticket_hash bytea       PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX ws_tickets_expires_at ON ws_tickets (expires_at);

CREATE TABLE clipping_jobs (
    id                            uuid             PRIMARY KEY,
    user_id                       uuid             NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status                        text             NOT NULL DEFAULT 'pending'
        CONSTRAINT clipping_jobs_status_check
        CHECK (status IN ('pending', 'submitted', 'processing', 'completed', 'failed')),
    worker_job_id                 text,
    video_url                     text             NOT NULL,
    -- The worker request minus what the submitter fills in at send time
    -- (callback_url, external_job_id, owner_user_id).
    request                       jsonb            NOT NULL,
    progress_percent              double precision NOT NULL DEFAULT 0,
    current_step                  text,
    pipeline_status               text,
    clips_completed               integer          NOT NULL DEFAULT 0,
    total_clips                   integer          NOT NULL DEFAULT 0,
    error                         text,
    source_video_title            text,
    source_video_duration_seconds double precision,
    processing_time_seconds       double precision,
    -- Highest webhook `sequence` applied; 0 before any.
    last_sequence                 bigint           NOT NULL DEFAULT 0,
    -- Last time we heard of the job from the worker (submission answer,
    -- webhook, reconciliation); drives the reconciler.
    last_heard_at                 timestamptz,
    created_at                    timestamptz      NOT NULL DEFAULT now(),
    updated_at                    timestamptz      NOT NULL DEFAULT now(),
    completed_at                  timestamptz,
    failed_at                     timestamptz
);
CREATE INDEX clipping_jobs_user_created ON clipping_jobs (user_id, created_at DESC, id DESC);
CREATE INDEX clipping_jobs_worker_job_id ON clipping_jobs (worker_job_id) WHERE worker_job_id IS NOT NULL;
CREATE INDEX clipping_jobs_active ON clipping_jobs (last_heard_at)
    WHERE status IN ('submitted', 'processing');

CREATE TABLE clips (
    job_id          uuid             NOT NULL REFERENCES clipping_jobs (id) ON DELETE CASCADE,
    clip_index      integer          NOT NULL,
    user_id         uuid             NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url             text             NOT NULL,
    duration_ms     bigint           NOT NULL,
    start_time_ms   bigint           NOT NULL,
    end_time_ms     bigint           NOT NULL,
    virality_score  double precision NOT NULL,
    layout_type     text             NOT NULL,
    summary         text,
    tags            text[]           NOT NULL DEFAULT '{}',
    created_at      timestamptz      NOT NULL DEFAULT now(),
    -- One row per clip however often job.completed is delivered.
    CONSTRAINT clips_job_clip_index UNIQUE (job_id, clip_index)
);

-- Every webhook delivery received, by its `webhook-id`: the idempotency key.
CREATE TABLE webhook_receipts (
    webhook_id  text        PRIMARY KEY,
    job_id      uuid        REFERENCES clipping_jobs (id) ON DELETE SET NULL,
    event       text        NOT NULL,
    sequence    bigint,
    -- applied | stale | terminal | unknown_job
    outcome     text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- The notifications pushed to browsers, per user, numbered by the user's
-- counter. The WebSocket hub reads it by cursor; `?since=` replays from it.
CREATE TABLE user_events (
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    event_id   bigint      NOT NULL,
    job_id     uuid        NOT NULL,
    -- The complete WebSocket message, exactly as sent.
    message    jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, event_id)
);

-- The outbound queue of job submissions to the worker.
CREATE TABLE job_submissions (
    job_id          uuid        PRIMARY KEY REFERENCES clipping_jobs (id) ON DELETE CASCADE,
    -- pending (to send), done (the worker accepted), failed (the worker refused)
    state           text        NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'done', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_submissions_due ON job_submissions (next_attempt_at) WHERE state = 'pending';
