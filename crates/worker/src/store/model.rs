//! The store's types, shared by both implementations: what a job, a
//! delivery and an attempt look like to the rest of the worker, and the
//! changes the reporter and the sender ask the store to make.

use std::str::FromStr;

use webhook_types::{ClippingJobRequest, Event, JobOutput, JobState, JobView, ProgressPercent};

use crate::clock::timestamp_from_ms;

/// A job as stored.
#[derive(Debug, Clone)]
pub struct JobRow {
    /// The worker's id.
    pub job_id: String,
    /// The submitter's id, unique when present.
    pub external_job_id: Option<String>,
    /// The user the submitter acted for.
    pub owner_user_id: Option<String>,
    /// The accepted request.
    pub request: ClippingJobRequest,
    /// Where this job's webhooks go, if anywhere.
    pub callback_url: Option<String>,
    /// Queued, a pipeline status, or terminal.
    pub state: JobState,
    /// Progress of the last emitted event.
    pub progress_percent: f64,
    /// Step text of the last emitted event.
    pub current_step: String,
    /// Clips rendered so far, once known.
    pub clips_completed: Option<u32>,
    /// Clips the job will make, once known.
    pub total_clips: Option<u32>,
    /// Why it failed.
    pub error: Option<String>,
    /// What it produced.
    pub output: Option<JobOutput>,
    /// Sequence of the last emitted event (0 before `job.started`).
    pub last_sequence: u64,
    /// The worker holding the job's lease, if any (see [`crate::jobs`]).
    pub lease_owner: Option<String>,
    /// Acceptance time, Unix ms.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
}

impl JobRow {
    /// The `GET /ai-clipping/jobs/{id}` body.
    pub fn view(&self) -> JobView {
        JobView {
            job_id: self.job_id.clone(),
            external_job_id: self.external_job_id.clone(),
            owner_user_id: self.owner_user_id.clone(),
            status: self.state,
            progress_percent: ProgressPercent::new(self.progress_percent)
                .unwrap_or(ProgressPercent::ZERO),
            current_step: self.current_step.clone(),
            clips_completed: self.clips_completed,
            total_clips: self.total_clips,
            error: self.error.clone(),
            output: self.output.clone(),
            created_at: timestamp_from_ms(self.created_at),
            updated_at: timestamp_from_ms(self.updated_at),
        }
    }
}

/// The result of inserting a job.
#[derive(Debug)]
pub enum Inserted {
    /// A new job was stored.
    Created(JobRow),
    /// A job with the same `external_job_id` (or `job_id`) already existed;
    /// this is it, unchanged.
    Existing(JobRow),
}

/// A job's state after an event, written together with the event's delivery.
#[derive(Debug, Clone)]
pub struct JobUpdate {
    /// Which job.
    pub job_id: String,
    /// Its new state.
    pub state: JobState,
    /// Its progress.
    pub progress_percent: f64,
    /// Step text.
    pub current_step: String,
    /// Clips rendered.
    pub clips_completed: Option<u32>,
    /// Clips planned.
    pub total_clips: Option<u32>,
    /// The failure, on `job.failed`.
    pub error: Option<String>,
    /// The output, on `job.completed`.
    pub output: Option<JobOutput>,
    /// The event's sequence, which becomes the job's `last_sequence`.
    pub sequence: u64,
    /// The lease holder the event is written by: the write only commits
    /// while the row still names it (`None`: a job nobody holds, as in
    /// tools and benchmarks that drive a reporter directly).
    pub lease_owner: Option<String>,
}

/// A webhook message to store in the outbox before its first attempt.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// `msg_…`: delivery id and `webhook-id` header.
    pub delivery_id: String,
    /// The job it reports on.
    pub job_id: String,
    /// The event's sequence within the job.
    pub sequence: u64,
    /// Which event.
    pub event: Event,
    /// The callback URL.
    pub url: String,
    /// The exact body.
    pub body: bytes::Bytes,
    /// When it was written, Unix ms; also its first attempt time.
    pub created_at: i64,
}

/// Where a delivery stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet delivered; attempts continue.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Retries ran out, or the receiver answered 410 Gone.
    Failed,
    /// A newer event of the same job overtook this progress event before it
    /// could be delivered, so it was never sent.
    Superseded,
}

impl DeliveryStatus {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Superseded => "superseded",
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pending" => DeliveryStatus::Pending,
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            "superseded" => DeliveryStatus::Superseded,
            other => {
                return Err(format!(
                    "unknown delivery status {other:?} (pending, delivered, failed, superseded)"
                ));
            }
        })
    }
}

/// A delivery as stored.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    /// `msg_…`.
    pub delivery_id: String,
    /// The job.
    pub job_id: String,
    /// The event's sequence.
    pub sequence: u64,
    /// The event.
    pub event: Event,
    /// Target URL.
    pub url: String,
    /// Exact body bytes.
    pub body: bytes::Bytes,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far (since the last manual redelivery).
    pub attempt_count: u32,
    /// When the next attempt is due, Unix ms.
    pub next_attempt_at: i64,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
}

/// One HTTP attempt, as recorded.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AttemptRow {
    /// When it started.
    pub attempted_at: webhook_types::Timestamp,
    /// The answer's status code, when there was an answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub status_code: Option<u16>,
    /// What went wrong, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
}

/// A change to the outbox decided by the sender; several are committed
/// together in one transaction (see `sender::ledger`).
#[derive(Debug, Clone)]
pub enum LedgerOp {
    /// An attempt was made; record it and the delivery's new state.
    Attempt {
        /// Which delivery.
        delivery_id: String,
        /// When the attempt started, Unix ms.
        attempted_at: i64,
        /// The answer's status, if any.
        status_code: Option<u16>,
        /// The error, if any.
        error: Option<String>,
        /// How long it took.
        duration_ms: u64,
        /// The delivery's status afterwards.
        status: DeliveryStatus,
        /// Attempts made so far.
        attempt_count: u32,
        /// When the next attempt is due (meaningful while pending).
        next_attempt_at: i64,
    },
    /// A progress event was overtaken and will never be sent.
    Superseded {
        /// Which delivery.
        delivery_id: String,
    },
}

/// How far each commit is pushed to disk before it counts (`--durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Durability {
    /// SQLite `synchronous=FULL`, PostgreSQL's own `synchronous_commit`
    /// setting: a commit is on disk before it returns, so a power cut or an
    /// OS crash loses nothing that was committed. The default: a webhook may
    /// already be delivered from a commit that `normal` would lose, and after
    /// such a loss the job's sequence numbers would be issued again for other
    /// events.
    #[default]
    Full,
    /// SQLite `synchronous=NORMAL` in WAL mode, PostgreSQL
    /// `synchronous_commit=off` for the worker's sessions: a worker crash
    /// (SIGKILL) loses nothing, but a power cut, an OS crash or a database
    /// server crash may lose the last commits. Saves a flush per commit.
    Normal,
}

/// Filter for [`Store::list_deliveries`](super::Store::list_deliveries).
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this status.
    pub status: Option<DeliveryStatus>,
    /// Only this job.
    pub job_id: Option<String>,
    /// At most this many rows, newest first when set.
    pub limit: Option<u32>,
}

/// A `jobs` row as both databases return it, before its JSON and enum
/// columns are parsed. `FromRow` is derived generically over the database,
/// so one decoder serves SQLite and PostgreSQL (both schemas use 64-bit
/// integers, doubles, text and bytes for the same columns).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RawJob {
    job_id: String,
    external_job_id: Option<String>,
    owner_user_id: Option<String>,
    request: String,
    callback_url: Option<String>,
    state: String,
    progress_percent: f64,
    current_step: String,
    clips_completed: Option<i64>,
    total_clips: Option<i64>,
    error: Option<String>,
    output: Option<String>,
    last_sequence: i64,
    lease_owner: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<RawJob> for JobRow {
    type Error = sqlx::Error;

    fn try_from(r: RawJob) -> Result<JobRow, sqlx::Error> {
        Ok(JobRow {
            request: serde_json::from_str(&r.request).map_err(|e| decode_err("request", e))?,
            state: JobState::parse(&r.state).ok_or_else(|| decode_err("state", &r.state))?,
            output: r
                .output
                .map(|o| serde_json::from_str(&o))
                .transpose()
                .map_err(|e| decode_err("output", e))?,
            job_id: r.job_id,
            external_job_id: r.external_job_id,
            owner_user_id: r.owner_user_id,
            callback_url: r.callback_url,
            progress_percent: r.progress_percent,
            current_step: r.current_step,
            clips_completed: r.clips_completed.map(|v| v as u32),
            total_clips: r.total_clips.map(|v| v as u32),
            error: r.error,
            last_sequence: r.last_sequence.max(0) as u64,
            lease_owner: r.lease_owner,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// A `deliveries` row as both databases return it (see [`RawJob`]).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RawDelivery {
    delivery_id: String,
    job_id: String,
    sequence: i64,
    event: String,
    url: String,
    body: Vec<u8>,
    status: String,
    attempt_count: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<RawDelivery> for DeliveryRow {
    type Error = sqlx::Error;

    fn try_from(r: RawDelivery) -> Result<DeliveryRow, sqlx::Error> {
        Ok(DeliveryRow {
            event: Event::ALL
                .into_iter()
                .find(|e| e.as_str() == r.event)
                .ok_or_else(|| decode_err("event", &r.event))?,
            status: r
                .status
                .parse()
                .map_err(|e: String| decode_err("status", e))?,
            delivery_id: r.delivery_id,
            job_id: r.job_id,
            sequence: r.sequence.max(0) as u64,
            url: r.url,
            body: r.body.into(),
            attempt_count: r.attempt_count.max(0) as u32,
            next_attempt_at: r.next_attempt_at,
            last_error: r.last_error,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// A `delivery_attempts` row as both databases return it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RawAttempt {
    attempted_at: i64,
    status_code: Option<i64>,
    error: Option<String>,
    duration_ms: i64,
}

impl From<RawAttempt> for AttemptRow {
    fn from(r: RawAttempt) -> AttemptRow {
        AttemptRow {
            attempted_at: timestamp_from_ms(r.attempted_at),
            status_code: r.status_code.map(|c| c as u16),
            error: r.error,
            duration_ms: r.duration_ms.max(0) as u64,
        }
    }
}

/// Converts a list of raw rows, failing on the first that does not parse.
pub(crate) fn parse_all<R, T>(rows: Vec<R>) -> Result<Vec<T>, sqlx::Error>
where
    T: TryFrom<R, Error = sqlx::Error>,
{
    rows.into_iter().map(T::try_from).collect()
}

fn decode_err(column: &str, message: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: message.to_string().into(),
    }
}
