//! The job queue and runner.
//!
//! Accepted jobs wait in a FIFO; a dispatcher takes one whenever fewer than
//! `--max-concurrent-jobs` run, and runs it: `job.started`, the engine with
//! its reporter task, then exactly one terminal event. The queue itself is
//! in memory; the store is its truth, so at start every job still `queued`
//! is queued again in acceptance order.
//!
//! A job that a crash (or a shutdown) interrupted mid-pipeline is **failed**
//! at the next start, not re-run: its events so far were already delivered,
//! and a re-run would have to report progress going backwards or hide its
//! first stages. It gets one `job.failed` whose sequence continues after the
//! last one stored, with the progress it had reached and the error
//! "Job interrupted: the worker restarted while the job was {stage}".
//! The submitter can submit the video again (with a new `external_job_id`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::pipeline::{Engine, JobSpec};
use crate::reporter::{self, Draft, Reporter};
use crate::sender::Outbox;
use crate::store::Store;
use webhook_types::JobState;

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
}

/// The handle through which accepted jobs are queued.
#[derive(Debug, Clone)]
pub struct JobQueue {
    tx: mpsc::UnboundedSender<String>,
}

impl JobQueue {
    /// Queues a stored job by id.
    pub fn push(&self, job_id: String) {
        // The dispatcher only stops at shutdown; the job stays queued in the
        // store and is picked up at the next start.
        let _ = self.tx.send(job_id);
    }
}

/// Fails jobs a crash interrupted mid-pipeline (see the module docs), then
/// queues the jobs still waiting. Run once at start, before serving.
pub async fn recover(ctx: &RunnerContext, queue: &JobQueue) -> anyhow::Result<()> {
    for job in ctx.store.interrupted_jobs().await? {
        let stage = job.state;
        tracing::warn!(job_id = %job.job_id, %stage, "failing a job the last run left unfinished");
        let mut reporter = Reporter::for_job(ctx.store.clone(), ctx.outbox.clone(), &job);
        reporter
            .finish(
                Draft::Failed(format!(
                    "Job interrupted: the worker restarted while the job was {stage}"
                )),
                &ctx.cancel,
            )
            .await;
    }
    let queued = ctx.store.queued_jobs().await?;
    if !queued.is_empty() {
        tracing::info!(
            count = queued.len(),
            "re-queueing jobs accepted before the restart"
        );
    }
    for job in queued {
        queue.push(job.job_id);
    }
    Ok(())
}

/// Starts the dispatcher. Jobs it starts are tracked by `tracker`.
pub fn start(ctx: RunnerContext, max_concurrent: usize, tracker: TaskTracker) -> JobQueue {
    let (tx, rx) = mpsc::unbounded_channel();
    tracker.clone().spawn(dispatch(
        ctx,
        rx,
        Arc::new(Semaphore::new(max_concurrent)),
        tracker,
    ));
    JobQueue { tx }
}

async fn dispatch(
    ctx: RunnerContext,
    mut rx: mpsc::UnboundedReceiver<String>,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
) {
    loop {
        // Take a slot first, then a job, so a job is never held off the
        // queue while it waits for a slot.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = ctx.cancel.cancelled() => return,
        };
        let job_id = tokio::select! {
            id = rx.recv() => match id { Some(id) => id, None => return },
            _ = ctx.cancel.cancelled() => return,
        };
        tracker.spawn(run_job(ctx.clone(), job_id, permit));
    }
}

/// Runs one job from `job.started` to its terminal event.
async fn run_job(ctx: RunnerContext, job_id: String, _slot: OwnedSemaphorePermit) {
    let job = match ctx.store.get_job(&job_id).await {
        Ok(Some(job)) if job.state == JobState::Queued => job,
        Ok(_) => return,
        Err(e) => {
            tracing::error!(%job_id, error = ?e, "failed to load a queued job; it stays queued");
            return;
        }
    };
    metrics::gauge!("worker_jobs_running").increment(1.0);
    let mut reporter = Reporter::for_job(ctx.store.clone(), ctx.outbox.clone(), &job);
    if let Err(e) = reporter.emit(Draft::Started).await {
        tracing::error!(%job_id, error = ?e, "failed to start the job; it stays queued");
        metrics::gauge!("worker_jobs_running").decrement(1.0);
        return;
    }
    tracing::info!(%job_id, engine = ctx.engine.name(), "job started");
    let spec = JobSpec {
        job_id: job.job_id.clone(),
        owner_user_id: job.owner_user_id.clone(),
        request: job.request.clone(),
    };
    let (handle, driver) = reporter::channel(reporter, ctx.progress_interval);
    let driver = tokio::spawn(reporter::drive(driver, ctx.cancel.clone()));
    let result = tokio::select! {
        r = ctx.engine.run(&spec, &handle) => Some(r),
        _ = ctx.cancel.cancelled() => None,
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
        // Shutdown: the job is left mid-pipeline and failed at next start.
        None => drop(handle),
    }
    let _ = driver.await;
    metrics::gauge!("worker_jobs_running").decrement(1.0);
}
