//! The webhook sender: delivers the outbox, in order per job, with retries.
//!
//! Shape:
//! - Every job with something to deliver has one *lane*: a task that owns
//!   the job's queue of deliveries ordered by `sequence` and works only on
//!   its head. A later event therefore never leaves while an earlier one is
//!   being retried, and a job whose callback is dead or hanging holds up
//!   only itself. A lane ends when its queue is empty.
//! - Lanes of different jobs run concurrently; a semaphore bounds the HTTP
//!   requests in flight across all of them (`--max-in-flight-deliveries`).
//!   A lane waiting out a backoff holds no permit.
//! - A `job.progress` at the head of a lane with a newer event behind it has
//!   been overtaken: it is marked `superseded` and never sent (or never sent
//!   again). Started, completed and failed are never dropped.
//! - The outcome of each attempt goes to the *ledger writer*, which commits
//!   them in batches: one transaction for all outcomes that arrived while the
//!   previous one committed. An outcome lost in a crash only means the
//!   delivery is sent again after the restart (at least once, as promised),
//!   and the commit is off the delivery path, which keeps latency low.
//!
//! - Failures that say the receiver itself is unreachable (no connection, a
//!   timeout, 502/503/504) put the callback's *origin* in a down state with
//!   its own short probe backoff ([`PROBE_FIRST`] doubling up to
//!   [`PROBE_MAX`], never sooner than a `Retry-After`): one waiting delivery
//!   at a time is tried early as the probe. The first success to the origin
//!   ends the down state and releases every lane waiting on it at once
//!   (each still on its own head, within the in-flight bound), so jobs
//!   converge seconds after an outage instead of at their next scheduled
//!   retry. An early attempt that fails leaves its delivery's schedule where
//!   it was: the contract's schedule stays the bound for a callback that
//!   stays down.
//!
//! Rows reach the sender three ways: from the reporter right after its
//! commit, from the store at start (every pending row, due at once), and from
//! redelivery (the HTTP endpoint directly, the CLI through a flag the sweep
//! reads every second).
//!
//! On a shared store (PostgreSQL, a fleet) a lane may only run while it holds
//! its job's *delivery lease* (a row lock would not survive the lane's
//! waits): one lane per job across the fleet, so each job's events still go
//! out one at a time in `sequence` order. A new lane takes the lease first;
//! when another worker's lane holds it, the new one ends at once and
//! announces the job (`NOTIFY`), and the holder reloads the job's pending
//! rows from the store. A lane renews its lease every third of
//! `--job-lease-ms`, lingers a moment when its queue empties (a running job
//! makes its next event soon), then, with its outcomes committed, takes up
//! anything others committed meanwhile or releases the lease. The sweep
//! takes up, at start, on an announcement and every few seconds, jobs with
//! pending deliveries and no live lease: a dead worker's, once its lease
//! runs out; a worker shutting down expires its leases so others take
//! over at once. On SQLite every lease is granted without a query.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rand::SeedableRng as _;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use signing::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SecretSet};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;
use webhook_types::Event;

use crate::backoff::{MAX_RETRY_AFTER, RetrySchedule, parse_retry_after};
use crate::clock::{Clock, now_ms, now_unix};
use crate::policy::{CallbackPolicy, PolicyError, PolicyResolver};
use crate::store::{DeliveryRow, DeliveryStatus, LedgerOp, NewDelivery, Store};

/// The `User-Agent` of every webhook request.
pub const USER_AGENT: &str = concat!("clipping-worker/", env!("CARGO_PKG_VERSION"));

/// The event-name header.
pub const HEADER_EVENT: &str = "X-Webhook-Event";

/// How much of a receiver's answer body is read (and thrown away) so that
/// the connection can be reused; a longer body costs the connection instead.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How often the store is checked for deliveries that `webhooks redeliver`
/// flagged.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How long a lane on a shared store waits for its job's next delivery
/// before it gives up the job's delivery lease.
const LANE_LINGER: Duration = Duration::from_secs(2);

/// The first probe of a down origin comes this long after it went down.
pub const PROBE_FIRST: Duration = Duration::from_millis(250);

/// Probes of a down origin are never further apart than this (unless the
/// receiver asked for more with `Retry-After`).
pub const PROBE_MAX: Duration = Duration::from_secs(3);

/// The sender's settings.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Signing secrets; none sends unsigned.
    pub secrets: Option<SecretSet>,
    /// Base delays before each attempt.
    pub schedule: RetrySchedule,
    /// Where callbacks may go.
    pub policy: Arc<CallbackPolicy>,
    /// Requests in flight at once, across jobs.
    pub max_in_flight: usize,
    /// Timeout of one request.
    pub timeout: Duration,
    /// How long in-flight attempts may run on after shutdown begins.
    pub grace: Duration,
    /// This worker's owner id; each lane's delivery lease is held as
    /// `{owner}#{n}`.
    pub owner: Arc<str>,
    /// How long a lane's delivery lease lasts without renewal (on a shared
    /// store); renewed every third of that while the lane runs.
    pub lease: Duration,
    /// How often the store is searched for jobs whose deliveries nobody
    /// delivers (a dead worker's), besides when announced.
    pub poll: Duration,
    /// The clock delivery leases are judged by.
    pub clock: Clock,
}

/// A delivery as the sender holds it in memory.
#[derive(Debug, Clone)]
pub struct QueuedDelivery {
    /// `msg_…`, also the `webhook-id` header.
    pub delivery_id: String,
    /// Its job, which names its lane.
    pub job_id: String,
    /// Position in the job's lane.
    pub sequence: u64,
    /// The event, for the header and the supersede rule.
    pub event: Event,
    /// Target.
    pub url: String,
    /// Exact body bytes, sent as stored.
    pub body: Bytes,
    /// Attempts already made.
    pub attempt_count: u32,
    /// When the next attempt is due.
    pub next_attempt: Instant,
    /// Queued again by hand: sent even if overtaken, because someone asked.
    pub manual: bool,
    /// Identifies this queueing, so that the outcome of an attempt started
    /// before a manual redelivery does not overwrite the fresh entry.
    epoch: u64,
}

impl QueuedDelivery {
    /// A delivery just written by the reporter, due now.
    pub fn from_new(d: NewDelivery) -> Self {
        QueuedDelivery {
            delivery_id: d.delivery_id,
            job_id: d.job_id,
            sequence: d.sequence,
            event: d.event,
            url: d.url,
            body: d.body,
            attempt_count: 0,
            next_attempt: Instant::now(),
            manual: false,
            epoch: 0,
        }
    }

    /// A stored pending delivery, due now.
    pub fn from_row(d: DeliveryRow, manual: bool) -> Self {
        QueuedDelivery {
            delivery_id: d.delivery_id,
            job_id: d.job_id,
            sequence: d.sequence,
            event: d.event,
            url: d.url,
            body: d.body,
            attempt_count: d.attempt_count,
            next_attempt: Instant::now(),
            manual,
            epoch: 0,
        }
    }
}

/// One job's queue. Its presence in [`Inner::lanes`] means its task runs.
#[derive(Debug)]
struct Lane {
    /// Deliveries by sequence; the first is the only one worked on.
    queue: BTreeMap<u64, QueuedDelivery>,
    /// Wakes the lane from a backoff wait when something new arrives, so it
    /// can supersede an overtaken progress event at once.
    wake: Arc<Notify>,
    /// Sequences this lane finished (delivered, failed, superseded): a
    /// reload from the store, whose ledger may lag, must not queue them
    /// again.
    done: std::collections::HashSet<u64>,
}

#[derive(Debug)]
struct Inner {
    /// Lanes by job id. A std mutex: held only for map edits, never across
    /// an await.
    lanes: Mutex<HashMap<String, Lane>>,
    /// One pooled client for every callback (keep-alive, rustls, no
    /// redirects, the policy's resolver).
    client: reqwest::Client,
    config: SenderConfig,
    /// Bounds the requests in flight across lanes.
    permits: Arc<Semaphore>,
    /// Every lane task, so shutdown can wait for them.
    tracker: TaskTracker,
    /// Shutdown: lanes stop taking work.
    cancel: CancellationToken,
    /// Outcomes to the ledger writer.
    ledger: mpsc::UnboundedSender<LedgerMsg>,
    /// Source of [`QueuedDelivery::epoch`].
    epochs: AtomicU64,
    /// Callback origins taken to be down, and their probes.
    origins: Origins,
    /// The store: delivery leases, and reloads of a job's pending rows.
    store: Store,
    /// Whether other workers share the store, so that lanes need leases.
    shared: bool,
}

/// Callback origins (`scheme://host:port`) that failed as a whole. An
/// origin is in the map only while it is taken to be down.
#[derive(Debug, Default)]
struct Origins {
    /// A std mutex: held only for map edits, never across an await.
    down: Mutex<HashMap<String, DownOrigin>>,
}

#[derive(Debug)]
struct DownOrigin {
    /// Probes that failed since the origin went down: the probe backoff.
    failed_probes: u32,
    /// When the next probe may start.
    next_probe: Instant,
    /// When the probe in flight started; a probe that never reports (its
    /// lane was stopped) stops counting after a request timeout.
    probing_since: Option<Instant>,
    /// Cancelled when the origin answers again: every lane that failed on
    /// it holds a clone and wakes at once.
    recovered: CancellationToken,
}

/// The delay before the probe after `failed_probes` failed ones.
fn probe_delay(failed_probes: u32, retry_after: Option<Duration>) -> Duration {
    let backoff = service::backoff::Exponential::new(PROBE_FIRST, PROBE_MAX).delay(failed_probes);
    backoff.max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER))
}

impl Origins {
    /// Records a failure that says the origin is unreachable; returns the
    /// token that is cancelled when it answers again.
    fn failed(
        &self,
        origin: &str,
        probe: bool,
        retry_after: Option<Duration>,
    ) -> CancellationToken {
        let mut down = self.down.lock().expect("origins lock");
        let now = Instant::now();
        match down.get_mut(origin) {
            Some(d) => {
                if probe {
                    d.failed_probes += 1;
                    d.probing_since = None;
                    d.next_probe = now + probe_delay(d.failed_probes, retry_after);
                } else if let Some(wish) = retry_after {
                    d.next_probe = d.next_probe.max(now + wish.min(MAX_RETRY_AFTER));
                }
                d.recovered.clone()
            }
            None => {
                tracing::info!(%origin, "callback origin unreachable; probing it until it answers");
                let d = DownOrigin {
                    failed_probes: 0,
                    next_probe: now + probe_delay(0, retry_after),
                    probing_since: None,
                    recovered: CancellationToken::new(),
                };
                let token = d.recovered.clone();
                down.insert(origin.to_owned(), d);
                token
            }
        }
    }

    /// Records a success: the origin is up, and every lane waiting on it
    /// is released.
    fn answered(&self, origin: &str) {
        let mut down = self.down.lock().expect("origins lock");
        if let Some(d) = down.remove(origin) {
            tracing::info!(%origin, "callback origin answers again; releasing its deliveries");
            d.recovered.cancel();
        }
    }

    /// When the origin's next probe may start, if it is down; while a probe
    /// runs, when it stops counting.
    fn next_probe(&self, origin: &str, stale_after: Duration) -> Option<Instant> {
        let down = self.down.lock().expect("origins lock");
        down.get(origin).map(|d| match d.probing_since {
            Some(t) => d.next_probe.max(t + stale_after),
            None => d.next_probe,
        })
    }

    /// Makes the caller the origin's probe, if one is due and none runs.
    fn claim_probe(&self, origin: &str, stale_after: Duration) -> bool {
        let mut down = self.down.lock().expect("origins lock");
        let now = Instant::now();
        match down.get_mut(origin) {
            Some(d)
                if now >= d.next_probe
                    && d.probing_since.is_none_or(|t| now >= t + stale_after) =>
            {
                d.probing_since = Some(now);
                true
            }
            _ => false,
        }
    }
}

/// The origin a callback URL belongs to.
fn origin_of(url: &str) -> String {
    Url::parse(url).map_or_else(|_| url.to_owned(), |u| u.origin().ascii_serialization())
}

/// The handle through which deliveries enter the sender; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

/// The sender's background tasks, to be stopped at shutdown.
#[derive(Debug)]
pub struct SenderTasks {
    inner: Arc<Inner>,
    ledger_done: CancellationToken,
    ledger: JoinHandle<()>,
    sweep: JoinHandle<()>,
}

/// Builds the HTTP client every delivery uses.
pub fn build_client(
    policy: Arc<CallbackPolicy>,
    timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would resolve names itself, out of the policy's reach.
        .no_proxy()
        .dns_resolver(Arc::new(PolicyResolver { policy }))
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .build()
}

impl Outbox {
    /// Starts the sender: the ledger writer, the redelivery sweep, and a lane
    /// for every job with pending deliveries in the store.
    pub async fn start(
        store: Store,
        config: SenderConfig,
        cancel: CancellationToken,
    ) -> anyhow::Result<(Outbox, SenderTasks)> {
        let client = build_client(config.policy.clone(), config.timeout)?;
        let (ledger_tx, ledger_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            lanes: Mutex::new(HashMap::new()),
            client,
            permits: Arc::new(Semaphore::new(config.max_in_flight)),
            config,
            tracker: TaskTracker::new(),
            cancel: cancel.clone(),
            ledger: ledger_tx,
            epochs: AtomicU64::new(1),
            origins: Origins::default(),
            shared: store.is_shared(),
            store: store.clone(),
        });
        let outbox = Outbox {
            inner: inner.clone(),
        };
        let ledger_done = CancellationToken::new();
        let ledger = tokio::spawn(run_ledger(store.clone(), ledger_rx, ledger_done.clone()));
        if !inner.shared {
            // Leftovers of earlier sweeps were never acted on: the resume
            // below covers every pending row anyway.
            store.take_requeued().await?;
            let pending = store.pending_deliveries().await?;
            if !pending.is_empty() {
                tracing::info!(count = pending.len(), "resuming pending webhook deliveries");
            }
            for row in pending {
                outbox.enqueue(QueuedDelivery::from_row(row, false));
            }
        }
        // On a shared store, the sweep's first pass takes up every job whose
        // deliveries nobody holds.
        let sweep = tokio::spawn(run_sweep(store, outbox.clone(), cancel));
        Ok((
            outbox,
            SenderTasks {
                inner,
                ledger_done,
                ledger,
                sweep,
            },
        ))
    }

    /// Hands a delivery to its job's lane, starting the lane if needed. A
    /// manual redelivery replaces what is queued with the same sequence
    /// (resetting its schedule); any other delivery the lane already holds
    /// or finished is left alone. After shutdown began this does nothing:
    /// the row stays pending in the store.
    pub fn enqueue(&self, delivery: QueuedDelivery) {
        // Only a manual redelivery replaces (and resets) what is queued; a
        // delivery the lane already has, or already finished (it may have
        // reached the lane from the store first), is not queued again.
        let replace = delivery.manual;
        self.enqueue_all(vec![delivery], replace, None);
    }

    /// Hands deliveries of one job to its lane. `replace`: a delivery already
    /// queued with the same sequence is replaced (else kept, with its place
    /// in the retry schedule). `lease`: the id of a delivery lease already
    /// taken for a new lane.
    fn enqueue_all(&self, deliveries: Vec<QueuedDelivery>, replace: bool, lease: Option<String>) {
        let inner = &self.inner;
        let Some(job_id) = deliveries.first().map(|d| d.job_id.clone()) else {
            return;
        };
        if inner.cancel.is_cancelled() {
            return;
        }
        let mut lanes = inner.lanes.lock().expect("lanes lock");
        let (lane, new) = match lanes.get_mut(&job_id) {
            Some(lane) => (lane, false),
            None => {
                let lane = Lane {
                    queue: BTreeMap::new(),
                    wake: Arc::new(Notify::new()),
                    done: Default::default(),
                };
                (lanes.entry(job_id.clone()).or_insert(lane), true)
            }
        };
        for mut delivery in deliveries {
            if !replace
                && (lane.queue.contains_key(&delivery.sequence)
                    || lane.done.contains(&delivery.sequence))
            {
                continue;
            }
            lane.done.remove(&delivery.sequence);
            delivery.epoch = inner.epochs.fetch_add(1, Ordering::Relaxed);
            lane.queue.insert(delivery.sequence, delivery);
        }
        if new {
            let wake = lane.wake.clone();
            inner
                .tracker
                .spawn(run_lane(inner.clone(), job_id, wake, lease));
        } else {
            lane.wake.notify_one();
        }
    }

    /// Whether this worker runs a lane for the job.
    fn has_lane(&self, job_id: &str) -> bool {
        self.inner
            .lanes
            .lock()
            .expect("lanes lock")
            .contains_key(job_id)
    }

    /// Deliveries held in memory right now (queued or in flight).
    pub fn in_memory(&self) -> usize {
        let lanes = self.inner.lanes.lock().expect("lanes lock");
        lanes.values().map(|l| l.queue.len()).sum()
    }
}

impl SenderTasks {
    /// Stops the sender: lanes stop taking work, in-flight attempts get the
    /// configured grace, then the ledger writer commits what it holds.
    /// Whatever was not delivered stays pending in the store.
    pub async fn shutdown(self) {
        let inner = self.inner;
        inner.cancel.cancel();
        inner.tracker.close();
        let bound = inner.config.grace + Duration::from_secs(1);
        if tokio::time::timeout(bound, inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("webhook lanes did not stop in time");
        }
        let _ = self.sweep.await;
        self.ledger_done.cancel();
        let _ = self.ledger.await;
        // Hand this worker's lanes over at once rather than a lease later.
        if inner.shared
            && let Err(e) = inner.store.abandon_lanes(&inner.config.owner).await
        {
            tracing::warn!(error = ?e, "failed to hand this worker's deliveries over");
        }
    }
}

/// What one attempt came to.
#[derive(Debug)]
enum Outcome {
    /// 2xx.
    Delivered(u16),
    /// 410: the receiver wants no more.
    Gone,
    /// Anything else: retry if the schedule allows.
    Retry {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
        /// The failure is the receiver's as a whole (no connection, a
        /// timeout, 502/503/504), not this delivery's.
        origin_down: bool,
    },
}

/// A lane's hold on its job's delivery lease (shared stores only).
struct LaneLease {
    /// `{owner}#{n}`: unique per lane, so a lane never mistakes a later
    /// lane's lease, even of its own worker, for its own.
    id: String,
    /// When to renew next.
    renew_at: Instant,
}

/// Takes the job's delivery lease for a new lane; `None` when another lane
/// (of any worker) holds it, after announcing the job so that its holder
/// picks up what this worker committed.
///
/// A lease taken over from another lane (one that ended, or a dead
/// worker's) may come with earlier deliveries still pending: they are
/// loaded into the lane before it sends anything, so that order holds.
async fn acquire_lease(inner: &Arc<Inner>, job_id: &str) -> Option<LaneLease> {
    let lease = try_acquire_lease(inner, job_id).await?;
    match inner.store.pending_for_job(job_id).await {
        Ok(rows) => Outbox {
            inner: inner.clone(),
        }
        .enqueue_all(
            rows.into_iter()
                .map(|r| QueuedDelivery::from_row(r, false))
                .collect(),
            false,
            None,
        ),
        Err(e) => {
            tracing::warn!(%job_id, error = ?e, "failed to load a job's pending deliveries; giving its lease back");
            let _ = inner.store.release_lane(job_id, &lease.id).await;
            return None;
        }
    }
    Some(lease)
}

async fn try_acquire_lease(inner: &Inner, job_id: &str) -> Option<LaneLease> {
    let id = format!(
        "{}#{}",
        inner.config.owner,
        inner.epochs.fetch_add(1, Ordering::Relaxed)
    );
    let now = inner.config.clock.now_ms();
    let until = now + inner.config.lease.as_millis() as i64;
    match inner.store.acquire_lane(job_id, &id, now, until).await {
        Ok(true) => Some(LaneLease {
            id,
            renew_at: Instant::now() + inner.config.lease / 3,
        }),
        Ok(false) => {
            tracing::debug!(%job_id, "another lane delivers this job; announcing its new deliveries");
            if let Err(e) = inner.store.announce_lane(job_id).await {
                tracing::warn!(%job_id, error = ?e, "failed to announce deliveries; the sweep will find them");
            }
            None
        }
        Err(e) => {
            tracing::warn!(%job_id, error = ?e, "failed to take a delivery lease; the sweep will retry");
            None
        }
    }
}

/// Removes the lane of `job_id` from the map.
fn drop_lane(inner: &Inner, job_id: &str) {
    inner.lanes.lock().expect("lanes lock").remove(job_id);
}

async fn run_lane(inner: Arc<Inner>, job_id: String, wake: Arc<Notify>, lease: Option<String>) {
    // Jitter only needs to spread retries, not resist prediction; a small
    // seeded generator per lane keeps the future `Send`.
    let mut rng = rand::rngs::SmallRng::from_rng(&mut rand::rng());
    // Set while the head last failed because its origin was down: cancelled
    // when the origin answers again.
    let mut origin_recovered: Option<CancellationToken> = None;
    // On a shared store, only the holder of the job's delivery lease may
    // deliver it: one lane per job across the fleet.
    // The lane has finished the job's terminal event: nothing more is coming
    // (but a manual redelivery), so there is no reason to linger.
    let mut finished = false;
    let mut lease = match (inner.shared, lease) {
        (false, _) => None,
        (true, Some(id)) => Some(LaneLease {
            id,
            renew_at: Instant::now() + inner.config.lease / 3,
        }),
        (true, None) => match acquire_lease(&inner, &job_id).await {
            Some(l) => Some(l),
            None => {
                drop_lane(&inner, &job_id);
                return;
            }
        },
    };
    loop {
        if let Some(l) = &mut lease
            && Instant::now() >= l.renew_at
        {
            let until = inner.config.clock.now_ms() + inner.config.lease.as_millis() as i64;
            match inner.store.renew_lane(&job_id, &l.id, until).await {
                Ok(true) => l.renew_at = Instant::now() + inner.config.lease / 3,
                Ok(false) => {
                    tracing::warn!(%job_id, "delivery lease lost: another worker delivers this job now");
                    drop_lane(&inner, &job_id);
                    return;
                }
                // Retried soon; a lease that runs out meanwhile is taken
                // over, and the renewal then says so.
                Err(e) => {
                    tracing::warn!(%job_id, error = ?e, "failed to renew a delivery lease");
                    l.renew_at = Instant::now() + Duration::from_millis(500);
                }
            }
        }
        let next = {
            let mut lanes = inner.lanes.lock().expect("lanes lock");
            let lane = lanes
                .get_mut(&job_id)
                .expect("a running lane is in the map");
            match lane.queue.first_key_value() {
                None if lease.is_none() => {
                    lanes.remove(&job_id);
                    return;
                }
                None => None,
                Some((_, d)) => Some((d.clone(), lane.queue.len() > 1)),
            }
        };
        let Some((head, overtaken)) = next else {
            // Shared store: the lane lingers a moment for the job's next
            // event (a running job makes one every few seconds at most), so
            // the lease is not given up and taken again between events.
            if !finished {
                let renew_at = lease.as_ref().map(|l| l.renew_at).expect("guarded");
                let lingered = tokio::select! {
                    _ = wake.notified() => false,
                    _ = tokio::time::sleep(LANE_LINGER) => true,
                    _ = tokio::time::sleep_until(renew_at) => false,
                    _ = inner.cancel.cancelled() => return,
                };
                if !lingered {
                    continue;
                }
            }
            // Before letting go, take up what other workers committed for
            // this job while this lane held it.
            let held = lease.as_ref().expect("guarded");
            flush_ledger(&inner).await;
            match inner.store.pending_for_job(&job_id).await {
                Ok(rows) if !rows.is_empty() => {
                    let outbox = Outbox {
                        inner: inner.clone(),
                    };
                    let rows = rows
                        .into_iter()
                        .map(|r| QueuedDelivery::from_row(r, false))
                        .collect();
                    outbox.enqueue_all(rows, false, None);
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(%job_id, error = ?e, "failed to look for more deliveries"),
            }
            // Release first, then leave the map: until the lane is gone
            // from the map, new deliveries of this job still come to it, and
            // it takes the lease again for them; once it is gone, a new
            // lane finds the lease free.
            if let Err(e) = inner.store.release_lane(&job_id, &held.id).await {
                tracing::warn!(%job_id, error = ?e, "failed to release a delivery lease; it runs out by itself");
            }
            let more = {
                let mut lanes = inner.lanes.lock().expect("lanes lock");
                let more = lanes.get(&job_id).is_some_and(|l| !l.queue.is_empty());
                if !more {
                    lanes.remove(&job_id);
                }
                more
            };
            if !more {
                return;
            }
            match acquire_lease(&inner, &job_id).await {
                Some(l) => lease = Some(l),
                None => {
                    drop_lane(&inner, &job_id);
                    return;
                }
            }
            continue;
        };
        if inner.cancel.is_cancelled() {
            return;
        }
        if head.event == Event::Progress && overtaken && !head.manual {
            let _ = inner.ledger.send(LedgerMsg::Op(LedgerOp::Superseded {
                delivery_id: head.delivery_id.clone(),
            }));
            metrics::counter!("worker_webhook_deliveries_total", "status" => "superseded")
                .increment(1);
            remove_if_current(&inner, &head);
            continue;
        }
        let origin = origin_of(&head.url);
        // An attempt before the schedule's: as the origin's probe, or
        // because the origin answered again.
        let mut early = false;
        if head.next_attempt > Instant::now() {
            let recovered = origin_recovered.clone();
            let stale_after = inner.config.timeout + inner.config.grace;
            let probe_at = recovered
                .as_ref()
                .and_then(|_| inner.origins.next_probe(&origin, stale_after));
            let renew_at = lease.as_ref().map(|l| l.renew_at);
            tokio::select! {
                _ = tokio::time::sleep_until(head.next_attempt) => continue,
                _ = wake.notified() => continue,
                _ = tokio::time::sleep_until(renew_at.unwrap_or(head.next_attempt)), if renew_at.is_some() => continue,
                _ = inner.cancel.cancelled() => return,
                _ = async { recovered.as_ref().expect("guarded").cancelled().await }, if recovered.is_some() => {
                    origin_recovered = None;
                    early = true;
                }
                _ = tokio::time::sleep_until(probe_at.unwrap_or(head.next_attempt)), if probe_at.is_some() => {
                    // Another lane may have claimed it; look again.
                    if !inner.origins.claim_probe(&origin, stale_after) {
                        continue;
                    }
                    early = true;
                }
            }
        }
        let permit = tokio::select! {
            p = inner.permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = inner.cancel.cancelled() => return,
        };
        let attempted_at = now_ms();
        let started = Instant::now();
        let outcome = attempt(&inner, &head).await;
        drop(permit);
        let duration = started.elapsed();
        metrics::histogram!("worker_webhook_attempt_duration_seconds")
            .record(duration.as_secs_f64());
        let mut attempts = head.attempt_count + 1;
        let (status_code, error, next) = match outcome {
            Outcome::Delivered(code) => {
                inner.origins.answered(&origin);
                origin_recovered = None;
                (Some(code), None, None)
            }
            Outcome::Gone => {
                inner.origins.answered(&origin);
                (
                    Some(410),
                    Some("410 Gone: the receiver refuses further deliveries".to_owned()),
                    None,
                )
            }
            Outcome::Retry {
                status,
                error,
                retry_after,
                origin_down,
            } => {
                if origin_down {
                    origin_recovered = Some(inner.origins.failed(&origin, early, retry_after));
                } else {
                    origin_recovered = None;
                    if status.is_some() {
                        // It answered: what was wrong was this delivery's.
                        inner.origins.answered(&origin);
                    }
                }
                if early {
                    // Off the schedule: the delivery keeps its place in it.
                    attempts = head.attempt_count;
                    let left = head.next_attempt.saturating_duration_since(Instant::now());
                    (status, Some(error), Some(left))
                } else {
                    let delay = inner
                        .config
                        .schedule
                        .next_delay(attempts, retry_after, &mut rng);
                    (status, Some(error), delay)
                }
            }
        };
        let status = match (&error, next) {
            (None, _) => DeliveryStatus::Delivered,
            (Some(_), Some(_)) => DeliveryStatus::Pending,
            (Some(_), None) => DeliveryStatus::Failed,
        };
        let delay = next.unwrap_or_default();
        metrics::counter!(
            "worker_webhook_attempts_total",
            "result" => if status == DeliveryStatus::Delivered { "success" } else { "failure" }
        )
        .increment(1);
        if status != DeliveryStatus::Pending {
            metrics::counter!("worker_webhook_deliveries_total", "status" => status.as_str())
                .increment(1);
        }
        match &error {
            Some(e) if status == DeliveryStatus::Failed => tracing::warn!(
                delivery_id = %head.delivery_id, job_id = %head.job_id, event = %head.event,
                attempts, error = %e, "webhook delivery failed for good"
            ),
            Some(e) => tracing::debug!(
                delivery_id = %head.delivery_id, attempts, error = %e, retry_in = ?delay,
                "webhook attempt failed"
            ),
            None => {}
        }
        let _ = inner.ledger.send(LedgerMsg::Op(LedgerOp::Attempt {
            delivery_id: head.delivery_id.clone(),
            attempted_at,
            status_code,
            error,
            duration_ms: duration.as_millis() as u64,
            status,
            attempt_count: attempts,
            next_attempt_at: now_ms() + delay.as_millis() as i64,
        }));
        let mut lanes = inner.lanes.lock().expect("lanes lock");
        let lane = lanes
            .get_mut(&job_id)
            .expect("a running lane is in the map");
        if let Some(entry) = lane.queue.get_mut(&head.sequence)
            && entry.epoch == head.epoch
        {
            if status == DeliveryStatus::Pending {
                entry.attempt_count = attempts;
                entry.next_attempt = Instant::now() + delay;
            } else {
                lane.queue.remove(&head.sequence);
                lane.done.insert(head.sequence);
                finished |= head.event.is_terminal();
            }
        }
    }
}

fn remove_if_current(inner: &Inner, head: &QueuedDelivery) {
    let mut lanes = inner.lanes.lock().expect("lanes lock");
    if let Some(lane) = lanes.get_mut(&head.job_id)
        && lane
            .queue
            .get(&head.sequence)
            .is_some_and(|e| e.epoch == head.epoch)
    {
        lane.queue.remove(&head.sequence);
        lane.done.insert(head.sequence);
    }
}

async fn attempt(inner: &Inner, d: &QueuedDelivery) -> Outcome {
    let url = match Url::parse(&d.url) {
        Ok(u) => u,
        Err(e) => {
            return Outcome::Retry {
                status: None,
                error: format!("bad callback URL: {e}"),
                retry_after: None,
                origin_down: false,
            };
        }
    };
    // Names are checked by the client's resolver; address literals never
    // reach it, so they are checked here, before every attempt.
    if let Err(e) = inner.config.policy.check_literal(&url) {
        return Outcome::Retry {
            status: None,
            error: format!("refused by the callback policy: {e}"),
            retry_after: None,
            origin_down: false,
        };
    }
    let timestamp = now_unix();
    let mut request = inner
        .client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header(HEADER_EVENT, d.event.as_str())
        .header(HEADER_ID, &d.delivery_id)
        .header(HEADER_TIMESTAMP, timestamp.to_string())
        .body(d.body.clone());
    if let Some(secrets) = &inner.config.secrets {
        request = request.header(
            HEADER_SIGNATURE,
            secrets.sign(&d.delivery_id, timestamp, &d.body),
        );
    }
    let send = async {
        let mut response = request.send().await?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        // Read a bounded amount of the answer so the connection can be reused.
        let mut read = 0;
        while read < MAX_ANSWER_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        Ok::<_, reqwest::Error>((status, retry_after))
    };
    let grace = inner.config.grace;
    let result = tokio::select! {
        r = send => r,
        _ = async { inner.cancel.cancelled().await; tokio::time::sleep(grace).await } => {
            return Outcome::Retry {
                status: None,
                error: "aborted: the worker shut down during the attempt".to_owned(),
                retry_after: None,
                origin_down: false,
            };
        }
    };
    match result {
        Ok((code, _)) if (200..300).contains(&code) => Outcome::Delivered(code),
        Ok((410, _)) => Outcome::Gone,
        Ok((code, retry_after)) => Outcome::Retry {
            status: Some(code),
            error: format!("HTTP {code}"),
            retry_after,
            origin_down: matches!(code, 502..=504),
        },
        Err(e) => Outcome::Retry {
            status: None,
            error: describe(&e, inner.config.timeout),
            retry_after: None,
            // The policy's refusal of a resolved name comes back as a
            // connection error too; it is not the receiver being down.
            origin_down: !refused_by_policy(&e),
        },
    }
}

/// Whether the policy's resolver refused the name.
fn refused_by_policy(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.downcast_ref::<PolicyError>().is_some() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A request error as one line, with its causes (the policy's refusal shows
/// up here, as the resolver's error).
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {} ms", timeout.as_millis());
    }
    let mut text = if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What lanes send the ledger writer.
#[derive(Debug)]
enum LedgerMsg {
    /// An outcome to commit.
    Op(LedgerOp),
    /// Answered once every outcome sent before it is committed: a lane
    /// about to hand its job over (or to reload it) waits for this, so the
    /// store shows what the lane already delivered.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Commits outcomes in batches until `done`, then commits what is left.
async fn run_ledger(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<LedgerMsg>,
    done: CancellationToken,
) {
    const BATCH: usize = 1024;
    let mut msgs = Vec::with_capacity(BATCH);
    let mut batch = Vec::with_capacity(BATCH);
    let mut flushes = Vec::new();
    loop {
        tokio::select! {
            n = rx.recv_many(&mut msgs, BATCH) => {
                if n == 0 {
                    return;
                }
            }
            _ = done.cancelled() => {
                while let Ok(msg) = rx.try_recv() {
                    msgs.push(msg);
                }
                split(&mut msgs, &mut batch, &mut flushes);
                commit(&store, &mut batch).await;
                return;
            }
        }
        split(&mut msgs, &mut batch, &mut flushes);
        commit(&store, &mut batch).await;
        for flushed in flushes.drain(..) {
            let _ = flushed.send(());
        }
    }
}

fn split(
    msgs: &mut Vec<LedgerMsg>,
    batch: &mut Vec<LedgerOp>,
    flushes: &mut Vec<tokio::sync::oneshot::Sender<()>>,
) {
    for msg in msgs.drain(..) {
        match msg {
            LedgerMsg::Op(op) => batch.push(op),
            LedgerMsg::Flush(tx) => flushes.push(tx),
        }
    }
}

/// Waits (a bounded time) until the ledger writer has committed every
/// outcome sent so far.
async fn flush_ledger(inner: &Inner) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if inner.ledger.send(LedgerMsg::Flush(tx)).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
    }
}

async fn commit(store: &Store, batch: &mut Vec<LedgerOp>) {
    if batch.is_empty() {
        return;
    }
    for attempt in 0..3 {
        match store.apply_ledger(batch).await {
            Ok(()) => break,
            Err(e) => {
                tracing::error!(error = ?e, attempt, "failed to record webhook outcomes");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    batch.clear();
}

/// Picks up deliveries that `webhooks redeliver` flagged in the store and,
/// on a shared store, the jobs whose deliveries this worker should take up:
/// those announced by other workers (reloaded into this worker's lane when
/// it has one), and, at start and every `poll` or half lease, those whose
/// delivery lease is free or ran out (a dead worker's).
async fn run_sweep(store: Store, outbox: Outbox, cancel: CancellationToken) {
    let shared = store.is_shared();
    let wakeups = store.lane_wakeups();
    let config = &outbox.inner.config;
    let orphans_every = config.poll.min(config.lease / 2);
    let mut next_orphans = Instant::now();
    let mut tick = tokio::time::interval(SWEEP_EVERY.min(orphans_every));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_flags = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wakeups.notified(), if shared => {}
            _ = cancel.cancelled() => return,
        }
        if Instant::now() >= next_flags {
            next_flags = Instant::now() + SWEEP_EVERY;
            match store.take_requeued().await {
                Ok(rows) => {
                    for row in rows {
                        tracing::info!(delivery_id = %row.delivery_id, "redelivery requested");
                        outbox.enqueue(QueuedDelivery::from_row(row, true));
                    }
                }
                Err(e) => tracing::warn!(error = ?e, "failed to check for redelivery requests"),
            }
        }
        if !shared {
            continue;
        }
        let mut orphans = Instant::now() >= next_orphans;
        for job_id in wakeups.take() {
            if job_id.is_empty() {
                orphans = true;
            } else if outbox.has_lane(&job_id) {
                match store.pending_for_job(&job_id).await {
                    Ok(rows) => outbox.enqueue_all(
                        rows.into_iter()
                            .map(|r| QueuedDelivery::from_row(r, false))
                            .collect(),
                        false,
                        None,
                    ),
                    Err(e) => tracing::warn!(%job_id, error = ?e, "failed to reload deliveries"),
                }
            } else {
                adopt(&store, &outbox, &job_id).await;
            }
        }
        if orphans {
            next_orphans = Instant::now() + orphans_every;
            match store
                .orphaned_lanes(config.clock.now_ms(), ORPHANS_PER_SWEEP)
                .await
            {
                Ok(jobs) => {
                    for job_id in jobs {
                        if !outbox.has_lane(&job_id) {
                            adopt(&store, &outbox, &job_id).await;
                        }
                    }
                }
                Err(e) => tracing::warn!(error = ?e, "failed to look for undelivered jobs"),
            }
        }
    }
}

/// Most jobs taken up in one look for orphaned deliveries.
const ORPHANS_PER_SWEEP: i64 = 256;

/// Takes a job's delivery lease, if nobody holds it, and starts its lane
/// with its pending deliveries.
async fn adopt(store: &Store, outbox: &Outbox, job_id: &str) {
    let config = &outbox.inner.config;
    let id = format!(
        "{}#{}",
        config.owner,
        outbox.inner.epochs.fetch_add(1, Ordering::Relaxed)
    );
    let now = config.clock.now_ms();
    let until = now + config.lease.as_millis() as i64;
    match store.acquire_lane(job_id, &id, now, until).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(%job_id, error = ?e, "failed to take a delivery lease");
            return;
        }
    }
    let rows = match store.pending_for_job(job_id).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(%job_id, error = ?e, "failed to load deliveries to take up");
            Vec::new()
        }
    };
    if rows.is_empty() {
        let _ = store.release_lane(job_id, &id).await;
        return;
    }
    tracing::info!(%job_id, count = rows.len(), "taking up a job's pending deliveries");
    outbox.enqueue_all(
        rows.into_iter()
            .map(|r| QueuedDelivery::from_row(r, false))
            .collect(),
        false,
        Some(id),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALE: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn a_down_origin_is_probed_one_at_a_time_with_a_capped_backoff() {
        let origins = Origins::default();
        let o = "http://127.0.0.1:9";
        assert_eq!(origins.next_probe(o, STALE), None, "up until a failure");
        let recovered = origins.failed(o, false, None);
        let start = Instant::now();
        assert_eq!(origins.next_probe(o, STALE), Some(start + PROBE_FIRST));
        assert!(!origins.claim_probe(o, STALE), "not before its time");

        // Each failed probe doubles the wait, up to the cap.
        let mut waits = Vec::new();
        for _ in 0..6 {
            let at = origins.next_probe(o, STALE).unwrap();
            tokio::time::advance(at - Instant::now()).await;
            assert!(origins.claim_probe(o, STALE));
            assert!(!origins.claim_probe(o, STALE), "one probe at a time");
            origins.failed(o, true, None);
            waits.push(origins.next_probe(o, STALE).unwrap() - Instant::now());
        }
        let ms: Vec<u128> = waits.iter().map(|w| w.as_millis()).collect();
        assert_eq!(ms, [500, 1000, 2000, 3000, 3000, 3000]);

        // A Retry-After is honoured, beyond the cap too.
        origins.failed(o, true, Some(Duration::from_secs(20)));
        let at = origins.next_probe(o, STALE).unwrap();
        assert_eq!(at - Instant::now(), Duration::from_secs(20));

        // A probe that never reports stops holding the others off.
        tokio::time::advance(at - Instant::now()).await;
        assert!(origins.claim_probe(o, STALE));
        tokio::time::advance(STALE).await;
        assert!(origins.claim_probe(o, STALE));

        // The first answer releases every waiter and forgets the origin.
        assert!(!recovered.is_cancelled());
        origins.answered(o);
        assert!(recovered.is_cancelled());
        assert_eq!(origins.next_probe(o, STALE), None);
    }
}
