//! Group commit for the webhook receiver: concurrent deliveries share one
//! transaction and one commit.
//!
//! A durable commit costs about a millisecond and every notifying commit
//! takes PostgreSQL's cluster-wide NOTIFY lock, so one transaction per
//! delivery caps the receiver near the database's own ceiling. Here each
//! delivery goes to one of a few *lanes* (by a hash of the key its job is
//! looked up by, so one job always meets one lane and its deliveries keep
//! their arrival order). A lane's task takes whatever has queued while its
//! previous batch ran (no timer: an idle receiver adds no latency) and
//! applies it as one unit of work ([`crate::batch`]: read once, decide in
//! memory, write once), then commits once and answers every delivery of the
//! batch.
//!
//! If the batch fails for any reason (a deadlock with another instance, a
//! bug tripped by one delivery) it is rolled back and each delivery is
//! retried alone in its own transaction, so one bad delivery never fails its
//! neighbours and each gets its own answer.
//!
//! A database that cannot be reached is the exception: retrying each
//! delivery alone would make the last of a batch wait for one connection
//! timeout per delivery ahead of it, and the sender would time out without
//! seeing the 503 and its `Retry-After`. So the receiver takes a connection
//! with a short timeout of its own ([`ACQUIRE_TIMEOUT`]), and [`DbHealth`]
//! remembers for a moment ([`DOWN_FOR`]) that the database was unreachable:
//! meanwhile deliveries are answered 503 at once, and then one delivery at a
//! time probes whether it is back.

use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use webhook_types::WebhookPayload;

use crate::batch;
use crate::error::Error;
use crate::jobs::WriteCtx;
use crate::receiver::{self, Outcome};

/// Deliveries waiting per lane before senders wait in turn.
const LANE_QUEUE: usize = 1024;

/// How long the receiver waits for a database connection. Well under the
/// worker's 10 s request timeout, so that a sender sees the 503 (and its
/// `Retry-After`) rather than a timeout of its own.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a database found unreachable is taken to stay so: deliveries
/// are answered 503 without trying, then one probes.
pub const DOWN_FOR: Duration = Duration::from_secs(1);

/// Whether the database was reachable when last tried: a short-lived memory
/// shared by the receiver and `/readyz`, so that an outage costs the first
/// caller one [`ACQUIRE_TIMEOUT`] and everyone else nothing.
#[derive(Debug, Clone)]
pub struct DbHealth {
    /// `None` while the database is taken to be up.
    down: Arc<Mutex<Option<Down>>>,
    /// When the database last answered anyone: a connection wait that runs
    /// out while others are being answered is congestion, not an outage.
    last_answer: Arc<Mutex<Instant>>,
}

impl Default for DbHealth {
    fn default() -> Self {
        Self {
            down: Arc::default(),
            // The service starts after its migrations ran.
            last_answer: Arc::new(Mutex::new(Instant::now())),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Down {
    /// Until when callers are refused without trying.
    until: Instant,
    /// When the one caller allowed to try the database after `until` did
    /// so; the rest are refused meanwhile, so a dead database is not hit by
    /// every queued delivery. A probe that never reports (its request was
    /// dropped) stops counting after [`PROBE_LIMIT`].
    probe_since: Option<Instant>,
}

/// How long one probe holds off the others.
const PROBE_LIMIT: Duration = Duration::from_secs(5);

/// What a caller may do, from [`DbHealth::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Use the database; report the result with [`DbHealth::observe`].
    Try,
    /// The database is known to be unreachable: answer 503 now.
    Refuse,
}

impl DbHealth {
    /// Whether the caller may use the database now; a `Try` while the
    /// database is taken to be down makes the caller the probe.
    pub fn admit(&self) -> Admission {
        let mut down = self.down.lock().expect("health lock poisoned");
        let now = Instant::now();
        match down.as_mut() {
            None => Admission::Try,
            Some(d) if now < d.until => Admission::Refuse,
            Some(d) if d.probe_since.is_some_and(|t| now < t + PROBE_LIMIT) => Admission::Refuse,
            Some(d) => {
                d.probe_since = Some(now);
                Admission::Try
            }
        }
    }

    /// Whether the database answered anyone within `window`.
    pub fn answered_within(&self, window: Duration) -> bool {
        self.last_answer
            .lock()
            .expect("health lock poisoned")
            .elapsed()
            < window
    }

    /// Whether the database was found unreachable within the last
    /// [`DOWN_FOR`]: for work admitted before that was learnt.
    pub fn refusing(&self) -> bool {
        let down = self.down.lock().expect("health lock poisoned");
        down.is_some_and(|d| Instant::now() < d.until)
    }

    /// Records what a use of the database showed: unreachable starts (or
    /// extends) a down period; anything else, errors included, shows the
    /// database answered.
    pub fn observe<T>(&self, result: &Result<T, Error>) {
        let unreachable = matches!(result, Err(Error::Unavailable(_) | Error::DatabaseDown));
        if !unreachable {
            *self.last_answer.lock().expect("health lock poisoned") = Instant::now();
        }
        let mut down = self.down.lock().expect("health lock poisoned");
        if unreachable {
            if down.is_none() {
                tracing::warn!(
                    down_for_ms = DOWN_FOR.as_millis() as u64,
                    "the database is unreachable; answering 503 until it is back"
                );
            }
            *down = Some(Down {
                until: Instant::now() + DOWN_FOR,
                probe_since: None,
            });
        } else if down.take().is_some() {
            tracing::info!("the database is reachable again");
        }
    }
}

/// How long a fresh connection may take to open when [`begin`] checks
/// whether the database is there at all.
const REACHABLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Begins a transaction, waiting [`ACQUIRE_TIMEOUT`] for a connection
/// before asking whether the database is unreachable. A wait that runs out
/// while the database goes on answering others, or while a fresh connection
/// to it opens, is congestion (a burst, the pool still growing), not an
/// outage: it goes on, up to the pool's own timeout.
pub async fn begin(
    pool: &PgPool,
    health: &DbHealth,
) -> Result<Transaction<'static, Postgres>, Error> {
    let begin = pool.begin();
    tokio::pin!(begin);
    match tokio::time::timeout(ACQUIRE_TIMEOUT, &mut begin).await {
        Ok(r) => Ok(r?),
        Err(_) if health.answered_within(ACQUIRE_TIMEOUT) || reachable(pool).await => {
            Ok(begin.await?)
        }
        Err(_) => Err(Error::Unavailable(sqlx::Error::PoolTimedOut)),
    }
}

/// Whether a connection to the database opens, outside the pool. A stopped
/// server refuses at once; only a silent network costs the whole timeout.
async fn reachable(pool: &PgPool) -> bool {
    let options = pool.connect_options();
    let connect = <sqlx::PgConnection as sqlx::Connection>::connect_with(&*options);
    match tokio::time::timeout(REACHABLE_TIMEOUT, connect).await {
        Ok(Ok(conn)) => {
            let _ = sqlx::Connection::close(conn).await;
            true
        }
        _ => false,
    }
}

/// One delivery in its own transaction, as [`receiver::process`], with the
/// receiver's bounded wait for a connection.
async fn process_alone(
    pool: &PgPool,
    health: &DbHealth,
    webhook_id: Option<&str>,
    payload: &WebhookPayload,
    ctx: WriteCtx<'_>,
) -> Result<Outcome, Error> {
    let mut tx = begin(pool, health).await?;
    let outcome = receiver::process_in(&mut tx, webhook_id, payload, ctx).await?;
    tx.commit().await?;
    Ok(outcome)
}

struct Queued {
    webhook_id: Option<String>,
    payload: WebhookPayload,
    reply: oneshot::Sender<Result<Outcome, Error>>,
}

/// The receiver's way into the database: batched lanes, or one transaction
/// per delivery when group commit is off.
#[derive(Debug, Clone)]
pub struct Committer {
    pool: PgPool,
    cdn_domain: Option<String>,
    /// Empty when group commit is off.
    lanes: Vec<mpsc::Sender<Queued>>,
    /// Shared with every lane and with `/readyz`.
    health: DbHealth,
    /// The largest batch any lane has taken so far, shared with the lanes.
    /// Read by [`Committer::largest_batch`]: a test (or an operator) can see
    /// that batching happened, which the answers alone never show.
    largest_batch: Arc<AtomicUsize>,
    /// Batches that failed and were applied one delivery at a time, shared
    /// with the lanes. Read by [`Committer::failed_batches`]: with
    /// concurrent batches on one database, a deadlock would show here (the
    /// answers alone never show it, the fallback hides it).
    failed_batches: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued")
            .field("webhook_id", &self.webhook_id)
            .finish_non_exhaustive()
    }
}

impl Committer {
    /// Starts `lanes` lane tasks in `tasks`, taking up to `max_batch`
    /// deliveries each; `lanes == 0` or `max_batch <= 1` means one
    /// transaction per delivery. Lane tasks end when `tasks` is stopped (or
    /// the last `Committer` clone is dropped), after answering what was
    /// queued.
    pub fn start(
        pool: PgPool,
        cdn_domain: Option<String>,
        lanes: usize,
        max_batch: usize,
        tasks: &service::BackgroundTasks,
    ) -> Self {
        let lanes = if max_batch <= 1 { 0 } else { lanes };
        let health = DbHealth::default();
        let largest_batch = Arc::new(AtomicUsize::new(0));
        let failed_batches = Arc::new(AtomicUsize::new(0));
        let senders = (0..lanes)
            .map(|_| {
                let (tx, rx) = mpsc::channel(LANE_QUEUE);
                let lane = Lane {
                    pool: pool.clone(),
                    cdn_domain: cdn_domain.clone(),
                    health: health.clone(),
                    max_batch,
                    stop: tasks.token(),
                    largest_batch: largest_batch.clone(),
                    failed_batches: failed_batches.clone(),
                };
                tasks.spawn("commit lane", lane.run(rx));
                tx
            })
            .collect();
        Self {
            pool,
            cdn_domain,
            lanes: senders,
            health,
            largest_batch,
            failed_batches,
        }
    }

    /// The database's recent health, as the receiver saw it.
    pub fn health(&self) -> &DbHealth {
        &self.health
    }

    /// Deliveries waiting in the lanes, not yet taken into a batch.
    pub fn queued(&self) -> usize {
        self.lanes
            .iter()
            .map(|l| l.max_capacity() - l.capacity())
            .sum()
    }

    /// The largest number of deliveries one lane has taken at once so far
    /// (0 before the first, and always 0 with group commit off).
    pub fn largest_batch(&self) -> usize {
        self.largest_batch.load(Ordering::Relaxed)
    }

    /// How many batches have failed so far (other than for an unreachable
    /// database) and were applied one delivery at a time instead.
    pub fn failed_batches(&self) -> usize {
        self.failed_batches.load(Ordering::Relaxed)
    }

    /// Applies one delivery, alone or batched with others; returns once its
    /// transaction has committed.
    pub async fn apply(
        &self,
        webhook_id: Option<String>,
        payload: WebhookPayload,
    ) -> Result<Outcome, Error> {
        if self.health.admit() == Admission::Refuse {
            return Err(Error::DatabaseDown);
        }
        if self.lanes.is_empty() {
            let ctx = WriteCtx {
                cdn_domain: self.cdn_domain.as_deref(),
            };
            let r = process_alone(
                &self.pool,
                &self.health,
                webhook_id.as_deref(),
                &payload,
                ctx,
            )
            .await;
            self.health.observe(&r);
            return r;
        }
        let lane = &self.lanes[lane_of(&payload, self.lanes.len())];
        let (reply, answer) = oneshot::channel();
        lane.send(Queued {
            webhook_id,
            payload,
            reply,
        })
        .await
        .map_err(|_| Error::Internal(anyhow::anyhow!("the receiver's commit lane stopped")))?;
        answer
            .await
            .map_err(|_| Error::Internal(anyhow::anyhow!("the receiver's commit lane stopped")))?
    }
}

/// Which lane a delivery belongs to: by the key its job is found by.
fn lane_of(payload: &WebhookPayload, lanes: usize) -> usize {
    let mut h = DefaultHasher::new();
    match payload
        .external_job_id
        .as_deref()
        .and_then(|s| Uuid::parse_str(s).ok())
    {
        Some(id) => id.hash(&mut h),
        None => payload.job_id.hash(&mut h),
    }
    (h.finish() % lanes as u64) as usize
}

/// One lane's task and what it needs.
struct Lane {
    pool: PgPool,
    cdn_domain: Option<String>,
    health: DbHealth,
    max_batch: usize,
    /// Cancelled when the service stops: the lane then refuses new
    /// deliveries, answers those already queued, and returns.
    stop: CancellationToken,
    largest_batch: Arc<AtomicUsize>,
    failed_batches: Arc<AtomicUsize>,
}

impl Lane {
    async fn run(self, mut rx: mpsc::Receiver<Queued>) {
        let ctx = WriteCtx {
            cdn_domain: self.cdn_domain.as_deref(),
        };
        let mut batch = Vec::with_capacity(self.max_batch);
        let mut stopping = false;
        loop {
            let first = tokio::select! {
                d = rx.recv() => match d {
                    Some(d) => d,
                    None => return,
                },
                _ = self.stop.cancelled(), if !stopping => {
                    stopping = true;
                    rx.close();
                    continue;
                }
            };
            batch.push(first);
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(d) => batch.push(d),
                    Err(_) => break,
                }
            }
            metrics::histogram!("api_webhook_batch_size").record(batch.len() as f64);
            self.largest_batch.fetch_max(batch.len(), Ordering::Relaxed);
            // Queued before the database was found unreachable (by this lane
            // or another): answered without a wait.
            if self.health.refusing() {
                for d in batch.drain(..) {
                    let _ = d.reply.send(Err(Error::DatabaseDown));
                }
                continue;
            }
            let r = run_batch(&self.pool, &self.health, &batch, ctx).await;
            self.health.observe(&r);
            match r {
                Ok(outcomes) => {
                    for (d, outcome) in batch.drain(..).zip(outcomes) {
                        let _ = d.reply.send(Ok(outcome));
                    }
                    continue;
                }
                // Unreachable: each delivery alone would meet the same,
                // one timeout after another. The sender retries.
                Err(Error::Unavailable(_) | Error::DatabaseDown) => {
                    for d in batch.drain(..) {
                        let _ = d.reply.send(Err(Error::DatabaseDown));
                    }
                    continue;
                }
                Err(e) => {
                    self.failed_batches.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("api_webhook_batches_failed_total").increment(1);
                    let cause = std::error::Error::source(&e).map(ToString::to_string);
                    tracing::warn!(error = %e, cause = cause.as_deref(), size = batch.len(), "webhook batch failed; applying one by one");
                }
            }
            for d in batch.drain(..) {
                // The database was found unreachable meanwhile.
                if self.health.refusing() {
                    let _ = d.reply.send(Err(Error::DatabaseDown));
                    continue;
                }
                let r = process_alone(
                    &self.pool,
                    &self.health,
                    d.webhook_id.as_deref(),
                    &d.payload,
                    ctx,
                )
                .await;
                self.health.observe(&r);
                let _ = d.reply.send(r);
            }
        }
    }
}

/// One batch in one transaction, as [`batch::apply`] decides it.
async fn run_batch(
    pool: &PgPool,
    health: &DbHealth,
    queued: &[Queued],
    ctx: WriteCtx<'_>,
) -> Result<Vec<Outcome>, Error> {
    let deliveries: Vec<batch::Delivery<'_>> = queued
        .iter()
        .map(|q| batch::Delivery {
            webhook_id: q.webhook_id.as_deref(),
            payload: &q.payload,
        })
        .collect();
    let mut tx = begin(pool, health).await?;
    let outcomes = batch::apply(&mut tx, &deliveries, ctx).await?;
    tx.commit().await?;
    Ok(outcomes)
}
