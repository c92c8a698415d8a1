//! The worker's store: jobs, the webhook outbox and delivery attempts.
//!
//! Every query of the worker lives under this module, behind the methods of
//! [`Store`]. Handlers, the pipeline runner and the sender never write SQL.
//!
//! Two implementations share one interface and one behaviour:
//! - [`sqlite`]: an embedded file under `--data-dir`, the default for one
//!   machine: nothing to install or operate.
//! - [`postgres`]: a PostgreSQL database that several workers share (the
//!   fleet), with its tables in their own schema, [`PG_SCHEMA`].
//!
//! [`Store`] holds an enum of the two and each method `match`es on it. An
//! enum rather than a trait object: there are exactly two implementations,
//! both known here; the methods stay plain `async fn`s (no boxed futures, no
//! `async_trait`), and a method one side lacks is a compile error at the
//! `match`, not a default that silently does nothing. Each side keeps its
//! queries in one module per table (`jobs`, `deliveries`), so the two SQL
//! dialects of one table sit side by side for review.
//!
//! Events of all jobs reach either database through one group-commit writer
//! task (see [`Store::record_event`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use webhook_types::ClippingJobRequest;

mod model;
mod postgres;
mod sqlite;

pub use model::{
    AttemptRow, DeliveryFilter, DeliveryRow, DeliveryStatus, Durability, Inserted, JobRow,
    JobUpdate, LedgerOp, NewDelivery,
};

/// The file inside `--data-dir` that holds the SQLite store.
pub const DB_FILE: &str = "worker.db";

/// The PostgreSQL schema that holds the worker's tables (and its own
/// migrations table), so that it can share a database with other services
/// without ever touching their tables.
pub const PG_SCHEMA: &str = "clipping_worker";

/// The PostgreSQL notification channel that announces a new queued job (or
/// one released back to the queue), to wake idle workers' dispatchers.
pub const JOBS_CHANNEL: &str = "clipping_worker_jobs";

/// The payload on [`JOBS_CHANNEL`] that asks every worker's reaper to look
/// for expired job leases now (a worker handing its jobs over).
pub const REAP_PAYLOAD: &str = "reap";

/// The PostgreSQL notification channel that names a job whose pending
/// deliveries need a lane: its holder reloads them, or, when nobody holds
/// the job's delivery lease, a worker's sweep takes it.
pub const DELIVERIES_CHANNEL: &str = "clipping_worker_deliveries";

/// Most events committed in one transaction.
const EVENT_BATCH: usize = 256;

/// How long [`Store::close`] waits for the store's background tasks.
const STORE_TASKS_GRACE: Duration = Duration::from_secs(10);

/// Where the store lives (`--store`).
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// SQLite: `sqlite` alone means `<data-dir>/worker.db`; `sqlite://PATH`
    /// names the file.
    Sqlite(Option<PathBuf>),
    /// PostgreSQL: a `postgres://` or `postgresql://` connection URL. Its
    /// password never shows in `Debug` or `Display`.
    Postgres(String),
}

impl StoreUrl {
    /// The SQLite file this URL means, given `--data-dir`.
    pub fn sqlite_file(&self, data_dir: &Path) -> Option<PathBuf> {
        match self {
            StoreUrl::Sqlite(Some(path)) => Some(path.clone()),
            StoreUrl::Sqlite(None) => Some(data_dir.join(DB_FILE)),
            StoreUrl::Postgres(_) => None,
        }
    }
}

impl Default for StoreUrl {
    fn default() -> Self {
        StoreUrl::Sqlite(None)
    }
}

impl FromStr for StoreUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            url::Url::parse(s).map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
            return Ok(StoreUrl::Postgres(s.to_owned()));
        }
        let rest = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
            .or_else(|| (s == "sqlite").then_some(""));
        match rest {
            Some("") => Ok(StoreUrl::Sqlite(None)),
            Some(path) => Ok(StoreUrl::Sqlite(Some(PathBuf::from(path)))),
            None => Err(
                "expected `sqlite` (the file under --data-dir), `sqlite://PATH` or `postgres://…`"
                    .to_owned(),
            ),
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(None) => f.write_str("sqlite (under --data-dir)"),
            StoreUrl::Sqlite(Some(path)) => write!(f, "sqlite://{}", path.display()),
            StoreUrl::Postgres(url) => match url::Url::parse(url) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("redacted"));
                    }
                    // The query may carry a password too.
                    u.set_query(None);
                    f.write_str(u.as_str())
                }
                Err(_) => f.write_str("postgres://[unparsable]"),
            },
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Handle to the store; cheap to clone (pool handles and a channel).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// Events to the group-commit writer (see [`Store::record_event`]).
    events: mpsc::UnboundedSender<EventWrite>,
    /// The writer and each implementation's own background tasks;
    /// [`Store::close`] stops and awaits them before closing the pools.
    tasks: service::BackgroundTasks,
    /// Woken when a job may be waiting to be claimed: by this process's
    /// intake, and on PostgreSQL by other workers' notifications.
    job_wakeups: Arc<Notify>,
    /// Jobs announced on [`DELIVERIES_CHANNEL`], for the sender.
    lane_wakeups: Arc<LaneWakeups>,
    /// Woken when another worker handed its jobs over, for the reaper.
    reap_wakeups: Arc<Notify>,
}

/// Job ids announced as having deliveries to take up, collected until the
/// sender's sweep takes them.
#[derive(Debug, Default)]
pub struct LaneWakeups {
    /// A std mutex: held only to push or take.
    jobs: std::sync::Mutex<Vec<String>>,
    /// Wakes the sweep.
    notify: Notify,
}

impl LaneWakeups {
    /// Records an announced job and wakes the sweep.
    pub fn push(&self, job_id: String) {
        self.jobs.lock().expect("wake-ups lock").push(job_id);
        self.notify.notify_one();
    }

    /// Waits for an announcement (or one made since the last take).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// Takes every job announced so far.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.jobs.lock().expect("wake-ups lock"))
    }
}

/// Why an event was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The job's row no longer names the event's writer as its lease holder,
    /// or its `last_sequence` is not the one the event continues: another
    /// worker took the job over. Nothing was written.
    #[error("the job was taken over by another worker")]
    Fenced,
    /// The database refused or could not be reached.
    #[error("the store failed")]
    Db(#[from] sqlx::Error),
}

/// The implementation behind a [`Store`].
#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

/// Runs the same expression on whichever implementation the store has.
macro_rules! on_backend {
    ($backend:expr, $b:ident => $call:expr) => {
        match $backend {
            Backend::Sqlite($b) => $call,
            Backend::Postgres($b) => $call,
        }
    };
}

/// One event waiting for the group-commit writer.
#[derive(Debug)]
pub(crate) struct EventWrite {
    pub(crate) update: JobUpdate,
    pub(crate) delivery: Option<NewDelivery>,
    done: oneshot::Sender<Result<tokio::time::Instant, RecordError>>,
}

impl Store {
    /// Opens (creating if needed) the SQLite store in `data_dir` and applies
    /// the worker's migrations, with the default durability.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Store> {
        Self::open_with(data_dir, Durability::default()).await
    }

    /// As [`Store::open`], with commits as durable as `durability` says.
    pub async fn open_with(data_dir: &Path, durability: Durability) -> anyhow::Result<Store> {
        Self::connect(&StoreUrl::Sqlite(None), data_dir, durability).await
    }

    /// Opens the store `url` names (creating it and applying the worker's
    /// migrations if needed); `data_dir` is where `sqlite` alone puts it.
    pub async fn connect(
        url: &StoreUrl,
        data_dir: &Path,
        durability: Durability,
    ) -> anyhow::Result<Store> {
        let store = match url {
            StoreUrl::Sqlite(_) => {
                let file = url.sqlite_file(data_dir).expect("a SQLite URL");
                Self::start(Backend::Sqlite(
                    sqlite::Sqlite::open(&file, durability, true).await?,
                ))
            }
            StoreUrl::Postgres(pg) => Self::start(Backend::Postgres(
                postgres::Postgres::connect(pg, durability, true).await?,
            )),
        };
        Ok(store)
    }

    /// Opens a store that `serve` or `migrate` made, for the ledger
    /// commands: creates nothing, and says where it looked when there is
    /// none.
    pub async fn open_existing(url: &StoreUrl, data_dir: &Path) -> anyhow::Result<Store> {
        match url {
            StoreUrl::Sqlite(_) => {
                let file = url.sqlite_file(data_dir).expect("a SQLite URL");
                if !file.is_file() {
                    anyhow::bail!(
                        "no worker store at {} (set --data-dir or WORKER_DATA_DIR to the directory `clipping-worker serve` uses, or --store / WORKER_STORE to its store; scripts/dev writes them to .tmp/dev/env)",
                        file.display()
                    );
                }
                Ok(Self::start(Backend::Sqlite(
                    sqlite::Sqlite::open(&file, Durability::default(), false).await?,
                )))
            }
            StoreUrl::Postgres(pg) => Ok(Self::start(Backend::Postgres(
                postgres::Postgres::connect(pg, Durability::default(), false).await?,
            ))),
        }
    }

    /// Creates the store if needed and applies the worker's migrations,
    /// then closes it (`clipping-worker migrate`).
    pub async fn migrate(url: &StoreUrl, data_dir: &Path) -> anyhow::Result<()> {
        let store = Self::connect(url, data_dir, Durability::default()).await?;
        store.close().await;
        Ok(())
    }

    fn start(backend: Backend) -> Store {
        let (events, rx) = mpsc::unbounded_channel();
        let tasks = service::BackgroundTasks::new();
        let job_wakeups = Arc::new(Notify::new());
        let lane_wakeups = Arc::new(LaneWakeups::default());
        let reap_wakeups = Arc::new(Notify::new());
        tasks.spawn(
            "event writer",
            run_event_writer(backend.clone(), rx, tasks.token()),
        );
        match &backend {
            Backend::Sqlite(s) => {
                tasks.spawn("checkpointer", s.clone().run_checkpointer(tasks.token()));
            }
            Backend::Postgres(p) => {
                tasks.spawn(
                    "notification listener",
                    p.clone().run_listener(
                        job_wakeups.clone(),
                        reap_wakeups.clone(),
                        lane_wakeups.clone(),
                        tasks.token(),
                    ),
                );
            }
        }
        Store {
            backend,
            events,
            tasks,
            job_wakeups,
            lane_wakeups,
            reap_wakeups,
        }
    }

    /// Woken when a job may be waiting to be claimed (see
    /// [`crate::jobs`]).
    pub fn job_wakeups(&self) -> Arc<Notify> {
        self.job_wakeups.clone()
    }

    /// Woken when another worker hands its jobs over (see
    /// [`Store::abandon_jobs`]), so the reaper looks at once.
    pub fn reap_wakeups(&self) -> Arc<Notify> {
        self.reap_wakeups.clone()
    }

    /// Whether other workers may share this store (PostgreSQL), so that
    /// leases decide who works on what; on SQLite the store is one
    /// process's alone.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Whether the store answers (readiness).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        on_backend!(&self.backend, b => b.ping().await)
    }

    /// Stores a new queued job, or returns the existing one when its
    /// `external_job_id` (or chosen `job_id`) is already known. The unique
    /// index decides, so this holds across restarts, concurrent submissions
    /// and, on PostgreSQL, every worker of a fleet.
    pub async fn insert_job(
        &self,
        job_id: &str,
        request: &ClippingJobRequest,
    ) -> Result<Inserted, sqlx::Error> {
        on_backend!(&self.backend, b => b.insert_job(job_id, request, None).await)
    }

    /// As [`Store::insert_job`], but the new job is held by `owner` until
    /// `expires_at` from the start, so no dispatcher claims it: for tools,
    /// tests and benchmarks that drive its reporter themselves.
    pub async fn insert_held_job(
        &self,
        job_id: &str,
        request: &ClippingJobRequest,
        owner: &str,
        expires_at: i64,
    ) -> Result<Inserted, sqlx::Error> {
        on_backend!(&self.backend, b => b.insert_job(job_id, request, Some((owner, expires_at))).await)
    }

    /// A job by the worker's id.
    pub async fn get_job(&self, job_id: &str) -> Result<Option<JobRow>, sqlx::Error> {
        on_backend!(&self.backend, b => b.get_job(job_id).await)
    }

    /// Jobs still queued, oldest first: the queue to rebuild on start.
    pub async fn queued_jobs(&self) -> Result<Vec<JobRow>, sqlx::Error> {
        on_backend!(&self.backend, b => b.queued_jobs().await)
    }

    /// Jobs a crash interrupted mid-pipeline: neither queued nor terminal.
    pub async fn interrupted_jobs(&self) -> Result<Vec<JobRow>, sqlx::Error> {
        on_backend!(&self.backend, b => b.interrupted_jobs().await)
    }

    /// Claims the oldest queued job that nobody holds for `owner`, with a
    /// lease until `expires_at` (Unix ms); `None` when there is none. Two
    /// claims, from any workers, never get the same job.
    pub async fn claim_job(
        &self,
        owner: &str,
        expires_at: i64,
    ) -> Result<Option<JobRow>, sqlx::Error> {
        on_backend!(&self.backend, b => b.claim_job(owner, expires_at).await)
    }

    /// Extends `owner`'s lease of a job to `expires_at`; `false` when
    /// `owner` no longer holds it.
    pub async fn renew_job_lease(
        &self,
        job_id: &str,
        owner: &str,
        expires_at: i64,
    ) -> Result<bool, sqlx::Error> {
        on_backend!(&self.backend, b => b.renew_job_lease(job_id, owner, expires_at).await)
    }

    /// Gives up `owner`'s lease of a job, so any worker can claim it.
    pub async fn release_job(&self, job_id: &str, owner: &str) -> Result<(), sqlx::Error> {
        on_backend!(&self.backend, b => b.release_job(job_id, owner).await)
    }

    /// Takes over, for `owner` until `expires_at`, every unfinished job
    /// whose lease ran out before `now`, and returns them, oldest first.
    /// Each expired lease is taken by exactly one caller.
    pub async fn take_expired_jobs(
        &self,
        owner: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Vec<JobRow>, sqlx::Error> {
        on_backend!(&self.backend, b => b.take_expired_jobs(owner, now, expires_at).await)
    }

    /// Expires every lease `owner` holds on an unfinished job at once, so
    /// that other workers take those jobs over at their next look instead
    /// of a lease later (a worker shutting down).
    pub async fn abandon_jobs(&self, owner: &str) -> Result<(), sqlx::Error> {
        on_backend!(&self.backend, b => b.abandon_jobs(owner).await)
    }

    /// Writes a job's new state and, when it has a callback, the event's
    /// delivery, in one transaction: the outbox row exists before any attempt
    /// and never without the state it reports. The write is fenced: it
    /// commits only while the job's row names `update.lease_owner` and its
    /// `last_sequence` is the one before `update.sequence`
    /// ([`RecordError::Fenced`] otherwise).
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
    ) -> Result<tokio::time::Instant, RecordError> {
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
        on_backend!(&self.backend, b => b.pending_deliveries().await)
    }

    /// Commits a batch of the sender's decisions in one transaction, with a
    /// few multi-row statements rather than two statements per decision.
    pub async fn apply_ledger(&self, ops: &[LedgerOp]) -> Result<(), sqlx::Error> {
        on_backend!(&self.backend, b => b.apply_ledger(ops).await)
    }

    /// One delivery by id.
    pub async fn get_delivery(
        &self,
        delivery_id: &str,
    ) -> Result<Option<DeliveryRow>, sqlx::Error> {
        on_backend!(&self.backend, b => b.get_delivery(delivery_id).await)
    }

    /// The ledger, filtered; by creation time, job and sequence.
    pub async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, sqlx::Error> {
        on_backend!(&self.backend, b => b.list_deliveries(filter).await)
    }

    /// The attempts of one delivery, oldest first.
    pub async fn attempts(&self, delivery_id: &str) -> Result<Vec<AttemptRow>, sqlx::Error> {
        on_backend!(&self.backend, b => b.attempts(delivery_id).await)
    }

    /// Puts a delivery back to pending with a fresh retry schedule, due now.
    /// `flag_for_sweep` marks it for a live worker's sweep to pick up (used
    /// by the CLI, which has no way to tell the worker directly).
    pub async fn requeue_delivery(
        &self,
        delivery_id: &str,
        flag_for_sweep: bool,
    ) -> Result<Option<DeliveryRow>, sqlx::Error> {
        on_backend!(&self.backend, b => b.requeue_delivery(delivery_id, flag_for_sweep).await)
    }

    /// Takes the deliveries flagged by `webhooks redeliver` and clears their
    /// flags, atomically, so a flag is never taken twice.
    pub async fn take_requeued(&self) -> Result<Vec<DeliveryRow>, sqlx::Error> {
        on_backend!(&self.backend, b => b.take_requeued().await)
    }

    /// Takes the delivery lease of a job for the sender lane `lane` until
    /// `expires_at`, if nobody else's lease on it runs past `now`; `true`
    /// when the lane may deliver the job's outbox. Always granted on SQLite,
    /// whose one worker owns every lane.
    pub async fn acquire_lane(
        &self,
        job_id: &str,
        lane: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, sqlx::Error> {
        on_backend!(&self.backend, b => b.acquire_lane(job_id, lane, now, expires_at).await)
    }

    /// Extends `lane`'s delivery lease of a job; `false` when it lost it.
    pub async fn renew_lane(
        &self,
        job_id: &str,
        lane: &str,
        expires_at: i64,
    ) -> Result<bool, sqlx::Error> {
        on_backend!(&self.backend, b => b.renew_lane(job_id, lane, expires_at).await)
    }

    /// Gives up `lane`'s delivery lease of a job; announces the job when
    /// deliveries are still pending for it.
    pub async fn release_lane(&self, job_id: &str, lane: &str) -> Result<(), sqlx::Error> {
        on_backend!(&self.backend, b => b.release_lane(job_id, lane).await)
    }

    /// Expires every delivery lease the lanes of worker `owner` hold and
    /// announces their jobs, so other workers take them up at once (a
    /// worker shutting down).
    pub async fn abandon_lanes(&self, owner: &str) -> Result<(), sqlx::Error> {
        on_backend!(&self.backend, b => b.abandon_lanes(owner).await)
    }

    /// Announces that a job has pending deliveries that this worker could
    /// not take up (another lane holds the job): its holder reloads them.
    pub async fn announce_lane(&self, job_id: &str) -> Result<(), sqlx::Error> {
        on_backend!(&self.backend, b => b.announce_lane(job_id).await)
    }

    /// Jobs with pending deliveries whose delivery lease is free or ran out
    /// before `now` (a dead worker's), oldest first, at most `limit`.
    pub async fn orphaned_lanes(&self, now: i64, limit: i64) -> Result<Vec<String>, sqlx::Error> {
        on_backend!(&self.backend, b => b.orphaned_lanes(now, limit).await)
    }

    /// A job's pending deliveries, by sequence.
    pub async fn pending_for_job(&self, job_id: &str) -> Result<Vec<DeliveryRow>, sqlx::Error> {
        on_backend!(&self.backend, b => b.pending_for_job(job_id).await)
    }

    /// Woken (with the job's id) when another worker announces pending
    /// deliveries; see [`Store::announce_lane`].
    pub fn lane_wakeups(&self) -> Arc<LaneWakeups> {
        self.lane_wakeups.clone()
    }

    /// Stops the writer (after it has answered every event already queued)
    /// and the other background tasks, then closes the connections.
    pub async fn close(&self) {
        if !self.tasks.stop(STORE_TASKS_GRACE).await {
            tracing::warn!("the store's background tasks did not stop in time");
        }
        on_backend!(&self.backend, b => b.close().await)
    }
}

/// The group-commit writer: takes every event waiting, commits them in one
/// transaction, answers each. If the batch fails, each event is retried on
/// its own, so one bad event cannot fail its neighbours.
///
/// On `stop` the channel is closed to new events and those already queued
/// are still written and answered; then the task ends.
async fn run_event_writer(
    backend: Backend,
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
        match write_events(&backend, &batch).await {
            Ok(()) => {
                let committed = tokio::time::Instant::now();
                for w in batch.drain(..) {
                    let _ = w.done.send(Ok(committed));
                }
            }
            Err(_) if batch.len() > 1 => {
                for w in batch.drain(..) {
                    let result = write_events(&backend, std::slice::from_ref(&w))
                        .await
                        .map(|()| tokio::time::Instant::now());
                    let _ = w.done.send(result);
                }
            }
            Err(RecordError::Fenced) => {
                for w in batch.drain(..) {
                    let _ = w.done.send(Err(RecordError::Fenced));
                }
            }
            Err(RecordError::Db(e)) => {
                for w in batch.drain(..) {
                    let _ = w
                        .done
                        .send(Err(sqlx::Error::Protocol(e.to_string()).into()));
                }
            }
        }
    }
}

async fn write_events(backend: &Backend, batch: &[EventWrite]) -> Result<(), RecordError> {
    // Only the newest state of each job needs writing; a batch is in
    // emission order, and one job's events come from one task in order, so
    // the job's row must stand at the sequence before its first event here.
    let mut newest: std::collections::HashMap<&str, FencedUpdate<'_>> =
        std::collections::HashMap::new();
    for w in batch {
        newest
            .entry(&w.update.job_id)
            .and_modify(|f| f.update = &w.update)
            .or_insert(FencedUpdate {
                update: &w.update,
                after: w.update.sequence.saturating_sub(1) as i64,
            });
    }
    let updates: Vec<FencedUpdate<'_>> = newest.into_values().collect();
    let deliveries: Vec<&NewDelivery> = batch.iter().filter_map(|w| w.delivery.as_ref()).collect();
    // The implementations roll back when a job's row did not match.
    let written = on_backend!(backend, b => b.write_events(&updates, &deliveries).await)?;
    if written {
        Ok(())
    } else {
        Err(RecordError::Fenced)
    }
}

/// A job's newest state in a batch of events, and the `last_sequence` its
/// row must have (with `update.lease_owner` as its holder) for the batch to
/// commit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FencedUpdate<'a> {
    pub(crate) update: &'a JobUpdate,
    pub(crate) after: i64,
}

/// The last decision per delivery of a ledger batch (a batch is in decision
/// order), the attempts to record, and the superseded ids.
pub(crate) struct LedgerSplit<'a> {
    pub(crate) attempts: Vec<&'a LedgerOp>,
    pub(crate) latest: Vec<&'a LedgerOp>,
    pub(crate) superseded: Vec<&'a str>,
}

pub(crate) fn split_ledger(ops: &[LedgerOp]) -> LedgerSplit<'_> {
    let mut attempts = Vec::new();
    let mut latest: std::collections::HashMap<&str, &LedgerOp> = std::collections::HashMap::new();
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
    LedgerSplit {
        attempts,
        latest: latest.into_values().collect(),
        superseded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_and_never_show_a_password() {
        assert_eq!("sqlite".parse::<StoreUrl>(), Ok(StoreUrl::Sqlite(None)));
        assert_eq!("sqlite://".parse::<StoreUrl>(), Ok(StoreUrl::Sqlite(None)));
        assert_eq!(
            "sqlite:///var/lib/w.db".parse::<StoreUrl>(),
            Ok(StoreUrl::Sqlite(Some("/var/lib/w.db".into())))
        );
        let pg: StoreUrl = "postgres://u:hunter2@db:5432/worker?password=hunter2"
            .parse()
            .unwrap();
        assert!(matches!(pg, StoreUrl::Postgres(_)));
        let shown = format!("{pg} {pg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db:5432/worker"), "{shown}");
        assert!("mysql://x".parse::<StoreUrl>().is_err());
    }
}
