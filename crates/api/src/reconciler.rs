//! The reconciler: the safety net for webhooks that never come.
//!
//! A job that is `submitted` or `processing` and has not been heard of for
//! `--stale-after-secs` is looked up at the worker (`GET
//! /ai-clipping/jobs/{worker_job_id}`), and what the worker says goes through
//! the same state machine as a webhook, notifications included. A job the
//! worker does not know (404) is failed with a clear error: no webhook will
//! ever come for it. Claiming stamps `last_heard_at`, so one instance
//! handles each quiet job per period.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use url::Url;
use uuid::Uuid;
use webhook_types::{JobState, JobView};

use crate::jobs::{self, Change, ChangeKind, WriteCtx};
use crate::store;

/// Jobs looked up per round.
const BATCH: i64 = 20;

/// The reconciliation loop and what it needs.
#[derive(Debug)]
pub struct Reconciler {
    /// The database.
    pub pool: PgPool,
    /// HTTP client for the worker.
    pub http: reqwest::Client,
    /// The worker's base URL.
    pub worker_url: Url,
    /// Quiet time after which a job is looked up.
    pub stale_after: Duration,
    /// How often to look for quiet jobs.
    pub interval: Duration,
    /// CDN host for clip URLs of a completion found this way.
    pub cdn_domain: Option<String>,
}

/// What the worker's view of a job means as a change; `None` while it is
/// still queued (nothing to apply).
pub fn change_of_view(view: &JobView) -> Option<Change<'_>> {
    let kind = match view.status {
        JobState::Queued => return None,
        JobState::Completed => ChangeKind::Completed,
        JobState::Failed => ChangeKind::Failed,
        // `Started` so that a job we still think is only submitted announces
        // its start; for a processing job the state machine treats it as
        // progress.
        _ => ChangeKind::Started,
    };
    Some(Change {
        kind,
        sequence: None,
        pipeline_status: view.status.pipeline_status(),
        progress: view.progress_percent.get(),
        current_step: &view.current_step,
        clips_completed: view.clips_completed,
        total_clips: view.total_clips,
        error: match kind {
            ChangeKind::Failed => Some(
                view.error
                    .as_deref()
                    .unwrap_or("the worker reports that the job failed"),
            ),
            _ => None,
        },
        output: view.output.as_ref(),
        worker_job_id: Some(&view.job_id),
    })
}

impl Reconciler {
    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
            let jobs = match store::claim_stale_jobs(&self.pool, self.stale_after, BATCH).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::warn!(error = %e, "reconciler could not read jobs");
                    continue;
                }
            };
            for (job, worker_job_id) in jobs {
                if shutdown.is_cancelled() {
                    return;
                }
                if let Err(e) = self.reconcile(job, &worker_job_id).await {
                    tracing::warn!(%job, worker_job_id, error = %e, "reconciliation failed; will retry");
                }
            }
        }
    }

    /// Brings one job up to date with the worker.
    #[tracing::instrument(name = "reconciliation", skip(self, job), fields(job_id = %job))]
    pub async fn reconcile(&self, job: Uuid, worker_job_id: &str) -> anyhow::Result<()> {
        let mut url = self.worker_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(["ai-clipping", "jobs", worker_job_id]);
        }
        let response = self.http.get(url).send().await?;
        let status = response.status();
        let ctx = WriteCtx {
            cdn_domain: self.cdn_domain.as_deref(),
        };
        if status == reqwest::StatusCode::NOT_FOUND {
            let error = format!(
                "the worker does not know this job (worker job id {worker_job_id}); it was lost at the worker"
            );
            let change = Change {
                kind: ChangeKind::Failed,
                sequence: None,
                pipeline_status: None,
                progress: 0.0,
                current_step: "Lost at the worker",
                clips_completed: None,
                total_clips: None,
                error: Some(&error),
                output: None,
                worker_job_id: None,
            };
            jobs::apply_by_id(&self.pool, job, &change, ctx).await?;
            metrics::counter!("api_reconciled_total", "outcome" => "lost").increment(1);
            tracing::warn!(%job, worker_job_id, "job unknown at the worker; failed");
            return Ok(());
        }
        if !status.is_success() {
            anyhow::bail!("the worker answered HTTP {status}");
        }
        let body = response.bytes().await?;
        let view: JobView = webhook_types::parse_json(&body)?;
        if let Some(change) = change_of_view(&view) {
            let decision = jobs::apply_by_id(&self.pool, job, &change, ctx).await?;
            tracing::info!(%job, worker_job_id, status = %view.status, ?decision, "job reconciled");
        }
        metrics::counter!("api_reconciled_total", "outcome" => "updated").increment(1);
        Ok(())
    }
}
