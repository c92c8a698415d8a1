//! `POST /webhooks/clipping`: the worker's signed progress reports.
//!
//! Order matters and is the point of this module: the body is read raw (413
//! over 1 MiB), the signature is verified over those exact bytes before
//! anything is parsed (401), then the JSON is parsed into types that cannot
//! hold an invalid state (400/422), and only then does the database see it,
//! in one transaction (which [`crate::group_commit`] may share between
//! concurrent deliveries, applied together by [`crate::batch`] with the
//! same rules and the same results):
//!
//! 1. lock the job (by our id, else the worker's) — none: unknown job;
//! 2. decide the transition (pure, [`crate::jobs::decide`]);
//! 3. record the `webhook-id` with that outcome — already there: duplicate,
//!    nothing is written, nothing changes twice;
//! 4. write the job, clips and the user's event (with its NOTIFY); commit.
//!
//! Locking the job first serialises deliveries of one job, so two copies of
//! one delivery racing each other still apply once: the second waits for the
//! first's commit, then finds its `webhook-id` taken. A database that cannot
//! be reached answers 503, so that the worker retries later.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use webhook_types::{Event, ParseError, WebhookPayload};

use crate::AppState;
use crate::error::Error;
use crate::extract::{MAX_BODY, read_limited};
use crate::jobs::{self, Change, ChangeKind, Decision, WriteCtx};
use crate::store::{self, ReceiptOutcome};

/// Longest `webhook-id` we store; Standard Webhooks ids are a few dozen
/// characters, and an index entry must stay small.
const MAX_WEBHOOK_ID: usize = 256;

/// What became of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The job moved (or stayed, if nothing new), and the event was recorded.
    Applied,
    /// Recorded, but older than what was applied already.
    Stale,
    /// Recorded; the job is completed or failed and does not change again.
    Terminal,
    /// This `webhook-id` was seen before; nothing changed.
    Duplicate,
    /// No job matches; recorded and ignored.
    UnknownJob,
}

impl Outcome {
    /// The label stored in `webhook_receipts.outcome` and used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Stale => "stale",
            Outcome::Terminal => "terminal",
            Outcome::Duplicate => "duplicate",
            Outcome::UnknownJob => "unknown_job",
        }
    }

    /// The contract's answer body.
    pub fn body(self) -> Value {
        match self {
            Outcome::Duplicate => json!({"received": true, "duplicate": true}),
            Outcome::UnknownJob => json!({"received": true, "ignored": "unknown job"}),
            _ => json!({"received": true}),
        }
    }
}

/// The handler.
#[utoipa::path(
    post,
    path = "/webhooks/clipping",
    tag = "webhooks",
    operation_id = "receive_webhook",
    summary = "Receives the worker's webhooks",
    description = crate::openapi::RECEIVER_DESCRIPTION,
    params(crate::openapi::WebhookHeaders),
    request_body = webhook_types::WebhookPayload,
    responses(crate::openapi::ReceiverAnswers),
)]
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, Error> {
    let bytes = read_limited(&headers, body, MAX_BODY).await?;
    if let Some(verifier) = &state.verifier {
        let now = chrono::Utc::now().timestamp();
        verifier
            .verify_with(
                |name| headers.get(name).and_then(|v| v.to_str().ok()),
                &bytes,
                now,
            )
            .inspect_err(|e| {
                metrics::counter!("api_webhooks_total", "outcome" => "bad_signature").increment(1);
                tracing::warn!(error = %e, "webhook refused: signature");
            })?;
    }
    let payload: WebhookPayload = webhook_types::parse_json(&bytes).inspect_err(|e| {
        metrics::counter!("api_webhooks_total", "outcome" => "invalid").increment(1);
        tracing::warn!(error = %e, "webhook refused: body");
    })?;
    check_storable(&payload)?;
    let webhook_id = match headers
        .get(signing::HEADER_ID)
        .map(|v| v.to_str().unwrap_or_default())
    {
        Some(id) if id.is_empty() || id.len() > MAX_WEBHOOK_ID => {
            return Err(Error::BadRequest {
                code: "invalid_webhook_id",
                message: format!(
                    "webhook-id must be 1 to {MAX_WEBHOOK_ID} visible ASCII characters"
                ),
            });
        }
        Some(id) => Some(id.to_owned()),
        // Only reachable with --insecure-accept-unsigned: a signed delivery
        // always has an id. Without one there is nothing to dedupe by.
        None => None,
    };

    let (event, job_id, sequence) = (payload.event, payload.job_id.clone(), payload.sequence);
    let outcome = state.committer.apply(webhook_id, payload).await?;
    metrics::counter!("api_webhooks_total", "outcome" => outcome.as_str()).increment(1);
    tracing::debug!(
        %event,
        %job_id,
        ?sequence,
        outcome = outcome.as_str(),
        "webhook received"
    );
    Ok(Json(outcome.body()))
}

/// Refuses (422) values that parse but do not fit the columns they go to, so
/// that a hostile or buggy sender meets a clear answer instead of a 500.
pub fn check_storable(p: &WebhookPayload) -> Result<(), ParseError> {
    let too_big = |field: &str| ParseError::invalid(field, "the value is too large");
    if p.sequence.is_some_and(|s| i64::try_from(s).is_err()) {
        return Err(too_big("sequence"));
    }
    for (field, v) in [
        ("clips_completed", p.clips_completed),
        ("total_clips", p.total_clips),
    ] {
        if v.is_some_and(|v| i32::try_from(v).is_err()) {
            return Err(too_big(field));
        }
    }
    if let Some(output) = &p.output {
        if i32::try_from(output.total_clips).is_err() {
            return Err(too_big("output.total_clips"));
        }
        for (i, clip) in output.clips.iter().enumerate() {
            if i32::try_from(clip.clip_index).is_err() {
                return Err(too_big(&format!("output.clips[{i}].clip_index")));
            }
            for (name, v) in [
                ("duration_ms", clip.duration_ms),
                ("start_time_ms", clip.start_time_ms),
                ("end_time_ms", clip.end_time_ms),
            ] {
                if i64::try_from(v).is_err() {
                    return Err(too_big(&format!("output.clips[{i}].{name}")));
                }
            }
        }
    }
    Ok(())
}

/// The change a webhook describes.
pub fn change_of(p: &WebhookPayload) -> Change<'_> {
    Change {
        kind: match p.event {
            Event::Started => ChangeKind::Started,
            Event::Progress => ChangeKind::Progress,
            Event::Completed => ChangeKind::Completed,
            Event::Failed => ChangeKind::Failed,
        },
        sequence: p.sequence,
        pipeline_status: Some(p.status),
        progress: p.progress_percent.get(),
        current_step: &p.current_step,
        clips_completed: p.clips_completed,
        total_clips: p.total_clips,
        error: p.error.as_deref(),
        output: p.output.as_ref(),
        worker_job_id: Some(&p.job_id),
    }
}

/// Applies one delivery in one transaction (see the module header).
pub async fn process(
    pool: &PgPool,
    webhook_id: Option<&str>,
    payload: &WebhookPayload,
    ctx: WriteCtx<'_>,
) -> Result<Outcome, Error> {
    let mut tx = pool.begin().await?;
    let outcome = process_in(&mut tx, webhook_id, payload, ctx).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Applies one delivery inside the caller's transaction: the reference for
/// one delivery, which a batch ([`crate::batch`]) must agree with.
///
/// It writes nothing for a duplicate, so the caller may commit whatever the
/// outcome.
pub async fn process_in(
    conn: &mut PgConnection,
    webhook_id: Option<&str>,
    payload: &WebhookPayload,
    ctx: WriteCtx<'_>,
) -> Result<Outcome, Error> {
    let sequence = payload
        .sequence
        .map(|s| i64::try_from(s).unwrap_or(i64::MAX));
    let event = payload.event.as_str();
    let webhook_id = webhook_id.map(jobs::pg_text);

    let job =
        jobs::lock_for_change(conn, payload.external_job_id.as_deref(), &payload.job_id).await?;
    let Some(job) = job else {
        if let Some(id) = &webhook_id
            && !store::insert_receipt(conn, id, None, event, sequence, ReceiptOutcome::UnknownJob)
                .await?
        {
            return Ok(Outcome::Duplicate);
        }
        return Ok(Outcome::UnknownJob);
    };

    let change = change_of(payload);
    let decision = jobs::decide(&job, &change);
    let (outcome, recorded) = match &decision {
        Decision::Apply(_) => (Outcome::Applied, ReceiptOutcome::Applied),
        Decision::Stale => (Outcome::Stale, ReceiptOutcome::Stale),
        Decision::Terminal => (Outcome::Terminal, ReceiptOutcome::Terminal),
    };
    // Recorded before anything is written: a taken id means a duplicate,
    // and nothing below runs.
    if let Some(id) = &webhook_id
        && !store::insert_receipt(conn, id, Some(job.id), event, sequence, recorded).await?
    {
        return Ok(Outcome::Duplicate);
    }
    match &decision {
        Decision::Apply(plan) => {
            jobs::write(conn, &job, &change, plan, ctx).await?;
        }
        Decision::Stale => store::touch_job(conn, job.id).await?,
        Decision::Terminal => {}
    }
    Ok(outcome)
}
