//! The job queue and runner.
//!
//! The queue is the `jobs` table. A dispatcher takes a slot whenever fewer
//! than `--max-concurrent-jobs` run, then *claims* the oldest queued job
//! nobody holds: the claim writes this worker's owner id and a lease expiry
//! (`--job-lease-ms`) into the row, atomically (on PostgreSQL with
//! `FOR UPDATE SKIP LOCKED`, so workers of a fleet never wait on each other
//! or claim the same job). While the job runs, a task renews the lease every
//! third of its length. The run itself is unchanged: `job.started`, the
//! engine with its reporter task, then exactly one terminal event.
//!
//! Every event's write is *fenced*: it commits only if the row still names
//! this worker as the lease holder and its `last_sequence` is the one the
//! reporter continues from. A worker that lost its lease (it stalled past
//! the expiry, or could not reach the database to renew) thus can write
//! nothing more for the job; it notices at its next renewal, or at the
//! next refused write, and stops the pipeline. So no job is ever run by two
//! workers at once as far as anything it reports goes.
//!
//! Wake-ups: a submission wakes its own worker's dispatcher directly; on
//! PostgreSQL the insert also sends a `NOTIFY`, which wakes the other
//! workers' dispatchers (see `store`); a slow poll (`--queue-poll-ms`) is
//! only the fallback for a lost notification.
//!
//! **A job whose worker died mid-pipeline is failed, not re-run.** Its
//! events so far were already delivered, and a re-run would have to report
//! progress going backwards or hide its first stages. Every worker's
//! *reaper* takes over jobs whose lease expired (on SQLite, at start, every
//! job the previous process held): a job still `queued` (claimed, never
//! started) is simply released to the queue; a job mid-pipeline gets one
//! `job.failed` whose sequence continues after the last one stored, with the
//! progress it had reached and the error "Job interrupted: the worker
//! restarted while the job was {stage}" (SQLite, at start) or "Job
//! interrupted: the worker running it stopped while the job was {stage}"
//! (a takeover). The submitter can submit the video again (with a new
//! `external_job_id`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::pipeline::{Engine, JobSpec};
use crate::reporter::{self, Draft, Reporter};
use crate::sender::Outbox;
use crate::store::{JobRow, Store};
use webhook_types::JobState;

/// The shortest interval between the reaper's looks for expired leases.
const MIN_REAP_EVERY: Duration = Duration::from_millis(50);

/// What running a job needs.
#[derive(Debug, Clone)]
pub struct RunnerContext {
    /// The store.
    pub store: Store,
    /// The sender.
    pub outbox: Outbox,
    /// The engine.
    pub engine: Arc<dyn Engine>,
    /// The progress throttle interval.
    pub progress_interval: Duration,
    /// Shutdown.
    pub cancel: CancellationToken,
    /// This process's lease owner id: unique per start, so a restarted
    /// worker never mistakes its previous life's leases for its own.
    pub owner: Arc<str>,
    /// The clock leases are judged by.
    pub clock: Clock,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// How often an idle dispatcher looks at the queue without a wake-up.
    pub poll: Duration,
}

impl RunnerContext {
    fn lease_ms(&self) -> i64 {
        self.lease.as_millis() as i64
    }

    fn expiry(&self) -> i64 {
        self.clock.now_ms() + self.lease_ms()
    }
}

/// The handle through which accepted jobs are announced.
#[derive(Debug, Clone)]
pub struct JobQueue {
    wake: Arc<Notify>,
}

impl JobQueue {
    /// The queue of `store`: announcing wakes whoever waits on the store's
    /// job wake-ups.
    pub fn new(store: &Store) -> JobQueue {
        JobQueue {
            wake: store.job_wakeups(),
        }
    }

    /// Announces a stored job: wakes the dispatcher, which claims the oldest
    /// queued job (not necessarily this one; the table is the queue).
    pub fn push(&self, job_id: String) {
        tracing::trace!(%job_id, "job queued; waking the dispatcher");
        self.wake.notify_one();
    }
}

/// Settles what the last run left behind, before serving. On SQLite the
/// store is this process's alone, so every job the previous process held is
/// settled now (its leases are stale by definition); on PostgreSQL other
/// workers may be running, so only expired leases are, by the reaper.
pub async fn recover(ctx: &RunnerContext, queue: &JobQueue) -> anyhow::Result<()> {
    if ctx.store.is_shared() {
        return Ok(());
    }
    let held = ctx
        .store
        .take_expired_jobs(&ctx.owner, i64::MAX, ctx.expiry())
        .await?;
    // Jobs interrupted before leases existed carry none.
    let mut stale = held;
    for job in ctx.store.interrupted_jobs().await? {
        if !stale.iter().any(|j| j.job_id == job.job_id) {
            stale.push(job);
        }
    }
    let queued = stale.iter().filter(|j| j.state == JobState::Queued).count();
    if queued > 0 {
        tracing::info!(
            count = queued,
            "re-queueing jobs accepted before the restart"
        );
    }
    for job in stale {
        settle(ctx, queue, job, "the worker restarted").await;
    }
    Ok(())
}

/// Settles one job whose lease this worker just took over: a queued job
/// goes back to the queue; a started one gets its one `job.failed`.
async fn settle(ctx: &RunnerContext, queue: &JobQueue, job: JobRow, why: &str) {
    if job.state == JobState::Queued {
        if let Err(e) = ctx.store.release_job(&job.job_id, &ctx.owner).await {
            tracing::warn!(job_id = %job.job_id, error = ?e, "failed to release a queued job; the reaper will try again");
            return;
        }
        queue.push(job.job_id);
        return;
    }
    let stage = job.state;
    tracing::warn!(job_id = %job.job_id, %stage, why, "failing a job its worker left unfinished");
    let mut reporter = Reporter::for_job(ctx.store.clone(), ctx.outbox.clone(), &job);
    reporter
        .finish(
            Draft::Failed(format!("Job interrupted: {why} while the job was {stage}")),
            &ctx.cancel,
        )
        .await;
}

/// Starts the dispatcher and the reaper. Jobs they start are tracked by
/// `tracker`.
pub fn start(ctx: RunnerContext, queue: JobQueue, max_concurrent: usize, tracker: TaskTracker) {
    tracker.clone().spawn(dispatch(
        ctx.clone(),
        queue.wake.clone(),
        Arc::new(Semaphore::new(max_concurrent)),
        tracker.clone(),
    ));
    tracker.spawn(reap(ctx, queue));
}

async fn dispatch(
    ctx: RunnerContext,
    wake: Arc<Notify>,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
) {
    let mut failures = 0u32;
    loop {
        // Take a slot first, then a job, so a job is never held claimed
        // while it waits for a slot.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = ctx.cancel.cancelled() => return,
        };
        let job = loop {
            let wait = match ctx.store.claim_job(&ctx.owner, ctx.expiry()).await {
                Ok(Some(job)) => {
                    failures = 0;
                    break job;
                }
                Ok(None) => ctx.poll,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = ?e, "failed to claim a job; trying again");
                    Duration::from_millis(100 << failures.min(6))
                }
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = ctx.cancel.cancelled() => return,
            }
        };
        tracker.spawn(run_job(ctx.clone(), job, permit));
    }
}

/// Takes over jobs whose lease expired, every half lease and whenever
/// another worker hands its jobs over.
async fn reap(ctx: RunnerContext, queue: JobQueue) {
    let mut tick = tokio::time::interval((ctx.lease / 2).max(MIN_REAP_EVERY));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let handed_over = ctx.store.reap_wakeups();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = handed_over.notified() => {}
            _ = ctx.cancel.cancelled() => return,
        }
        let now = ctx.clock.now_ms();
        match ctx
            .store
            .take_expired_jobs(&ctx.owner, now, now + ctx.lease_ms())
            .await
        {
            Ok(jobs) => {
                for job in jobs {
                    settle(&ctx, &queue, job, "the worker running it stopped").await;
                }
            }
            Err(e) => tracing::warn!(error = ?e, "failed to look for expired job leases"),
        }
    }
}

/// Renews the job's lease every third of its length until `stop`; cancels
/// `lost` when the lease is gone (another worker took the job over) or
/// could not be renewed for a whole lease.
async fn keep_lease(ctx: RunnerContext, job_id: String, lost: CancellationToken) {
    let mut renewed = ctx.clock.now_ms();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ctx.lease / 3) => {}
            _ = lost.cancelled() => return,
        }
        let now = ctx.clock.now_ms();
        match ctx
            .store
            .renew_job_lease(&job_id, &ctx.owner, now + ctx.lease_ms())
            .await
        {
            Ok(true) => renewed = now,
            Ok(false) => {
                tracing::warn!(%job_id, "job lease lost: another worker took the job over; stopping it here");
                lost.cancel();
                return;
            }
            Err(e) if now - renewed >= ctx.lease_ms() => {
                tracing::warn!(%job_id, error = ?e, "job lease not renewed for a whole lease; stopping the job here");
                lost.cancel();
                return;
            }
            Err(e) => tracing::warn!(%job_id, error = ?e, "failed to renew a job lease; retrying"),
        }
    }
}

/// Runs one claimed job from `job.started` to its terminal event.
async fn run_job(ctx: RunnerContext, job: JobRow, _slot: OwnedSemaphorePermit) {
    let job_id = job.job_id.clone();
    // Cancelled by shutdown, or by the loss of the lease.
    let stop = ctx.cancel.child_token();
    let lease = tokio::spawn(keep_lease(ctx.clone(), job_id.clone(), stop.clone()));
    metrics::gauge!("worker_jobs_running").increment(1.0);
    run_claimed(&ctx, job, &stop).await;
    lease.abort();
    metrics::gauge!("worker_jobs_running").decrement(1.0);
}

async fn run_claimed(ctx: &RunnerContext, job: JobRow, stop: &CancellationToken) {
    let job_id = job.job_id.clone();
    let mut reporter = Reporter::for_job(ctx.store.clone(), ctx.outbox.clone(), &job);
    if let Err(e) = reporter.emit(Draft::Started).await {
        tracing::error!(%job_id, error = ?e, "failed to start the job; releasing it to the queue");
        let _ = ctx.store.release_job(&job_id, &ctx.owner).await;
        return;
    }
    tracing::info!(%job_id, engine = ctx.engine.name(), "job started");
    let spec = JobSpec {
        job_id: job.job_id.clone(),
        owner_user_id: job.owner_user_id.clone(),
        request: job.request.clone(),
    };
    let (handle, driver) = reporter::channel(reporter, ctx.progress_interval);
    let driver = tokio::spawn(reporter::drive(driver, stop.clone()));
    let result = tokio::select! {
        r = ctx.engine.run(&spec, &handle) => Some(r),
        _ = stop.cancelled() => None,
    };
    match result {
        Some(Ok(output)) => {
            tracing::info!(%job_id, clips = output.total_clips, "job completed");
            metrics::counter!("worker_jobs_finished_total", "status" => "completed").increment(1);
            reporter::finish(handle, Ok(output));
        }
        Some(Err(e)) => {
            tracing::info!(%job_id, stage = %e.stage, error = %e.message, "job failed");
            metrics::counter!("worker_jobs_finished_total", "status" => "failed").increment(1);
            reporter::finish(handle, Err(e.message));
        }
        // Shutdown or a lost lease: the job is left mid-pipeline and
        // failed by whoever takes its lease over.
        None => drop(handle),
    }
    let _ = driver.await;
}
