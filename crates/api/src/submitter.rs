//! The submitter: sends saved jobs to the worker, retrying until it accepts.
//!
//! `POST /api/clipping-jobs` only saves the job and a `job_submissions` row,
//! then wakes this loop, so a worker that is down never loses a job and never
//! slows the browser. The table is the queue: each instance claims one due
//! row at a time with `FOR UPDATE SKIP LOCKED` and a lease. Outcomes:
//!
//! - 2xx: the worker's job id is recorded and the job marked `submitted`
//!   (unless a webhook already moved it further — the worker can start
//!   before its answer reaches us);
//! - 4xx other than 408 and 429: the worker will never accept this request;
//!   the job fails with the worker's reason, and the user is told;
//! - anything else (5xx, 408, 429, timeout, connection refused): retried
//!   with exponential backoff and jitter, for as long as it takes.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use url::Url;
use uuid::Uuid;
use webhook_types::{ClippingJobRequest, ErrorBody, JobAccepted};

use crate::config::Tuning;
use crate::jobs::{self, Change, ChangeKind, WriteCtx};
use crate::store::{self, ClaimedSubmission, SubmissionState};

/// How long a claimed submission is reserved for the claiming instance.
const LEASE: Duration = Duration::from_secs(60);

/// The submission loop and what it needs.
#[derive(Debug)]
pub struct Submitter {
    /// The database (the queue lives there).
    pub pool: PgPool,
    /// HTTP client for the worker; its timeout bounds each attempt.
    pub http: reqwest::Client,
    /// The worker's base URL.
    pub worker_url: Url,
    /// `{public_url}/webhooks/clipping`.
    pub callback_url: String,
    /// Notified by `POST /api/clipping-jobs` on this instance.
    pub wake: Arc<Notify>,
    /// Poll period and backoff.
    pub tuning: Tuning,
}

/// What one attempt came to.
#[derive(Debug)]
enum Attempt {
    Accepted(String),
    Refused(String),
    Retry(String),
}

/// The delay before attempt `attempts + 1`: exponential from `base`, capped,
/// with "equal jitter" (half fixed, half random) so that many jobs failing
/// together do not retry together.
pub fn backoff(base: Duration, max: Duration, attempts: i32) -> Duration {
    let failures = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0);
    let full = service::backoff::Exponential::new(base, max).delay(failures);
    let half = full / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

impl Submitter {
    /// Runs until `shutdown`; an attempt in flight finishes first (bounded by
    /// the HTTP timeout).
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            loop {
                if shutdown.is_cancelled() {
                    return;
                }
                match store::claim_submission(&self.pool, LEASE).await {
                    Ok(Some(claimed)) => self.submit(claimed).await,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "submitter could not read its queue");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.tuning.submit_poll) => {}
            }
        }
    }

    #[tracing::instrument(name = "submission", skip_all, fields(job_id = %claimed.job_id, attempt = claimed.attempts))]
    async fn submit(&self, claimed: ClaimedSubmission) {
        let job = claimed.job_id;
        let attempt = self.attempt(&claimed).await;
        let result = match &attempt {
            Attempt::Accepted(worker_job_id) => {
                tracing::info!(%job, worker_job_id, "job submitted to the worker");
                metrics::counter!("api_submissions_total", "outcome" => "accepted").increment(1);
                self.accepted(job, worker_job_id).await
            }
            Attempt::Refused(reason) => {
                tracing::warn!(%job, reason, "the worker refused the job");
                metrics::counter!("api_submissions_total", "outcome" => "refused").increment(1);
                self.refused(job, reason).await
            }
            Attempt::Retry(reason) => {
                let delay = backoff(
                    self.tuning.submit_backoff_base,
                    self.tuning.submit_backoff_max,
                    claimed.attempts,
                );
                tracing::warn!(%job, attempts = claimed.attempts, ?delay, reason, "submission failed; will retry");
                metrics::counter!("api_submissions_total", "outcome" => "retry").increment(1);
                store::retry_submission(&self.pool, job, delay, reason).await
            }
        };
        if let Err(e) = result {
            // The lease expires and another attempt follows; the worker
            // dedupes a repeated external_job_id.
            tracing::warn!(%job, error = %e, "could not record a submission outcome");
        }
    }

    async fn attempt(&self, claimed: &ClaimedSubmission) -> Attempt {
        let mut request: ClippingJobRequest = match serde_json::from_value(claimed.request.clone())
        {
            Ok(r) => r,
            Err(e) => return Attempt::Refused(format!("the stored request is unreadable: {e}")),
        };
        request.callback_url = Some(self.callback_url.clone());
        request.external_job_id = Some(claimed.job_id.to_string());
        request.owner_user_id = Some(claimed.user_id.to_string());
        let mut url = self.worker_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["ai-clipping", "jobs"]);
        }
        let response = match self.http.post(url).json(&request).send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(format!("the worker is unreachable: {e}")),
        };
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            return match webhook_types::parse_json::<JobAccepted>(&body) {
                Ok(accepted) => Attempt::Accepted(accepted.job_id),
                Err(e) => Attempt::Retry(format!("the worker's answer is unreadable: {e}")),
            };
        }
        let reason = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| match b.error.field {
                Some(f) => format!("{}: {}", f, b.error.message),
                None => b.error.message,
            })
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
        if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
            Attempt::Refused(format!(
                "the worker refused the job (HTTP {status}): {reason}"
            ))
        } else {
            Attempt::Retry(format!("the worker answered HTTP {status}: {reason}"))
        }
    }

    async fn accepted(&self, job: Uuid, worker_job_id: &str) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        store::mark_submitted(&mut tx, job, &jobs::pg_text(worker_job_id)).await?;
        store::finish_submission(&mut tx, job, SubmissionState::Done, None).await?;
        tx.commit().await
    }

    async fn refused(&self, job: Uuid, reason: &str) -> Result<(), sqlx::Error> {
        let change = Change {
            kind: ChangeKind::Failed,
            sequence: None,
            pipeline_status: None,
            progress: 0.0,
            current_step: "Submission failed",
            clips_completed: None,
            total_clips: None,
            error: Some(reason),
            output: None,
            worker_job_id: None,
        };
        // One commit: the job fails exactly when its submission closes.
        let mut tx = self.pool.begin().await?;
        jobs::apply_in(&mut tx, job, &change, WriteCtx { cdn_domain: None }).await?;
        store::finish_submission(&mut tx, job, SubmissionState::Failed, Some(reason)).await?;
        tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for attempts in 1..30 {
            let d = backoff(base, max, attempts);
            let full = base * 2u32.pow((attempts as u32 - 1).min(20));
            let full = full.min(max);
            assert!(d >= full / 2 && d <= full, "{attempts}: {d:?}");
        }
    }
}
