//! The reporter: the one place a job's events are made, and so the one place
//! their rules are kept.
//!
//! Rules it enforces, whatever the engine does:
//! - `job.started` (status downloading, progress 0, sequence 1) comes first;
//! - `sequence` goes up by one per event, continuing from the store after a
//!   restart;
//! - `progress_percent` never decreases (a lower value is raised to the
//!   highest already sent);
//! - exactly one terminal event, last: `job.completed` (status completed,
//!   progress 100, output, `clips_completed = total_clips`) or `job.failed`
//!   (status failed, the progress reached, error); nothing after it.
//!
//! Each event updates the job row and, when the job has a callback, inserts
//! its outbox row in the same transaction; only after the commit is the
//! delivery handed to the sender, so nothing is sent that the store would
//! forget.
//!
//! [`Reporter`] is the synchronous core (one event, one commit). [`drive`]
//! wraps it with the progress throttle for a running pipeline: the engine
//! reports through a [`ProgressHandle`] and never waits for the store.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use webhook_types::{
    Event, JobOutput, JobState, PipelineStatus, ProgressPercent, Timestamp, WebhookPayload,
};

use crate::clock::now_ms;
use crate::sender::{Outbox, QueuedDelivery};
use crate::store::{JobRow, JobUpdate, NewDelivery, RecordError, Store};
use crate::throttle::Throttle;

/// One progress report of a pipeline stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The stage.
    pub status: PipelineStatus,
    /// Overall progress, 0 to 100.
    pub progress: f64,
    /// Human-readable step (`"Rendering clip 3/5..."`).
    pub step: String,
    /// Clips rendered so far, when the stage knows.
    pub clips_completed: Option<u32>,
    /// Clips planned, when the stage knows.
    pub total_clips: Option<u32>,
}

impl StepReport {
    /// A report without clip counts.
    pub fn new(status: PipelineStatus, progress: f64, step: impl Into<String>) -> Self {
        Self {
            status,
            progress,
            step: step.into(),
            clips_completed: None,
            total_clips: None,
        }
    }

    /// Adds clip counts.
    pub fn with_clips(mut self, completed: u32, total: u32) -> Self {
        self.clips_completed = Some(completed);
        self.total_clips = Some(total);
        self
    }
}

/// An event to emit.
#[derive(Debug, Clone)]
pub enum Draft {
    /// `job.started`.
    Started,
    /// `job.progress`.
    Progress(StepReport),
    /// `job.completed` with the output.
    Completed(JobOutput),
    /// `job.failed` with the error text.
    Failed(String),
}

/// What an emitted event became.
#[derive(Debug, Clone)]
pub struct Emitted {
    /// Its sequence.
    pub sequence: u64,
    /// Its delivery id (`webhook-id`), when the job has a callback.
    pub delivery_id: Option<String>,
    /// When its row was committed (before the sender saw it).
    pub committed_at: Instant,
}

/// Why an event was not emitted.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The event would break the event rules (a bug in the caller).
    #[error("event out of order: {0}")]
    OutOfOrder(&'static str),
    /// Another worker took the job over (its lease, or its sequence, moved
    /// on); nothing was emitted, and nothing more may be.
    #[error("the job was taken over by another worker")]
    TakenOver,
    /// The store refused the write; nothing was emitted.
    #[error("failed to record the event")]
    Store(#[from] sqlx::Error),
}

impl From<RecordError> for ReportError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Fenced => ReportError::TakenOver,
            RecordError::Db(e) => ReportError::Store(e),
        }
    }
}

/// One job's event stream. Owned by whoever runs the job; never shared, so
/// the in-memory sequence is the truth (it starts from the stored one).
#[derive(Debug)]
pub struct Reporter {
    store: Store,
    outbox: Outbox,
    job_id: String,
    external_job_id: Option<String>,
    owner_user_id: Option<String>,
    callback_url: Option<String>,
    /// The lease holder this reporter writes as: every event's write is
    /// fenced on it (see [`crate::jobs`]).
    lease_owner: Option<String>,
    /// Sequence of the last emitted event; 0 before `job.started`.
    sequence: u64,
    /// Status of the last emitted event.
    status: Option<PipelineStatus>,
    /// Highest progress emitted.
    progress: f64,
    /// Last known clip counts, kept for the terminal event.
    clips_completed: Option<u32>,
    total_clips: Option<u32>,
    /// A terminal event was emitted: nothing may follow.
    finished: bool,
}

impl Reporter {
    /// A reporter continuing the job's stream where the store left it.
    pub fn for_job(store: Store, outbox: Outbox, job: &JobRow) -> Self {
        Reporter {
            store,
            outbox,
            job_id: job.job_id.clone(),
            external_job_id: job.external_job_id.clone(),
            owner_user_id: job.owner_user_id.clone(),
            callback_url: job.callback_url.clone(),
            lease_owner: job.lease_owner.clone(),
            sequence: job.last_sequence,
            status: job.state.pipeline_status(),
            progress: job.progress_percent,
            clips_completed: job.clips_completed,
            total_clips: job.total_clips,
            finished: job.state.is_terminal(),
        }
    }

    /// The job's id.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// Status of the last emitted event.
    pub fn last_status(&self) -> Option<PipelineStatus> {
        self.status
    }

    /// Raises the progress a `job.failed` will carry to what the pipeline
    /// reached, even if the throttle held that report back.
    pub fn note_reached(&mut self, progress: f64) {
        self.progress = self.progress.max(clamp_progress(progress));
    }

    /// Whether a terminal event was emitted.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Emits one event: checks the rules, commits the job update and the
    /// outbox row together, then hands the delivery to the sender.
    pub async fn emit(&mut self, draft: Draft) -> Result<Emitted, ReportError> {
        if self.finished {
            return Err(ReportError::OutOfOrder("the job already ended"));
        }
        let started = self.sequence > 0;
        let (event, status, progress, step, clips_completed, total_clips, error, output) =
            match draft {
                Draft::Started if started => {
                    return Err(ReportError::OutOfOrder("job.started was already sent"));
                }
                Draft::Started => (
                    Event::Started,
                    PipelineStatus::Downloading,
                    0.0,
                    "Starting job processing".to_owned(),
                    None,
                    None,
                    None,
                    None,
                ),
                _ if !started => {
                    return Err(ReportError::OutOfOrder("job.started must come first"));
                }
                Draft::Progress(r) => {
                    if r.status.is_terminal() {
                        return Err(ReportError::OutOfOrder(
                            "a progress event cannot carry a terminal status",
                        ));
                    }
                    (
                        Event::Progress,
                        r.status,
                        clamp_progress(r.progress).max(self.progress),
                        r.step,
                        r.clips_completed,
                        r.total_clips,
                        None,
                        None,
                    )
                }
                Draft::Completed(output) => {
                    let n = output.total_clips;
                    (
                        Event::Completed,
                        PipelineStatus::Completed,
                        100.0,
                        "Processing complete!".to_owned(),
                        Some(n),
                        Some(n),
                        None,
                        Some(output),
                    )
                }
                Draft::Failed(error) => (
                    Event::Failed,
                    PipelineStatus::Failed,
                    self.progress,
                    "Processing failed".to_owned(),
                    self.clips_completed,
                    self.total_clips,
                    Some(error),
                    None,
                ),
            };
        let sequence = self.sequence + 1;
        let payload = WebhookPayload {
            event,
            timestamp: Timestamp::now(),
            job_id: self.job_id.clone(),
            external_job_id: self.external_job_id.clone(),
            owner_user_id: self.owner_user_id.clone(),
            status,
            progress_percent: ProgressPercent::new(progress).unwrap_or(ProgressPercent::ZERO),
            current_step: step.clone(),
            clips_completed,
            total_clips,
            error: error.clone(),
            output: output.clone(),
            sequence: Some(sequence),
        };
        let body = Bytes::from(serde_json::to_vec(&payload).expect("a payload serialises"));
        let update = JobUpdate {
            job_id: self.job_id.clone(),
            state: JobState::from(status),
            progress_percent: progress,
            current_step: step,
            // A report without counts keeps the counts already known.
            clips_completed: clips_completed.or(self.clips_completed),
            total_clips: total_clips.or(self.total_clips),
            error,
            output,
            sequence,
            lease_owner: self.lease_owner.clone(),
        };
        let delivery = self.callback_url.as_ref().map(|url| NewDelivery {
            delivery_id: signing::new_message_id(),
            job_id: self.job_id.clone(),
            sequence,
            event,
            url: url.clone(),
            body,
            created_at: now_ms(),
        });
        let committed_at = self.store.record_event(&update, delivery.as_ref()).await?;

        self.sequence = sequence;
        self.status = Some(status);
        self.progress = progress;
        self.clips_completed = update.clips_completed;
        self.total_clips = update.total_clips;
        self.finished = event.is_terminal();
        metrics::counter!("worker_events_total", "event" => event.as_str()).increment(1);
        let delivery_id = delivery.as_ref().map(|d| d.delivery_id.clone());
        if let Some(d) = delivery {
            self.outbox.enqueue(QueuedDelivery::from_new(d));
        }
        Ok(Emitted {
            sequence,
            delivery_id,
            committed_at,
        })
    }

    /// Emits a terminal event, retrying while the store refuses, because a
    /// job must end with exactly one terminal event. Gives up only when the
    /// worker shuts down or loses the job's lease; the job is then failed by
    /// whoever takes the lease over.
    pub async fn finish(&mut self, draft: Draft, cancel: &CancellationToken) {
        let mut failures = 0;
        loop {
            match self.emit(draft.clone()).await {
                Ok(_) => return,
                Err(ReportError::OutOfOrder(why)) => {
                    tracing::error!(job_id = %self.job_id, why, "terminal event refused");
                    return;
                }
                Err(ReportError::TakenOver) => {
                    tracing::warn!(job_id = %self.job_id, "terminal event not written: another worker took the job over");
                    return;
                }
                Err(e) => {
                    tracing::error!(job_id = %self.job_id, error = ?e, "failed to record the terminal event; retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(TERMINAL_RETRY.delay(failures)) => {}
                _ = cancel.cancelled() => return,
            }
            failures = failures.saturating_add(1);
        }
    }
}

/// Retrying a terminal event the store refused: 100 ms doubling up to 5 s.
const TERMINAL_RETRY: service::backoff::Exponential =
    service::backoff::Exponential::new(Duration::from_millis(100), Duration::from_secs(5));

fn clamp_progress(p: f64) -> f64 {
    if p.is_finite() {
        p.clamp(0.0, 100.0)
    } else {
        0.0
    }
}

/// A message from the pipeline to its job's reporter task.
#[derive(Debug)]
enum Msg {
    Progress(StepReport),
    Finish(Result<JobOutput, String>),
}

/// What an engine holds to report progress: sending never waits, so a slow
/// store never slows the pipeline down.
#[derive(Debug, Clone)]
pub struct ProgressHandle {
    tx: mpsc::UnboundedSender<Msg>,
}

impl ProgressHandle {
    /// Reports a stage's progress; the reporter decides whether and when it
    /// becomes a `job.progress` event (throttle).
    pub fn report(&self, report: StepReport) {
        // The receiver only goes away on shutdown, when reports no longer
        // matter.
        let _ = self.tx.send(Msg::Progress(report));
    }

    fn finish(&self, result: Result<JobOutput, String>) {
        let _ = self.tx.send(Msg::Finish(result));
    }

    /// A handle whose reports go to the returned [`Reports`] instead of a
    /// job's reporter: for running an engine on its own (benchmarks).
    pub fn standalone() -> (ProgressHandle, Reports) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ProgressHandle { tx }, Reports { rx })
    }
}

/// What a [`ProgressHandle::standalone`] handle was told.
#[derive(Debug)]
pub struct Reports {
    rx: mpsc::UnboundedReceiver<Msg>,
}

impl Reports {
    /// The next progress report, or `None` once every handle is gone.
    pub async fn next(&mut self) -> Option<StepReport> {
        loop {
            match self.rx.recv().await? {
                Msg::Progress(report) => return Some(report),
                Msg::Finish(_) => continue,
            }
        }
    }
}

/// A handle and the task state behind it, before the task is spawned.
#[derive(Debug)]
pub struct Driver {
    rx: mpsc::UnboundedReceiver<Msg>,
    reporter: Reporter,
    interval: Duration,
}

/// Creates the handle an engine reports through and the [`Driver`] to run.
pub fn channel(reporter: Reporter, interval: Duration) -> (ProgressHandle, Driver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        ProgressHandle { tx },
        Driver {
            rx,
            reporter,
            interval,
        },
    )
}

/// Ends the job through `handle`: the driver emits the terminal event after
/// everything reported before, dropping a held progress event.
pub fn finish(handle: ProgressHandle, result: Result<JobOutput, String>) {
    handle.finish(result);
}

/// Runs the reporter task: applies the throttle to progress reports, sends
/// held ones when their interval ends, and emits the terminal event.
/// Returns when the terminal event is emitted, or when every handle is gone
/// without one (the pipeline was cancelled by shutdown).
pub async fn drive(driver: Driver, cancel: CancellationToken) -> Reporter {
    let Driver {
        mut rx,
        mut reporter,
        interval,
    } = driver;
    let mut throttle = Throttle::new(interval);
    // The highest progress reported, sent or held: what `job.failed` carries.
    let mut reached = 0.0_f64;
    loop {
        let deadline = throttle.deadline();
        tokio::select! {
            biased;
            msg = rx.recv() => match msg {
                Some(Msg::Progress(report)) => {
                    reached = reached.max(report.progress);
                    let changed = reporter.last_status() != Some(report.status);
                    if let Some(report) = throttle.offer(Instant::now(), report, changed) {
                        emit_progress(&mut reporter, report).await;
                    }
                }
                Some(Msg::Finish(result)) => {
                    throttle.discard();
                    let draft = match result {
                        Ok(output) => Draft::Completed(output),
                        Err(error) => {
                            reporter.note_reached(reached);
                            Draft::Failed(error)
                        }
                    };
                    reporter.finish(draft, &cancel).await;
                    return reporter;
                }
                None => return reporter,
            },
            _ = sleep_until_opt(deadline) => {
                if let Some(report) = throttle.flush_due(Instant::now()) {
                    emit_progress(&mut reporter, report).await;
                }
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn emit_progress(reporter: &mut Reporter, report: StepReport) {
    // A lost progress event is tolerable (the next one carries the news);
    // the terminal event is retried in `finish`.
    if let Err(e) = reporter.emit(Draft::Progress(report)).await {
        tracing::warn!(job_id = %reporter.job_id(), error = ?e, "progress event not recorded");
    }
}
