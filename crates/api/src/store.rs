//! Storage: every SQL statement of the service, as small functions taking a
//! pool or a connection (a transaction derefs to one).
//!
//! Queries are runtime-checked (`sqlx::query`), so building needs no database.
//! Statements are `&'static str`; column lists are shared through macros and
//! `concat!` so that the row structs and their `SELECT`s cannot drift apart.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use webhook_types::{ProgressPercent, Timestamp};

use crate::jobs::JobStatus;
use crate::token;

/// The columns of [`JobRow`], in a `concat!`-able macro.
macro_rules! job_columns {
    () => {
        "id, user_id, status, worker_job_id, video_url, progress_percent, current_step, \
         pipeline_status, clips_completed, total_clips, error, source_video_title, \
         source_video_duration_seconds, processing_time_seconds, last_sequence, \
         created_at, updated_at, completed_at, failed_at"
    };
}

/// The columns of [`Clip`].
macro_rules! clip_columns {
    () => {
        "clip_index, url, duration_ms, start_time_ms, end_time_ms, virality_score, \
         layout_type, summary, tags"
    };
}

/// A clipping job as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    /// The API's id of the job; also the `external_job_id` sent to the worker.
    pub id: Uuid,
    /// The owner.
    pub user_id: Uuid,
    /// Where the job is in its life.
    pub status: JobStatus,
    /// The worker's id, once known (from its answer or a webhook).
    pub worker_job_id: Option<String>,
    /// The source video.
    pub video_url: String,
    /// 0 to 100.
    pub progress_percent: f64,
    /// The worker's description of the step.
    pub current_step: Option<String>,
    /// The worker's pipeline status (downloading, …).
    pub pipeline_status: Option<String>,
    /// Clips rendered so far.
    pub clips_completed: i32,
    /// Clips the job will produce.
    pub total_clips: i32,
    /// Why the job failed.
    pub error: Option<String>,
    /// From the job's output.
    pub source_video_title: Option<String>,
    /// From the job's output.
    pub source_video_duration_seconds: Option<f64>,
    /// From the job's output.
    pub processing_time_seconds: Option<f64>,
    /// Highest webhook `sequence` applied, 0 before any.
    pub last_sequence: i64,
    /// When the job was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// When it failed.
    pub failed_at: Option<DateTime<Utc>>,
}

/// A clip, as stored and as shown (camelCase, the contract's fields).
#[derive(
    Debug, Clone, PartialEq, Serialize, serde::Deserialize, sqlx::FromRow, utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct Clip {
    /// Position in the job's output.
    pub clip_index: i32,
    /// Where to watch it (rewritten for the CDN).
    pub url: String,
    /// Length.
    pub duration_ms: i64,
    /// Start in the source.
    pub start_time_ms: i64,
    /// End in the source.
    pub end_time_ms: i64,
    /// 0 to 1.
    pub virality_score: f64,
    /// Framing.
    pub layout_type: String,
    /// One line on the clip.
    #[schema(required = true)]
    pub summary: Option<String>,
    /// Topic tags.
    pub tags: Vec<String>,
}

/// A job as the REST API and the browser see it (camelCase).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobJson {
    /// The job's id.
    pub id: Uuid,
    /// pending, submitted, processing, completed or failed.
    pub status: JobStatus,
    /// The worker's id.
    #[schema(required = true)]
    pub worker_job_id: Option<String>,
    /// The source video.
    pub video_url: String,
    /// 0 to 100.
    pub progress_percent: ProgressPercent,
    /// The worker's description of the step.
    #[schema(required = true)]
    pub current_step: Option<String>,
    /// The worker's pipeline status.
    #[schema(required = true)]
    pub pipeline_status: Option<String>,
    /// Clips rendered so far.
    pub clips_completed: i32,
    /// Clips the job will produce.
    pub total_clips: i32,
    /// Why the job failed.
    #[schema(required = true)]
    pub error: Option<String>,
    /// From the output.
    #[schema(required = true)]
    pub source_video_title: Option<String>,
    /// From the output.
    #[schema(required = true)]
    pub source_video_duration_seconds: Option<f64>,
    /// From the output.
    #[schema(required = true)]
    pub processing_time_seconds: Option<f64>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Completion time.
    #[schema(required = true)]
    pub completed_at: Option<Timestamp>,
    /// Failure time.
    #[schema(required = true)]
    pub failed_at: Option<Timestamp>,
    /// The clips, on `GET /api/clipping-jobs/{id}` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub clips: Option<Vec<Clip>>,
}

impl JobRow {
    /// The JSON view, with or without clips.
    pub fn to_json(&self, clips: Option<Vec<Clip>>) -> JobJson {
        JobJson {
            id: self.id,
            status: self.status,
            worker_job_id: self.worker_job_id.clone(),
            video_url: self.video_url.clone(),
            progress_percent: ProgressPercent::new(self.progress_percent)
                .unwrap_or(ProgressPercent::ZERO),
            current_step: self.current_step.clone(),
            pipeline_status: self.pipeline_status.clone(),
            clips_completed: self.clips_completed,
            total_clips: self.total_clips,
            error: self.error.clone(),
            source_video_title: self.source_video_title.clone(),
            source_video_duration_seconds: self.source_video_duration_seconds,
            processing_time_seconds: self.processing_time_seconds,
            created_at: self.created_at.into(),
            updated_at: self.updated_at.into(),
            completed_at: self.completed_at.map(Into::into),
            failed_at: self.failed_at.map(Into::into),
            clips,
        }
    }
}

/// One round trip: is the database there?
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

// ---------------------------------------------------------------- users

/// Creates a user with one API token; returns the user's id and the token,
/// which is not stored anywhere in clear.
pub async fn create_user(
    pool: &PgPool,
    email: &str,
    name: Option<&str>,
) -> Result<(Uuid, String), sqlx::Error> {
    let id = Uuid::now_v7();
    let secret = token::new_secret(token::TOKEN_PREFIX);
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO users (id, email, name) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(email)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO api_tokens (token_hash, user_id) VALUES ($1, $2)")
        .bind(token::hash_secret(&secret))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((id, secret))
}

/// The user a token hash belongs to.
pub async fn user_for_token(pool: &PgPool, hash: &[u8]) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM api_tokens WHERE token_hash = $1")
        .bind(hash)
        .fetch_optional(pool)
        .await
}

/// Stores a WebSocket ticket; also sweeps expired ones, which keeps the table
/// small without a separate job.
pub async fn insert_ticket(
    pool: &PgPool,
    user: Uuid,
    hash: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM ws_tickets WHERE expires_at < now() - interval '1 minute'")
        .execute(pool)
        .await?;
    sqlx::query("INSERT INTO ws_tickets (ticket_hash, user_id, expires_at) VALUES ($1, $2, $3)")
        .bind(hash)
        .bind(user)
        .bind(expires_at)
        .execute(pool)
        .await?;
    Ok(())
}

/// Redeems a ticket: deleting it makes it single use on every instance.
pub async fn redeem_ticket(pool: &PgPool, hash: &[u8]) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "DELETE FROM ws_tickets WHERE ticket_hash = $1 AND expires_at > now() RETURNING user_id",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await
}

// ---------------------------------------------------------------- jobs

/// Inserts a pending job and its submission row in one transaction.
pub async fn insert_job(
    conn: &mut PgConnection,
    id: Uuid,
    user: Uuid,
    video_url: &str,
    request: &serde_json::Value,
) -> Result<JobRow, sqlx::Error> {
    let row: JobRow = sqlx::query_as(concat!(
        "INSERT INTO clipping_jobs (id, user_id, video_url, request) VALUES ($1, $2, $3, $4) RETURNING ",
        job_columns!()
    ))
    .bind(id)
    .bind(user)
    .bind(video_url)
    .bind(request)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("INSERT INTO job_submissions (job_id) VALUES ($1)")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(row)
}

/// A user's jobs, newest first (at most `limit`).
pub async fn list_jobs(pool: &PgPool, user: Uuid, limit: i64) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        job_columns!(),
        " FROM clipping_jobs WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
    ))
    .bind(user)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// One of a user's jobs; `None` for a job of anyone else.
pub async fn get_job(pool: &PgPool, user: Uuid, id: Uuid) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        job_columns!(),
        " FROM clipping_jobs WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user)
    .fetch_optional(pool)
    .await
}

/// A job's clips by index.
pub async fn clips_for_job(
    conn: impl sqlx::PgExecutor<'_>,
    job: Uuid,
) -> Result<Vec<Clip>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        clip_columns!(),
        " FROM clips WHERE job_id = $1 ORDER BY clip_index"
    ))
    .bind(job)
    .fetch_all(conn)
    .await
}

/// Locks a job by the API's id, for the duration of the transaction.
pub async fn lock_job(conn: &mut PgConnection, id: Uuid) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        job_columns!(),
        " FROM clipping_jobs WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Locks a job by the worker's id.
pub async fn lock_job_by_worker_id(
    conn: &mut PgConnection,
    worker_job_id: &str,
) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        job_columns!(),
        " FROM clipping_jobs WHERE worker_job_id = $1 ORDER BY created_at LIMIT 1 FOR UPDATE"
    ))
    .bind(worker_job_id)
    .fetch_optional(conn)
    .await
}

/// What a recorded webhook delivery did, as `webhook_receipts.outcome`
/// holds it. (A duplicate is never recorded: its first delivery is.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum ReceiptOutcome {
    /// The job moved (or stayed, if nothing new).
    Applied,
    /// Older than what was applied already.
    Stale,
    /// The job is completed or failed and does not change again.
    Terminal,
    /// No job matches.
    UnknownJob,
}

impl ReceiptOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptOutcome::Applied => "applied",
            ReceiptOutcome::Stale => "stale",
            ReceiptOutcome::Terminal => "terminal",
            ReceiptOutcome::UnknownJob => "unknown_job",
        }
    }
}

/// Records a webhook delivery by its id. `false` when the id was already
/// recorded: the delivery is a duplicate and must change nothing.
pub async fn insert_receipt(
    conn: &mut PgConnection,
    webhook_id: &str,
    job: Option<Uuid>,
    event: &str,
    sequence: Option<i64>,
    outcome: ReceiptOutcome,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO webhook_receipts (webhook_id, job_id, event, sequence, outcome) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (webhook_id) DO NOTHING",
    )
    .bind(webhook_id)
    .bind(job)
    .bind(event)
    .bind(sequence)
    .bind(outcome)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The new values of a job's mutable columns, written by [`update_job`].
#[derive(Debug, Clone)]
pub struct JobUpdate<'a> {
    /// New status.
    pub status: JobStatus,
    /// The worker's id, kept when already known.
    pub worker_job_id: Option<&'a str>,
    /// New progress.
    pub progress_percent: f64,
    /// New step text.
    pub current_step: Option<&'a str>,
    /// New pipeline status.
    pub pipeline_status: Option<&'a str>,
    /// New clip counts.
    pub clips_completed: i32,
    /// New clip counts.
    pub total_clips: i32,
    /// Error, on failure.
    pub error: Option<&'a str>,
    /// From the output, on completion.
    pub source_video_title: Option<&'a str>,
    /// From the output.
    pub source_video_duration_seconds: Option<f64>,
    /// From the output.
    pub processing_time_seconds: Option<f64>,
    /// New highest applied sequence.
    pub last_sequence: i64,
}

/// Writes a transition; stamps `completed_at`/`failed_at` on entering those
/// states and `last_heard_at` always.
pub async fn update_job(
    conn: &mut PgConnection,
    id: Uuid,
    u: &JobUpdate<'_>,
) -> Result<JobRow, sqlx::Error> {
    sqlx::query_as(concat!(
        "UPDATE clipping_jobs SET status = $2, worker_job_id = COALESCE(worker_job_id, $3), \
         progress_percent = $4, current_step = $5, pipeline_status = $6, clips_completed = $7, \
         total_clips = $8, error = COALESCE($9, error), \
         source_video_title = COALESCE($10, source_video_title), \
         source_video_duration_seconds = COALESCE($11, source_video_duration_seconds), \
         processing_time_seconds = COALESCE($12, processing_time_seconds), \
         last_sequence = $13, last_heard_at = now(), updated_at = now(), \
         completed_at = CASE WHEN $2 = 'completed' THEN COALESCE(completed_at, now()) ELSE completed_at END, \
         failed_at = CASE WHEN $2 = 'failed' THEN COALESCE(failed_at, now()) ELSE failed_at END \
         WHERE id = $1 RETURNING ",
        job_columns!()
    ))
    .bind(id)
    .bind(u.status)
    .bind(u.worker_job_id)
    .bind(u.progress_percent)
    .bind(u.current_step)
    .bind(u.pipeline_status)
    .bind(u.clips_completed)
    .bind(u.total_clips)
    .bind(u.error)
    .bind(u.source_video_title)
    .bind(u.source_video_duration_seconds)
    .bind(u.processing_time_seconds)
    .bind(u.last_sequence)
    .fetch_one(conn)
    .await
}

/// Notes that the worker was heard of (a stale or terminal event still shows
/// the job is alive), without changing anything else.
pub async fn touch_job(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE clipping_jobs SET last_heard_at = now() WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Writes one clip; a clip already there keeps its row (the first complete
/// delivery wins, so a repeated `job.completed` cannot rewrite history).
pub async fn insert_clip(
    conn: &mut PgConnection,
    job: Uuid,
    user: Uuid,
    clip: &Clip,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO clips (job_id, clip_index, user_id, url, duration_ms, start_time_ms, \
         end_time_ms, virality_score, layout_type, summary, tags) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT ON CONSTRAINT clips_job_clip_index DO NOTHING",
    )
    .bind(job)
    .bind(clip.clip_index)
    .bind(user)
    .bind(&clip.url)
    .bind(clip.duration_ms)
    .bind(clip.start_time_ms)
    .bind(clip.end_time_ms)
    .bind(clip.virality_score)
    .bind(&clip.layout_type)
    .bind(&clip.summary)
    .bind(&clip.tags)
    .execute(conn)
    .await?;
    Ok(())
}

/// The NOTIFY channel that wakes every instance's hub.
pub const EVENTS_CHANNEL: &str = "api_events";

/// Appends a notification to the user's event log under the next number of
/// the user's counter, and queues a NOTIFY `"{user}:{event_id}"`.
///
/// Both happen inside the caller's transaction: PostgreSQL delivers the
/// NOTIFY only on commit, so nothing is pushed that was not committed. The
/// counter row stays locked until commit, so a user's events commit in
/// event-id order and a reader by cursor never skips one.
/// `message` must be a JSON object; its `eventId` is set here.
pub async fn append_event(
    conn: &mut PgConnection,
    user: Uuid,
    job: Uuid,
    message: &serde_json::Value,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "WITH c AS (UPDATE users SET last_event_id = last_event_id + 1 WHERE id = $1 \
                    RETURNING last_event_id), \
              e AS (INSERT INTO user_events (user_id, event_id, job_id, message) \
                    SELECT $1, c.last_event_id, $2, \
                           jsonb_set($3::jsonb, '{eventId}', to_jsonb(c.last_event_id)) FROM c \
                    RETURNING event_id) \
         SELECT e.event_id, pg_notify('api_events', $1::text || ':' || e.event_id)::text FROM e",
    )
    .bind(user)
    .bind(job)
    .bind(message)
    .fetch_one(conn)
    .await
}

/// One stored notification, its message as JSON text.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    /// The owner.
    pub user_id: Uuid,
    /// The per-user number.
    pub event_id: i64,
    /// The job it is about.
    pub job_id: Uuid,
    /// The WebSocket message.
    pub message: String,
}

/// The user's current event counter: the id of their latest event.
pub async fn last_event_id(pool: &PgPool, user: Uuid) -> Result<i64, sqlx::Error> {
    Ok(
        sqlx::query_scalar("SELECT last_event_id FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(pool)
            .await?
            .unwrap_or(0),
    )
}

/// A user's events after `after`, in order, at most `limit`.
pub async fn events_after(
    pool: &PgPool,
    user: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<EventRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT user_id, event_id, job_id, message::text AS message FROM user_events \
         WHERE user_id = $1 AND event_id > $2 ORDER BY event_id LIMIT $3",
    )
    .bind(user)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Events of many users at once, each after its own cursor: one round trip
/// per hub wake-up whatever the number of users.
pub async fn events_after_many(
    pool: &PgPool,
    users: &[Uuid],
    cursors: &[i64],
    limit: i64,
) -> Result<Vec<EventRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT e.user_id, e.event_id, e.job_id, e.message::text AS message \
         FROM unnest($1::uuid[], $2::int8[]) AS c(user_id, cursor) \
         JOIN user_events e ON e.user_id = c.user_id AND e.event_id > c.cursor \
         ORDER BY e.user_id, e.event_id LIMIT $3",
    )
    .bind(users)
    .bind(cursors)
    .bind(limit)
    .fetch_all(pool)
    .await
}

// ---------------------------------------------------------------- batches of webhooks
//
// The statements of `crate::batch`: a whole batch of deliveries is read with
// two statements and written with one (two more when it completes a job),
// whatever its size. Rows travel as parallel arrays through `unnest`.

/// Locks, in id order, every job a batch may touch: those whose id is one of
/// `ids` and those whose worker id is one of `worker_ids`. The fixed order
/// means two batches (of any lane or instance) wait for each other's jobs
/// instead of deadlocking on them.
pub async fn lock_jobs_for_batch(
    conn: &mut PgConnection,
    ids: &[Uuid],
    worker_ids: &[String],
) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        job_columns!(),
        " FROM clipping_jobs WHERE id = ANY($1) \
         OR (worker_job_id = ANY($2) AND worker_job_id IS NOT NULL) ORDER BY id FOR UPDATE"
    ))
    .bind(ids)
    .bind(worker_ids)
    .fetch_all(conn)
    .await
}

/// Which of these `webhook-id`s are recorded already. Read after the
/// batch's jobs are locked, so that a delivery of one of those jobs that
/// another transaction was applying is seen here once it has committed.
pub async fn recorded_receipts(
    conn: &mut PgConnection,
    webhook_ids: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT webhook_id FROM webhook_receipts WHERE webhook_id = ANY($1)")
        .bind(webhook_ids)
        .fetch_all(conn)
        .await
}

/// A clip to write, with the job and owner it belongs to.
#[derive(Debug, Clone)]
pub struct NewClip {
    /// The job.
    pub job: Uuid,
    /// Its owner.
    pub user: Uuid,
    /// The clip as it is to be stored.
    pub clip: Clip,
}

/// Writes clips in one statement; as [`insert_clip`], a clip already there
/// keeps its row. Tags travel as JSON text, since `unnest` cannot take an
/// array of arrays of different lengths.
pub async fn insert_clips(conn: &mut PgConnection, clips: &[NewClip]) -> Result<(), sqlx::Error> {
    let mut job = Vec::with_capacity(clips.len());
    let mut user = Vec::with_capacity(clips.len());
    let mut index = Vec::with_capacity(clips.len());
    let mut url = Vec::with_capacity(clips.len());
    let mut duration = Vec::with_capacity(clips.len());
    let mut start = Vec::with_capacity(clips.len());
    let mut end = Vec::with_capacity(clips.len());
    let mut score = Vec::with_capacity(clips.len());
    let mut layout = Vec::with_capacity(clips.len());
    let mut summary = Vec::with_capacity(clips.len());
    let mut tags = Vec::with_capacity(clips.len());
    for c in clips {
        job.push(c.job);
        user.push(c.user);
        index.push(c.clip.clip_index);
        url.push(c.clip.url.as_str());
        duration.push(c.clip.duration_ms);
        start.push(c.clip.start_time_ms);
        end.push(c.clip.end_time_ms);
        score.push(c.clip.virality_score);
        layout.push(c.clip.layout_type.as_str());
        summary.push(c.clip.summary.as_deref());
        tags.push(serde_json::to_string(&c.clip.tags).expect("strings serialise"));
    }
    sqlx::query(
        "INSERT INTO clips (job_id, clip_index, user_id, url, duration_ms, start_time_ms, \
         end_time_ms, virality_score, layout_type, summary, tags) \
         SELECT v.job_id, v.clip_index, v.user_id, v.url, v.duration_ms, v.start_time_ms, \
                v.end_time_ms, v.virality_score, v.layout_type, v.summary, \
                ARRAY(SELECT jsonb_array_elements_text(v.tags::jsonb)) \
         FROM unnest($1::uuid[], $2::int4[], $3::uuid[], $4::text[], $5::int8[], $6::int8[], \
                     $7::int8[], $8::float8[], $9::text[], $10::text[], $11::text[]) \
              WITH ORDINALITY AS v(job_id, clip_index, user_id, url, duration_ms, start_time_ms, \
                     end_time_ms, virality_score, layout_type, summary, tags, n) \
         ORDER BY v.n \
         ON CONFLICT ON CONSTRAINT clips_job_clip_index DO NOTHING",
    )
    .bind(job)
    .bind(index)
    .bind(user)
    .bind(url)
    .bind(duration)
    .bind(start)
    .bind(end)
    .bind(score)
    .bind(layout)
    .bind(summary)
    .bind(tags)
    .execute(conn)
    .await?;
    Ok(())
}

/// A clip with the job it belongs to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobClip {
    /// The job.
    pub job_id: Uuid,
    /// The clip.
    #[sqlx(flatten)]
    pub clip: Clip,
}

/// The clips of several jobs, by job, then by index.
pub async fn clips_for_jobs(
    conn: &mut PgConnection,
    jobs: &[Uuid],
) -> Result<Vec<JobClip>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT job_id, ",
        clip_columns!(),
        " FROM clips WHERE job_id = ANY($1) ORDER BY job_id, clip_index"
    ))
    .bind(jobs)
    .fetch_all(conn)
    .await
}

/// A `webhook_receipts` row to write.
#[derive(Debug, Clone)]
pub struct NewReceipt {
    /// The delivery's id (already made storable).
    pub webhook_id: String,
    /// The job it was about, if any matched.
    pub job: Option<Uuid>,
    /// `job.progress`, …
    pub event: &'static str,
    /// The webhook's sequence.
    pub sequence: Option<i64>,
    /// What became of it.
    pub outcome: ReceiptOutcome,
}

/// A job's new state for [`write_batch`].
#[derive(Debug, Clone, Copy)]
pub struct JobWrite<'a> {
    /// Every mutable column's new value (the rest is ignored).
    pub row: &'a JobRow,
    /// Whether a change was applied (stamps `updated_at` and, on entering
    /// those states, `completed_at`/`failed_at`); if not, the job was only
    /// heard of and keeps its values.
    pub applied: bool,
}

/// A notification to append to its owner's log.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The owner, whose counter numbers it.
    pub user: Uuid,
    /// The job.
    pub job: Uuid,
    /// The message, `eventId` still to be filled in (a JSON object).
    pub message: serde_json::Value,
}

/// What [`write_batch`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchWritten {
    /// Receipts inserted; fewer than given means some `webhook-id` was
    /// recorded meanwhile by another transaction.
    pub receipts: i64,
    /// Events appended.
    pub events: i64,
}

/// Writes a batch's decided effects in one statement: its receipts (in
/// `webhook-id` order), its jobs' new states, and its events, numbered per
/// user in the order given from a contiguous range of that user's counter;
/// then one NOTIFY for the batch, `"{user}:{last event id}"` per user, comma
/// separated (or `*`, "read everyone", should that not fit a payload).
///
/// User counters are locked in id order, after the jobs the caller locked:
/// the same order as every other writer of both, so batches of concurrent
/// lanes and instances cannot deadlock. The counters stay locked until
/// commit, so a user's events commit in event-id order and a reader by
/// cursor never skips one.
pub async fn write_batch(
    conn: &mut PgConnection,
    receipts: &[NewReceipt],
    jobs: &[JobWrite<'_>],
    events: &[NewEvent],
) -> Result<BatchWritten, sqlx::Error> {
    let mut receipts: Vec<&NewReceipt> = receipts.iter().collect();
    receipts.sort_by(|a, b| a.webhook_id.cmp(&b.webhook_id));

    // Per user, in the order given: how many, and each event's place.
    let mut counts: Vec<(Uuid, i64)> = Vec::new();
    let mut places = Vec::with_capacity(events.len());
    for e in events {
        let i = match counts.iter().position(|(u, _)| *u == e.user) {
            Some(i) => i,
            None => {
                counts.push((e.user, 0));
                counts.len() - 1
            }
        };
        counts[i].1 += 1;
        places.push(counts[i].1);
    }
    counts.sort_by_key(|(u, _)| *u);

    let (written_receipts, written_events, _): (i64, i64, Option<String>) = sqlx::query_as(
        "WITH receipts AS ( \
             INSERT INTO webhook_receipts (webhook_id, job_id, event, sequence, outcome) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::int8[], $5::text[]) \
             ON CONFLICT (webhook_id) DO NOTHING RETURNING 1), \
         jobs AS ( \
             UPDATE clipping_jobs j SET status = v.status, worker_job_id = v.worker_job_id, \
                 progress_percent = v.progress_percent, current_step = v.current_step, \
                 pipeline_status = v.pipeline_status, clips_completed = v.clips_completed, \
                 total_clips = v.total_clips, error = v.error, \
                 source_video_title = v.source_video_title, \
                 source_video_duration_seconds = v.source_video_duration_seconds, \
                 processing_time_seconds = v.processing_time_seconds, \
                 last_sequence = v.last_sequence, last_heard_at = now(), \
                 updated_at = CASE WHEN v.applied THEN now() ELSE j.updated_at END, \
                 completed_at = CASE WHEN v.applied AND v.status = 'completed' \
                     THEN COALESCE(j.completed_at, now()) ELSE j.completed_at END, \
                 failed_at = CASE WHEN v.applied AND v.status = 'failed' \
                     THEN COALESCE(j.failed_at, now()) ELSE j.failed_at END \
             FROM unnest($6::uuid[], $7::bool[], $8::text[], $9::text[], $10::float8[], \
                         $11::text[], $12::text[], $13::int4[], $14::int4[], $15::text[], \
                         $16::text[], $17::float8[], $18::float8[], $19::int8[]) \
                  AS v(id, applied, status, worker_job_id, progress_percent, current_step, \
                       pipeline_status, clips_completed, total_clips, error, \
                       source_video_title, source_video_duration_seconds, \
                       processing_time_seconds, last_sequence) \
             WHERE j.id = v.id RETURNING 1), \
         locked AS MATERIALIZED ( \
             SELECT id FROM users WHERE id = ANY($20::uuid[]) ORDER BY id FOR UPDATE), \
         counters AS ( \
             UPDATE users u SET last_event_id = u.last_event_id + c.n \
             FROM locked l JOIN unnest($20::uuid[], $21::int8[]) AS c(id, n) ON c.id = l.id \
             WHERE u.id = l.id \
             RETURNING u.id, u.last_event_id - c.n AS base, u.last_event_id AS last), \
         events AS ( \
             INSERT INTO user_events (user_id, event_id, job_id, message) \
             SELECT e.user_id, c.base + e.place, e.job_id, \
                    jsonb_set(e.message, '{eventId}', to_jsonb(c.base + e.place)) \
             FROM unnest($22::uuid[], $23::int8[], $24::uuid[], $25::jsonb[]) \
                  AS e(user_id, place, job_id, message) \
             JOIN counters c ON c.id = e.user_id RETURNING 1) \
         SELECT (SELECT count(*) FROM receipts), (SELECT count(*) FROM events), \
                (SELECT pg_notify('api_events', \
                            CASE WHEN octet_length(p) <= 7900 THEN p ELSE '*' END)::text \
                 FROM (SELECT string_agg(id::text || ':' || last, ',' ORDER BY id) AS p \
                       FROM counters) s WHERE p IS NOT NULL)",
    )
    .bind(
        receipts
            .iter()
            .map(|r| r.webhook_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(receipts.iter().map(|r| r.job).collect::<Vec<_>>())
    .bind(receipts.iter().map(|r| r.event).collect::<Vec<_>>())
    .bind(receipts.iter().map(|r| r.sequence).collect::<Vec<_>>())
    .bind(
        receipts
            .iter()
            .map(|r| r.outcome.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(jobs.iter().map(|j| j.row.id).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.applied).collect::<Vec<_>>())
    .bind(
        jobs.iter()
            .map(|j| j.row.status.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        jobs.iter()
            .map(|j| j.row.worker_job_id.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        jobs.iter()
            .map(|j| j.row.progress_percent)
            .collect::<Vec<_>>(),
    )
    .bind(
        jobs.iter()
            .map(|j| j.row.current_step.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        jobs.iter()
            .map(|j| j.row.pipeline_status.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        jobs.iter()
            .map(|j| j.row.clips_completed)
            .collect::<Vec<_>>(),
    )
    .bind(jobs.iter().map(|j| j.row.total_clips).collect::<Vec<_>>())
    .bind(
        jobs.iter()
            .map(|j| j.row.error.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        jobs.iter()
            .map(|j| j.row.source_video_title.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        jobs.iter()
            .map(|j| j.row.source_video_duration_seconds)
            .collect::<Vec<_>>(),
    )
    .bind(
        jobs.iter()
            .map(|j| j.row.processing_time_seconds)
            .collect::<Vec<_>>(),
    )
    .bind(jobs.iter().map(|j| j.row.last_sequence).collect::<Vec<_>>())
    .bind(counts.iter().map(|(u, _)| *u).collect::<Vec<_>>())
    .bind(counts.iter().map(|(_, n)| *n).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.user).collect::<Vec<_>>())
    .bind(places)
    .bind(events.iter().map(|e| e.job).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.message.clone()).collect::<Vec<_>>())
    .fetch_one(conn)
    .await?;
    Ok(BatchWritten {
        receipts: written_receipts,
        events: written_events,
    })
}

// ---------------------------------------------------------------- submission

/// A submission claimed for sending.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedSubmission {
    /// The job.
    pub job_id: Uuid,
    /// Its owner.
    pub user_id: Uuid,
    /// The stored worker request (without callback and ids).
    pub request: serde_json::Value,
    /// Attempts so far, this one included.
    pub attempts: i32,
}

/// Claims the most overdue pending submission. The claim is a lease: its
/// next attempt moves `lease` into the future, so another instance will not
/// take it meanwhile, and a crash mid-send only delays it (the worker dedupes
/// a repeated `external_job_id`).
pub async fn claim_submission(
    pool: &PgPool,
    lease: std::time::Duration,
) -> Result<Option<ClaimedSubmission>, sqlx::Error> {
    sqlx::query_as(
        "WITH due AS (SELECT job_id FROM job_submissions \
                      WHERE state = 'pending' AND next_attempt_at <= now() \
                      ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED), \
              s AS (UPDATE job_submissions SET attempts = attempts + 1, updated_at = now(), \
                       next_attempt_at = now() + make_interval(secs => $1) \
                    FROM due WHERE job_submissions.job_id = due.job_id \
                    RETURNING job_submissions.job_id, job_submissions.attempts) \
         SELECT s.job_id, j.user_id, j.request, s.attempts FROM s \
         JOIN clipping_jobs j ON j.id = s.job_id",
    )
    .bind(lease.as_secs_f64())
    .fetch_optional(pool)
    .await
}

/// Schedules another attempt after a failure the worker may recover from.
pub async fn retry_submission(
    pool: &PgPool,
    job: Uuid,
    delay: std::time::Duration,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE job_submissions SET next_attempt_at = now() + make_interval(secs => $2), \
         last_error = $3, updated_at = now() WHERE job_id = $1 AND state = 'pending'",
    )
    .bind(job)
    .bind(delay.as_secs_f64())
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Where a row of the submitter's queue (`job_submissions`) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum SubmissionState {
    /// Waiting for its next attempt.
    Pending,
    /// The worker accepted the job.
    Done,
    /// The worker refused the job for good.
    Failed,
}

/// Closes a submission as [`SubmissionState::Done`] or
/// [`SubmissionState::Failed`].
pub async fn finish_submission(
    conn: &mut PgConnection,
    job: Uuid,
    state: SubmissionState,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE job_submissions SET state = $2, last_error = COALESCE($3, last_error), \
         updated_at = now() WHERE job_id = $1",
    )
    .bind(job)
    .bind(state)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the worker's acceptance: its job id, and `submitted` unless a
/// webhook already moved the job further.
pub async fn mark_submitted(
    conn: &mut PgConnection,
    job: Uuid,
    worker_job_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE clipping_jobs SET worker_job_id = COALESCE(worker_job_id, $2), \
         status = CASE WHEN status = 'pending' THEN 'submitted' ELSE status END, \
         last_heard_at = now(), updated_at = now() WHERE id = $1",
    )
    .bind(job)
    .bind(worker_job_id)
    .execute(conn)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------- reconciliation

/// Claims up to `limit` active jobs not heard of for `stale_after`, stamping
/// them as heard so that the next round (on any instance) skips them.
pub async fn claim_stale_jobs(
    pool: &PgPool,
    stale_after: std::time::Duration,
    limit: i64,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE clipping_jobs SET last_heard_at = now() WHERE id IN ( \
             SELECT id FROM clipping_jobs \
             WHERE status IN ('submitted', 'processing') AND worker_job_id IS NOT NULL \
               AND (last_heard_at IS NULL OR last_heard_at < now() - make_interval(secs => $1)) \
             ORDER BY last_heard_at NULLS FIRST LIMIT $2 FOR UPDATE SKIP LOCKED) \
         RETURNING id, worker_job_id",
    )
    .bind(stale_after.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await
}
