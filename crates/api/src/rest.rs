//! The REST endpoints for browsers and other clients: jobs, WebSocket
//! tickets, health and metrics. Handlers are thin: authenticate, validate,
//! call the store, shape the answer.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use webhook_types::{ClippingJobRequest, ErrorBody, ParseError, Timestamp, Validate};

use crate::AppState;
use crate::auth::{self, AuthUser};
use crate::error::Error;
use crate::extract::ApiJson;
use crate::group_commit::Admission;
use crate::store::{self, JobJson};

/// Most jobs `GET /api/clipping-jobs` returns (the newest).
const LIST_LIMIT: i64 = 200;
/// How long a WebSocket ticket stays valid.
const TICKET_TTL_SECS: i64 = 60;

/// `POST /api/clipping-jobs` body (camelCase, as the original plan's TypeScript).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateJob {
    /// The source video, http or https.
    #[schema(examples("https://www.youtube.com/watch?v=dQw4w9WgXcQ"))]
    pub video_url: String,
    /// 1 to 20; default 5.
    #[schema(minimum = 1, maximum = 20, default = 5)]
    pub max_clips: Option<u32>,
    /// Preferred duration buckets.
    #[schema(examples(json!(["15-30", "30-60"])))]
    pub duration_ranges: Option<Vec<String>>,
    /// 5 to 600; default 15.
    #[schema(minimum = 5, maximum = 600, default = 15)]
    pub min_clip_duration_seconds: Option<u32>,
    /// 5 to 600, at least the minimum; default 90.
    #[schema(minimum = 5, maximum = 600, default = 90)]
    pub max_clip_duration_seconds: Option<u32>,
    /// Default `tiktok`.
    #[schema(
        default = "tiktok",
        examples("tiktok", "instagram_reels", "youtube_shorts", "youtube")
    )]
    pub target_platform: Option<String>,
    /// Default true.
    #[schema(default = true)]
    pub include_captions: Option<bool>,
}

/// `{"job": {...}}`: one job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobEnvelope {
    /// The job (with its `clips` on `GET /api/clipping-jobs/{id}`).
    pub job: JobJson,
}

/// `{"jobs": [...]}`: the caller's jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// At most 200, newest first, without clips.
    pub jobs: Vec<JobJson>,
}

/// A WebSocket ticket.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WsTicket {
    /// For `GET /ws?ticket=…`: single use.
    pub ticket: String,
    /// When it stops being valid (60 s after it was made).
    pub expires_at: Timestamp,
}

/// The answer of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    #[schema(examples("ok", "ready"))]
    pub status: &'static str,
}

impl CreateJob {
    /// The worker request this body asks for (without callback and ids,
    /// which the submitter adds).
    pub fn to_request(&self) -> ClippingJobRequest {
        let mut r = ClippingJobRequest::new(self.video_url.clone());
        if let Some(v) = self.max_clips {
            r.max_clips = v;
        }
        r.duration_ranges = self.duration_ranges.clone();
        if let Some(v) = self.min_clip_duration_seconds {
            r.min_clip_duration_seconds = v;
        }
        if let Some(v) = self.max_clip_duration_seconds {
            r.max_clip_duration_seconds = v;
        }
        if let Some(v) = &self.target_platform {
            r.target_platform = v.clone();
        }
        if let Some(v) = self.include_captions {
            r.include_captions = v;
        }
        r
    }
}

/// snake_case field of the worker request → the camelCase field the client
/// sent.
fn camel(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl Validate for CreateJob {
    fn validate(&self) -> Result<(), ParseError> {
        let scheme_ok = url::Url::parse(&self.video_url)
            .map(|u| matches!(u.scheme(), "http" | "https"))
            .unwrap_or(false);
        if !scheme_ok {
            return Err(ParseError::invalid(
                "videoUrl",
                "videoUrl must be an http or https URL",
            ));
        }
        let texts = std::iter::once(("videoUrl", &self.video_url))
            .chain(self.target_platform.iter().map(|t| ("targetPlatform", t)))
            .chain(
                self.duration_ranges
                    .iter()
                    .flatten()
                    .map(|t| ("durationRanges", t)),
            );
        for (field, text) in texts {
            if text.contains('\0') {
                return Err(ParseError::invalid(
                    field,
                    "must not contain NUL characters",
                ));
            }
        }
        self.to_request().validate().map_err(|mut e| {
            e.field = e.field.map(|f| camel(&f));
            e
        })
    }
}

/// `POST /api/clipping-jobs`: saves the job `pending`, answers at once, and
/// wakes the submitter, which sends it to the worker (retrying while the
/// worker is down).
#[utoipa::path(
    post,
    path = "/api/clipping-jobs",
    tag = "jobs",
    operation_id = "create_job",
    summary = "Creates a clipping job",
    description = "The job is saved as `pending` and answered at once; it is then submitted \
                   to the worker (with this API's `callback_url`), retried until the worker \
                   accepts it, so a worker that is down does not lose it. Follow it over \
                   `GET /ws` or by reading it.",
    request_body = CreateJob,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created.", body = JobEnvelope),
        (status = 400, description = "The body is not JSON.", body = ErrorBody),
        (status = 401, description = "Missing or unknown token.", body = ErrorBody),
        (status = 413, description = "The body is larger than 1 MiB.", body = ErrorBody),
        (status = 422, description = "A field is missing, of the wrong type or out of range; `field` names it (camelCase).", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry later.", body = ErrorBody),
    ),
)]
pub async fn create_job(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<CreateJob>,
) -> Result<impl IntoResponse, Error> {
    let request = serde_json::to_value(body.to_request())
        .map_err(|e| Error::Internal(anyhow::Error::new(e)))?;
    let mut tx = state.pool.begin().await?;
    let job = store::insert_job(&mut tx, Uuid::now_v7(), user, &body.video_url, &request).await?;
    tx.commit().await?;
    state.submitter_wake.notify_one();
    metrics::counter!("api_jobs_created_total").increment(1);
    Ok((
        StatusCode::CREATED,
        Json(JobEnvelope {
            job: job.to_json(None),
        }),
    ))
}

/// `GET /api/clipping-jobs`: the caller's jobs, newest first.
#[utoipa::path(
    get,
    path = "/api/clipping-jobs",
    tag = "jobs",
    operation_id = "list_jobs",
    summary = "Lists the caller's jobs",
    description = "The caller's own jobs, newest first (at most 200), without their clips.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The jobs.", body = JobList),
        (status = 401, description = "Missing or unknown token.", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry later.", body = ErrorBody),
    ),
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<JobList>, Error> {
    let jobs = store::list_jobs(&state.pool, user, LIST_LIMIT).await?;
    let jobs = jobs.iter().map(|j| j.to_json(None)).collect();
    Ok(Json(JobList { jobs }))
}

/// `GET /api/clipping-jobs/{id}`: one of the caller's jobs with its clips;
/// 404 for anyone else's (and for ids that are not ids).
#[utoipa::path(
    get,
    path = "/api/clipping-jobs/{id}",
    tag = "jobs",
    operation_id = "get_job",
    summary = "Reads one job, with its clips",
    params(("id" = Uuid, Path, description = "The job's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The job, with its `clips`.", body = JobEnvelope),
        (status = 401, description = "Missing or unknown token.", body = ErrorBody),
        (status = 404, description = "No such job for this caller (another user's job included).", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry later.", body = ErrorBody),
    ),
)]
pub async fn get_job(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<JobEnvelope>, Error> {
    let id = Uuid::parse_str(&id).map_err(|_| Error::NotFound("job"))?;
    let job = store::get_job(&state.pool, user, id)
        .await?
        .ok_or(Error::NotFound("job"))?;
    let clips = store::clips_for_job(&state.pool, id).await?;
    Ok(Json(JobEnvelope {
        job: job.to_json(Some(clips)),
    }))
}

/// `POST /api/ws-ticket`: a single-use, 60-second ticket for `/ws?ticket=`,
/// for browsers, which cannot set headers on a WebSocket.
#[utoipa::path(
    post,
    path = "/api/ws-ticket",
    tag = "live",
    operation_id = "ws_ticket",
    summary = "Makes a WebSocket ticket",
    description = "A single-use ticket, valid for 60 s, for `GET /ws?ticket=…`: browsers \
                   cannot set an `Authorization` header on a WebSocket.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The ticket.", body = WsTicket),
        (status = 401, description = "Missing or unknown token.", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry later.", body = ErrorBody),
    ),
)]
pub async fn ws_ticket(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<WsTicket>, Error> {
    let ticket = auth::new_secret(auth::TICKET_PREFIX);
    let expires_at = Utc::now() + chrono::Duration::seconds(TICKET_TTL_SECS);
    store::insert_ticket(&state.pool, user, &auth::hash_secret(&ticket), expires_at).await?;
    Ok(Json(WsTicket {
        ticket,
        expires_at: Timestamp(expires_at),
    }))
}

/// `GET /healthz`: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    summary = "Liveness",
    responses((status = 200, description = "Alive.", body = Health, example = json!({"status": "ok"}))),
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// How long `/readyz` waits for the database: it answers within a second
/// even when the database does not.
const READY_TIMEOUT: Duration = Duration::from_millis(500);

/// `GET /readyz`: the database answers. A database the receiver found
/// unreachable a moment ago is not tried again (503 at once); otherwise one
/// round trip, bounded by [`READY_TIMEOUT`], whose result the receiver
/// learns from too.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    summary = "Readiness: the database answers",
    description = "Answers within half a second even when the database does not.",
    responses(
        (status = 200, description = "Ready.", body = Health, example = json!({"status": "ready"})),
        (status = 503, description = "The database is unavailable.", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds: `5`."))),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, Error> {
    let health = state.committer.health();
    if health.admit() == Admission::Refuse {
        return Err(Error::DatabaseDown);
    }
    let r = match tokio::time::timeout(READY_TIMEOUT, store::ping(&state.pool)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::Unavailable(e)),
        // Busy, not gone: not ready, but the receiver keeps trying.
        Err(_) if health.answered_within(READY_TIMEOUT) => {
            return Err(Error::Unavailable(sqlx::Error::PoolTimedOut));
        }
        Err(_) => Err(Error::Unavailable(sqlx::Error::PoolTimedOut)),
    };
    health.observe(&r);
    r?;
    Ok(Json(Health { status: "ready" }))
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    summary = "Prometheus metrics",
    responses((status = 200, description = "The metrics, in the text exposition format.", content_type = "text/plain; version=0.0.4", body = String)),
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    metrics::gauge!("api_ws_connections_here").set(state.hub.connections() as f64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_reported_in_camel_case() {
        assert_eq!(camel("min_clip_duration_seconds"), "minClipDurationSeconds");
        assert_eq!(camel("video_url"), "videoUrl");
        let body: CreateJob =
            serde_json::from_str(r#"{"videoUrl":"https://x.test/v","maxClips":50}"#).unwrap();
        assert_eq!(
            body.validate().unwrap_err().field.as_deref(),
            Some("maxClips")
        );
    }
}
