//! The embedded SQLite store: jobs, the webhook outbox and delivery attempts.
//!
//! Every query of the worker lives here, behind functions that take the
//! [`Store`]. Handlers, the pipeline runner and the sender never write SQL.
//!
//! SQLite allows one writer at a time. Rather than let several connections
//! race for the write lock (SQLite's busy handler then sleeps in whole
//! milliseconds, which ruins delivery latency), all writes go through a pool
//! of exactly one connection, where they queue fairly in memory; reads use a
//! separate pool and, thanks to WAL mode, never wait for the writer.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row as _, SqlitePool};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use webhook_types::{ClippingJobRequest, Event, JobOutput, JobState, JobView, ProgressPercent};

use crate::clock::{now_ms, timestamp_from_ms};

/// The file inside `--data-dir` that holds the store.
pub const DB_FILE: &str = "worker.db";

/// Handle to the store; cheap to clone (two pool handles and a channel).
#[derive(Debug, Clone)]
pub struct Store {
    /// Exactly one connection: every write transaction queues here.
    write: SqlitePool,
    /// Several connections for reads, which WAL lets run beside the writer.
    read: SqlitePool,
    /// Events to the group-commit writer (see [`Store::record_event`]).
    events: mpsc::UnboundedSender<EventWrite>,
    /// The writer and the checkpointer; [`Store::close`] stops and awaits
    /// them before closing the pools.
    tasks: service::BackgroundTasks,
}

/// One event waiting for the group-commit writer.
#[derive(Debug)]
struct EventWrite {
    update: JobUpdate,
    delivery: Option<NewDelivery>,
    done: oneshot::Sender<Result<tokio::time::Instant, sqlx::Error>>,
}

/// Most events committed in one transaction.
const EVENT_BATCH: usize = 256;

/// How often the WAL is copied into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// How long [`Store::close`] waits for the writer and checkpointer.
const STORE_TASKS_GRACE: Duration = Duration::from_secs(10);

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
    /// SQLite `synchronous=FULL`: a commit is on disk before it returns, so
    /// a power cut or an OS crash loses nothing that was committed. The
    /// default: a webhook may already be delivered from a commit that
    /// `normal` would lose, and after such a loss the job's sequence numbers
    /// would be issued again for other events.
    #[default]
    Full,
    /// SQLite `synchronous=NORMAL` in WAL mode: a process crash (SIGKILL)
    /// loses nothing, but a power cut or OS crash may lose the last commits.
    /// Saves an fsync per commit.
    Normal,
}

/// Filter for [`Store::list_deliveries`].
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this status.
    pub status: Option<DeliveryStatus>,
    /// Only this job.
    pub job_id: Option<String>,
    /// At most this many rows, newest first when set.
    pub limit: Option<u32>,
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir` and applies the
    /// worker's migrations, with the default durability.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Store> {
        Self::open_with(data_dir, Durability::default()).await
    }

    /// As [`Store::open`], with commits as durable as `durability` says.
    pub async fn open_with(data_dir: &Path, durability: Durability) -> anyhow::Result<Store> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("failed to create data dir {}", data_dir.display()))?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join(DB_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            // Batched writes use one statement text per batch size.
            .statement_cache_capacity(512);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            // Checkpoints (which write and fsync the database file) would
            // otherwise run inside whichever commit crosses the threshold,
            // stalling every event queued behind it; the checkpointer task
            // runs them beside the writer instead.
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await
            .context("failed to open the worker store")?;
        sqlx::migrate!("../../migrations/worker")
            .run(&write)
            .await
            .context("failed to apply the worker store migrations")?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .context("failed to open the worker store for reading")?;
        let (events, rx) = mpsc::unbounded_channel();
        let tasks = service::BackgroundTasks::new();
        tasks.spawn(
            "event writer",
            run_event_writer(write.clone(), rx, tasks.token()),
        );
        tasks.spawn(
            "checkpointer",
            run_checkpointer(read.clone(), tasks.token()),
        );
        Ok(Store {
            write,
            read,
            events,
            tasks,
        })
    }

    /// Whether the store answers (readiness).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map(|_| ())
    }

    /// Stores a new queued job, or returns the existing one when its
    /// `external_job_id` (or chosen `job_id`) is already known. The unique
    /// index decides, so this holds across restarts and concurrent
    /// submissions.
    pub async fn insert_job(
        &self,
        job_id: &str,
        request: &ClippingJobRequest,
    ) -> Result<Inserted, sqlx::Error> {
        let now = now_ms();
        let request_json = serde_json::to_string(request).expect("a request serialises");
        let inserted = sqlx::query(
            "INSERT INTO jobs (job_id, external_job_id, owner_user_id, request, callback_url,
                               state, progress_percent, current_step, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, 'queued', 0, 'Queued', ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(job_id)
        .bind(&request.external_job_id)
        .bind(&request.owner_user_id)
        .bind(request_json)
        .bind(&request.callback_url)
        .bind(now)
        .bind(now)
        .execute(&self.write)
        .await?
        .rows_affected();
        if inserted == 1 {
            let row = self.get_job_from(&self.write, job_id).await?;
            return Ok(Inserted::Created(row.expect("the job was just inserted")));
        }
        if let Some(ext) = &request.external_job_id
            && let Some(row) = self.find_by_external(ext).await?
        {
            return Ok(Inserted::Existing(row));
        }
        let row = self.get_job_from(&self.write, job_id).await?;
        Ok(Inserted::Existing(row.ok_or(sqlx::Error::RowNotFound)?))
    }

    /// A job by the worker's id.
    pub async fn get_job(&self, job_id: &str) -> Result<Option<JobRow>, sqlx::Error> {
        self.get_job_from(&self.read, job_id).await
    }

    async fn get_job_from(
        &self,
        pool: &SqlitePool,
        job_id: &str,
    ) -> Result<Option<JobRow>, sqlx::Error> {
        sqlx::query("SELECT * FROM jobs WHERE job_id = ?")
            .bind(job_id)
            .fetch_optional(pool)
            .await?
            .map(job_from_row)
            .transpose()
    }

    async fn find_by_external(&self, ext: &str) -> Result<Option<JobRow>, sqlx::Error> {
        sqlx::query("SELECT * FROM jobs WHERE external_job_id = ?")
            .bind(ext)
            .fetch_optional(&self.write)
            .await?
            .map(job_from_row)
            .transpose()
    }

    /// Jobs still queued, oldest first: the queue to rebuild on start.
    pub async fn queued_jobs(&self) -> Result<Vec<JobRow>, sqlx::Error> {
        sqlx::query("SELECT * FROM jobs WHERE state = 'queued' ORDER BY created_at, rowid")
            .fetch_all(&self.write)
            .await?
            .into_iter()
            .map(job_from_row)
            .collect()
    }

    /// Jobs a crash interrupted mid-pipeline: neither queued nor terminal.
    pub async fn interrupted_jobs(&self) -> Result<Vec<JobRow>, sqlx::Error> {
        sqlx::query(
            "SELECT * FROM jobs WHERE state NOT IN ('queued', 'completed', 'failed')
             ORDER BY created_at, rowid",
        )
        .fetch_all(&self.write)
        .await?
        .into_iter()
        .map(job_from_row)
        .collect()
    }

    /// Writes a job's new state and, when it has a callback, the event's
    /// delivery, in one transaction: the outbox row exists before any attempt
    /// and never without the state it reports.
    ///
    /// Events of all jobs go through one writer task that commits every event
    /// waiting at that moment in a single transaction (group commit): under
    /// load, one commit serves many events, and a lone event still commits at
    /// once. Returns, once this event is committed, the instant the commit
    /// completed (what delivery latency is measured from).
    pub async fn record_event(
        &self,
        update: &JobUpdate,
        delivery: Option<&NewDelivery>,
    ) -> Result<tokio::time::Instant, sqlx::Error> {
        let (done, result) = oneshot::channel();
        self.events
            .send(EventWrite {
                update: update.clone(),
                delivery: delivery.cloned(),
                done,
            })
            .map_err(|_| sqlx::Error::PoolClosed)?;
        result.await.map_err(|_| sqlx::Error::PoolClosed)?
    }

    /// Every pending delivery, by job and sequence: what a starting worker
    /// resumes.
    pub async fn pending_deliveries(&self) -> Result<Vec<DeliveryRow>, sqlx::Error> {
        sqlx::query("SELECT * FROM deliveries WHERE status = 'pending' ORDER BY job_id, sequence")
            .fetch_all(&self.write)
            .await?
            .into_iter()
            .map(delivery_from_row)
            .collect()
    }

    /// Commits a batch of the sender's decisions in one transaction, with a
    /// few multi-row statements rather than two statements per decision.
    pub async fn apply_ledger(&self, ops: &[LedgerOp]) -> Result<(), sqlx::Error> {
        let now = now_ms();
        let mut attempts = Vec::new();
        // The last decision per delivery wins; a batch is in decision order.
        let mut latest: HashMap<&str, &LedgerOp> = HashMap::new();
        let mut superseded = Vec::new();
        for op in ops {
            match op {
                LedgerOp::Attempt { delivery_id, .. } => {
                    attempts.push(op);
                    latest.insert(delivery_id, op);
                }
                LedgerOp::Superseded { delivery_id } => superseded.push(delivery_id.as_str()),
            }
        }
        let latest: Vec<&LedgerOp> = latest.into_values().collect();
        let mut tx = self.write.begin().await?;
        for chunk in attempts.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO delivery_attempts
                     (delivery_id, attempted_at, status_code, error, duration_ms)
                 VALUES {}",
                placeholders(chunk.len(), 5)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for op in chunk {
                if let LedgerOp::Attempt {
                    delivery_id,
                    attempted_at,
                    status_code,
                    error,
                    duration_ms,
                    ..
                } = op
                {
                    q = q
                        .bind(delivery_id)
                        .bind(attempted_at)
                        .bind(status_code.map(i64::from))
                        .bind(error)
                        .bind(*duration_ms as i64);
                }
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in latest.chunks(ROWS_PER_STATEMENT) {
            // A manual redelivery may have reset a row meanwhile; only a row
            // still pending takes the attempt's outcome.
            let sql = format!(
                "UPDATE deliveries SET status = v.column2, attempt_count = v.column3,
                        next_attempt_at = v.column4, last_error = v.column5, updated_at = ?
                 FROM (VALUES {}) AS v
                 WHERE deliveries.delivery_id = v.column1 AND deliveries.status = 'pending'",
                placeholders(chunk.len(), 5)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for op in chunk {
                if let LedgerOp::Attempt {
                    delivery_id,
                    error,
                    status,
                    attempt_count,
                    next_attempt_at,
                    ..
                } = op
                {
                    q = q
                        .bind(delivery_id)
                        .bind(status.as_str())
                        .bind(attempt_count)
                        .bind(next_attempt_at)
                        .bind(error);
                }
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in superseded.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE deliveries SET status = 'superseded', updated_at = ?
                 WHERE status = 'pending' AND delivery_id IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    /// One delivery by id.
    pub async fn get_delivery(
        &self,
        delivery_id: &str,
    ) -> Result<Option<DeliveryRow>, sqlx::Error> {
        sqlx::query("SELECT * FROM deliveries WHERE delivery_id = ?")
            .bind(delivery_id)
            .fetch_optional(&self.read)
            .await?
            .map(delivery_from_row)
            .transpose()
    }

    /// The ledger, filtered; by job and sequence.
    pub async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, sqlx::Error> {
        sqlx::query(
            "SELECT * FROM deliveries
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR job_id = ?2)
             ORDER BY created_at, job_id, sequence
             LIMIT ?3",
        )
        .bind(filter.status.map(|s| s.as_str()))
        .bind(&filter.job_id)
        .bind(filter.limit.map(i64::from).unwrap_or(-1))
        .fetch_all(&self.read)
        .await?
        .into_iter()
        .map(delivery_from_row)
        .collect()
    }

    /// The attempts of one delivery, oldest first.
    pub async fn attempts(&self, delivery_id: &str) -> Result<Vec<AttemptRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT attempted_at, status_code, error, duration_ms FROM delivery_attempts
             WHERE delivery_id = ? ORDER BY attempt_id",
        )
        .bind(delivery_id)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(AttemptRow {
                    attempted_at: timestamp_from_ms(r.try_get("attempted_at")?),
                    status_code: r
                        .try_get::<Option<i64>, _>("status_code")?
                        .map(|c| c as u16),
                    error: r.try_get("error")?,
                    duration_ms: r.try_get::<i64, _>("duration_ms")?.max(0) as u64,
                })
            })
            .collect()
    }

    /// Puts a delivery back to pending with a fresh retry schedule, due now.
    /// `flag_for_sweep` marks it for a live worker's sweep to pick up (used
    /// by the CLI, which has no way to tell the worker directly).
    pub async fn requeue_delivery(
        &self,
        delivery_id: &str,
        flag_for_sweep: bool,
    ) -> Result<Option<DeliveryRow>, sqlx::Error> {
        let now = now_ms();
        let changed = sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempt_count = 0, next_attempt_at = ?,
                    requeue_requested = ?, updated_at = ?
             WHERE delivery_id = ?",
        )
        .bind(now)
        .bind(i64::from(flag_for_sweep))
        .bind(now)
        .bind(delivery_id)
        .execute(&self.write)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        sqlx::query("SELECT * FROM deliveries WHERE delivery_id = ?")
            .bind(delivery_id)
            .fetch_optional(&self.write)
            .await?
            .map(delivery_from_row)
            .transpose()
    }

    /// Takes the deliveries flagged by `webhooks redeliver` and clears their
    /// flags, in one transaction so a flag is never taken twice.
    pub async fn take_requeued(&self) -> Result<Vec<DeliveryRow>, sqlx::Error> {
        let mut tx = self.write.begin().await?;
        let rows = sqlx::query("SELECT * FROM deliveries WHERE requeue_requested = 1")
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        sqlx::query("UPDATE deliveries SET requeue_requested = 0 WHERE requeue_requested = 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.into_iter().map(delivery_from_row).collect()
    }

    /// Stops the writer (after it has answered every event already queued)
    /// and the checkpointer, then closes both pools, flushing the WAL.
    pub async fn close(&self) {
        if !self.tasks.stop(STORE_TASKS_GRACE).await {
            tracing::warn!("the store's writer or checkpointer did not stop in time");
        }
        self.read.close().await;
        self.write.close().await;
    }
}

/// Copies the WAL into the database file every few hundred milliseconds,
/// from a read connection, without blocking the writer (`PASSIVE`). Ends when
/// the store is closed.
async fn run_checkpointer(pool: SqlitePool, stop: CancellationToken) {
    let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::debug!(error = ?e, "WAL checkpoint failed; will retry");
        }
    }
}

/// The group-commit writer: takes every event waiting, commits them in one
/// transaction, answers each. If the batch fails, each event is retried on
/// its own, so one bad event cannot fail its neighbours.
///
/// On `stop` the channel is closed to new events and those already queued
/// are still written and answered; then the task ends.
async fn run_event_writer(
    pool: SqlitePool,
    mut rx: mpsc::UnboundedReceiver<EventWrite>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(EVENT_BATCH);
    loop {
        let received = tokio::select! {
            n = rx.recv_many(&mut batch, EVENT_BATCH) => n,
            _ = stop.cancelled(), if !rx.is_closed() => {
                rx.close();
                continue;
            }
        };
        if received == 0 {
            return;
        }
        match write_events(&pool, &batch).await {
            Ok(()) => {
                let committed = tokio::time::Instant::now();
                for w in batch.drain(..) {
                    let _ = w.done.send(Ok(committed));
                }
            }
            Err(_) if batch.len() > 1 => {
                for w in batch.drain(..) {
                    let result = write_events(&pool, std::slice::from_ref(&w))
                        .await
                        .map(|()| tokio::time::Instant::now());
                    let _ = w.done.send(result);
                }
            }
            Err(e) => {
                for w in batch.drain(..) {
                    let _ = w.done.send(Err(sqlx::Error::Protocol(e.to_string())));
                }
            }
        }
    }
}

async fn write_events(pool: &SqlitePool, batch: &[EventWrite]) -> Result<(), sqlx::Error> {
    let now = now_ms();
    // Only the newest state of each job needs writing; a batch is in
    // emission order, and one job's events come from one task in order.
    let mut newest: HashMap<&str, &JobUpdate> = HashMap::new();
    for w in batch {
        newest.insert(&w.update.job_id, &w.update);
    }
    let updates: Vec<&JobUpdate> = newest.into_values().collect();
    let deliveries: Vec<&NewDelivery> = batch.iter().filter_map(|w| w.delivery.as_ref()).collect();
    let mut tx = pool.begin().await?;
    for chunk in updates.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE jobs SET state = v.column2, progress_percent = v.column3,
                    current_step = v.column4, clips_completed = v.column5,
                    total_clips = v.column6, error = v.column7, output = v.column8,
                    last_sequence = v.column9, updated_at = ?
             FROM (VALUES {}) AS v
             WHERE jobs.job_id = v.column1",
            placeholders(chunk.len(), 9)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
        for u in chunk {
            let output = u
                .output
                .as_ref()
                .map(|o| serde_json::to_string(o).expect("output serialises"));
            q = q
                .bind(&u.job_id)
                .bind(u.state.as_str())
                .bind(u.progress_percent)
                .bind(&u.current_step)
                .bind(u.clips_completed)
                .bind(u.total_clips)
                .bind(&u.error)
                .bind(output)
                .bind(u.sequence as i64);
        }
        q.execute(&mut *tx).await?;
    }
    for chunk in deliveries.chunks(ROWS_PER_STATEMENT) {
        let rows = vec!["(?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO deliveries (delivery_id, job_id, sequence, event, url, body, status,
                                     attempt_count, next_attempt_at, created_at, updated_at)
             VALUES {rows}"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for d in chunk {
            q = q
                .bind(&d.delivery_id)
                .bind(&d.job_id)
                .bind(d.sequence as i64)
                .bind(d.event.as_str())
                .bind(&d.url)
                .bind(d.body.as_ref())
                .bind(d.created_at)
                .bind(d.created_at)
                .bind(d.created_at);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// Rows per multi-row statement: well under SQLite's limit of 32,766 bound
/// parameters, and few distinct statement texts for the statement cache.
const ROWS_PER_STATEMENT: usize = 128;

/// `(?, ?, …), (?, ?, …)`: `rows` groups of `cols` placeholders.
fn placeholders(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(", "));
    vec![row; rows].join(", ")
}

fn decode_err(column: &str, message: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: message.to_string().into(),
    }
}

fn job_from_row(r: sqlx::sqlite::SqliteRow) -> Result<JobRow, sqlx::Error> {
    let request: String = r.try_get("request")?;
    let state: String = r.try_get("state")?;
    let output: Option<String> = r.try_get("output")?;
    Ok(JobRow {
        job_id: r.try_get("job_id")?,
        external_job_id: r.try_get("external_job_id")?,
        owner_user_id: r.try_get("owner_user_id")?,
        request: serde_json::from_str(&request).map_err(|e| decode_err("request", e))?,
        callback_url: r.try_get("callback_url")?,
        state: JobState::parse(&state).ok_or_else(|| decode_err("state", &state))?,
        progress_percent: r.try_get("progress_percent")?,
        current_step: r.try_get("current_step")?,
        clips_completed: r
            .try_get::<Option<i64>, _>("clips_completed")?
            .map(|v| v as u32),
        total_clips: r
            .try_get::<Option<i64>, _>("total_clips")?
            .map(|v| v as u32),
        error: r.try_get("error")?,
        output: output
            .map(|o| serde_json::from_str(&o))
            .transpose()
            .map_err(|e| decode_err("output", e))?,
        last_sequence: r.try_get::<i64, _>("last_sequence")?.max(0) as u64,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn delivery_from_row(r: sqlx::sqlite::SqliteRow) -> Result<DeliveryRow, sqlx::Error> {
    let event: String = r.try_get("event")?;
    let status: String = r.try_get("status")?;
    let body: Vec<u8> = r.try_get("body")?;
    Ok(DeliveryRow {
        delivery_id: r.try_get("delivery_id")?,
        job_id: r.try_get("job_id")?,
        sequence: r.try_get::<i64, _>("sequence")?.max(0) as u64,
        event: Event::ALL
            .into_iter()
            .find(|e| e.as_str() == event)
            .ok_or_else(|| decode_err("event", &event))?,
        url: r.try_get("url")?,
        body: body.into(),
        status: status
            .parse()
            .map_err(|e: String| decode_err("status", e))?,
        attempt_count: r.try_get::<i64, _>("attempt_count")?.max(0) as u32,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--durability` reaches the connection that commits events.
    #[tokio::test]
    async fn durability_sets_the_write_connections_synchronous_mode() {
        for (durability, expected) in [(Durability::Full, 2), (Durability::Normal, 1)] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_with(dir.path(), durability).await.unwrap();
            let mode: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&store.write)
                .await
                .unwrap();
            assert_eq!(mode, expected, "{durability:?}");
            store.close().await;
        }
    }
}
