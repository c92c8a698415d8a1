//! The HTTP surface: routes, handlers and the extractors that keep every
//! answer, including refusals, in the contract's error shape.
//!
//! Handlers are thin: they parse, check and call into the store, the queue
//! and the sender.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::TraceLayer;
use url::Url;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use webhook_types::{ClippingJobRequest, ErrorBody, JobAccepted, JobView, Validate, parse_json};

use crate::config::ApiToken;
use crate::error::ApiError;
use crate::jobs::JobQueue;
use crate::pipeline::Engine;
use crate::policy::CallbackPolicy;
use crate::sender::{Outbox, QueuedDelivery};
use crate::storage::{MediaStore, media_router};
use crate::store::{AttemptRow, DeliveryFilter, DeliveryRow, Inserted, Store};

/// The largest request body accepted (1 MiB); larger is a 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler can reach; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// Where accepted jobs go.
    pub queue: JobQueue,
    /// Where redeliveries go.
    pub outbox: Outbox,
    /// The engine, which decides which video URLs it takes.
    pub engine: Arc<dyn Engine>,
    /// The callback policy, applied at submission.
    pub policy: Arc<CallbackPolicy>,
    /// When set, mutating and ledger routes need it as a bearer token.
    pub api_token: Option<ApiToken>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Where rendered media goes; its `/media` routes are merged below.
    pub media: MediaStore,
}

/// Every route of contract §1 but `/media/…`, each registered together
/// with its OpenAPI description (`routes!` reads the method and path from
/// the handler's `#[utoipa::path]`), so that a route cannot exist without
/// its description. Routes are added here and nowhere else; the tests walk
/// the document against the running service.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(submit_job))
        .routes(routes!(get_job))
        .routes(routes!(job_webhooks))
        .routes(routes!(redeliver))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(render_metrics))
        .routes(routes!(crate::openapi::openapi_json))
        .routes(routes!(crate::openapi::docs_redirect))
        .routes(routes!(crate::openapi::docs_page))
        .routes(routes!(crate::openapi::docs_asset))
}

/// The service: [`routes`], plus `/media/…` with local storage (described
/// in the document by [`crate::openapi`], since it exists only with that
/// storage), the error-shaped fallbacks and the request trace.
pub fn router(state: AppState) -> Router {
    let (routes, _document) = routes().split_for_parts();
    routes
        .merge(media_router(&state.media))
        .fallback(|| async { ApiError::NoRoute(StatusCode::NOT_FOUND) })
        .method_not_allowed_fallback(|| async { ApiError::NoRoute(StatusCode::METHOD_NOT_ALLOWED) })
        .layer(request_trace())
        .with_state(state)
}

/// The request trace: a span per request (see [`PathOnlySpan`]), and
/// tower-http's events when a request starts and ends.
pub fn request_trace() -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, PathOnlySpan> {
    TraceLayer::new_for_http().make_span_with(PathOnlySpan)
}

/// The span of each request names the method and the path, never the query:
/// a token a client misplaced in a query string must not reach the logs.
#[derive(Debug, Clone, Copy)]
pub struct PathOnlySpan;

impl<B> tower_http::trace::MakeSpan<B> for PathOnlySpan {
    fn make_span(&mut self, req: &axum::http::Request<B>) -> tracing::Span {
        tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
    }
}

/// A JSON body parsed with [`parse_json`]: 400 for malformed JSON, 422 with
/// the field for a bad value, 413 over [`MAX_BODY_BYTES`].
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        // Refuse early on a declared length; the read below enforces the
        // limit for bodies that do not declare one.
        if let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            && len > MAX_BODY_BYTES
        {
            return Err(ApiError::TooLarge(MAX_BODY_BYTES));
        }
        let bytes = read_body(req.into_body()).await?;
        Ok(JsonBody(parse_json(&bytes)?))
    }
}

async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => Ok(b),
        Err(e) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Err(ApiError::TooLarge(MAX_BODY_BYTES));
                }
                source = s.source();
            }
            Err(ApiError::Parse(webhook_types::ParseError::syntax(format!(
                "failed to read the body: {e}"
            ))))
        }
    }
}

/// Proof that the request carried the configured bearer token (or that none
/// is configured). A missing or wrong token is a 401, never a pass.
#[derive(Debug)]
pub struct Authorized;

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = &state.api_token else {
            return Ok(Authorized);
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or(ApiError::Unauthorized)?;
        if bool::from(given.trim().as_bytes().ct_eq(expected.expose().as_bytes())) {
            Ok(Authorized)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// A path id; a malformed one is simply not found.
#[derive(Debug)]
pub struct IdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| IdPath(id))
            .map_err(|_| ApiError::NotFound("resource"))
    }
}

/// Submits a clipping job.
///
/// The job is queued and processed in the order received; its progress goes
/// to `callback_url` as signed webhooks (see this document's `webhooks`).
/// Submitting an `external_job_id` again returns the existing job instead of
/// starting a second. `callback_url` must pass the callback policy: a
/// private, loopback or link-local address is refused unless allowed.
#[utoipa::path(
    post,
    path = "/ai-clipping/jobs",
    tag = "jobs",
    operation_id = "submit_job",
    request_body = ClippingJobRequest,
    security((), ("bearer" = [])),
    responses(
        (status = 202, description = "Accepted (or already known under this `external_job_id`).",
            body = JobAccepted,
            headers(("Location" = String, description = "The job's URL, `/ai-clipping/jobs/{job_id}`."))),
        (status = 400, description = "The body is not JSON.", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token (only when the worker runs with `--api-token`).", body = ErrorBody),
        (status = 413, description = "The body is larger than 1 MiB.", body = ErrorBody),
        (status = 422, description = "A field is missing, of the wrong type or out of range, or `callback_url` breaks the callback policy (code `callback_not_allowed`); `field` names it.", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry later.", body = ErrorBody),
    ),
)]
async fn submit_job(
    _auth: Authorized,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<ClippingJobRequest>,
) -> Result<Response, ApiError> {
    let video_url = Url::parse(&request.video_url).map_err(|e| ApiError::Invalid {
        field: "video_url",
        message: format!("not a URL ({e})"),
    })?;
    state
        .engine
        .check_video_url(&video_url)
        .map_err(|message| ApiError::Invalid {
            field: "video_url",
            message,
        })?;
    if let Some(callback) = &request.callback_url {
        let url = Url::parse(callback).map_err(|e| ApiError::Invalid {
            field: "callback_url",
            message: format!("not a URL ({e})"),
        })?;
        state.policy.check_url(&url).await?;
    }
    let job_id = request
        .job_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let (job, created) = match state.store.insert_job(&job_id, &request).await? {
        Inserted::Created(job) => (job, true),
        Inserted::Existing(job) => (job, false),
    };
    if created {
        metrics::counter!("worker_jobs_accepted_total").increment(1);
        tracing::info!(job_id = %job.job_id, external_job_id = ?job.external_job_id, "job accepted");
        state.queue.push(job.job_id.clone());
    } else {
        tracing::info!(job_id = %job.job_id, "repeated submission; answering with the existing job");
    }
    let location = format!("/ai-clipping/jobs/{}", job.job_id);
    let mut response = (
        StatusCode::ACCEPTED,
        Json(JobAccepted {
            job_id: job.job_id.clone(),
            status: job.state,
        }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// A job's state: the polling fallback to webhooks.
#[utoipa::path(
    get,
    path = "/ai-clipping/jobs/{job_id}",
    tag = "jobs",
    operation_id = "get_job",
    params(("job_id" = String, Path, description = "The worker's id of the job.")),
    responses(
        (status = 200, description = "The job.", body = JobView),
        (status = 404, description = "No such job.", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry later.", body = ErrorBody),
    ),
)]
async fn get_job(
    State(state): State<AppState>,
    IdPath(job_id): IdPath,
) -> Result<Response, ApiError> {
    let job = state
        .store
        .get_job(&job_id)
        .await?
        .ok_or(ApiError::NotFound("job"))?;
    Ok(Json(job.view()).into_response())
}

/// A delivery with its attempts, as the ledger endpoints show it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// The delivery's id, also its `webhook-id`.
    pub delivery_id: String,
    /// The job.
    pub job_id: String,
    /// The event's sequence.
    pub sequence: u64,
    /// The event.
    pub event: webhook_types::Event,
    /// pending, delivered, failed or superseded.
    pub status: crate::store::DeliveryStatus,
    /// The callback URL.
    pub url: String,
    /// Attempts so far.
    pub attempt_count: u32,
    /// When the next attempt is due, while pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_attempt_at: Option<webhook_types::Timestamp>,
    /// The last attempt's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub last_error: Option<String>,
    /// When the event was emitted.
    pub created_at: webhook_types::Timestamp,
    /// Last change.
    pub updated_at: webhook_types::Timestamp,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptRow>,
}

impl DeliveryView {
    /// Combines a row and its attempts.
    pub fn new(d: DeliveryRow, attempts: Vec<AttemptRow>) -> Self {
        use crate::clock::timestamp_from_ms;
        DeliveryView {
            next_attempt_at: (d.status == crate::store::DeliveryStatus::Pending)
                .then(|| timestamp_from_ms(d.next_attempt_at)),
            delivery_id: d.delivery_id,
            job_id: d.job_id,
            sequence: d.sequence,
            event: d.event,
            status: d.status,
            url: d.url,
            attempt_count: d.attempt_count,
            last_error: d.last_error,
            created_at: timestamp_from_ms(d.created_at),
            updated_at: timestamp_from_ms(d.updated_at),
            attempts,
        }
    }
}

/// A job's deliveries, as `GET /ai-clipping/jobs/{job_id}/webhooks` shows
/// them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobDeliveries {
    /// The job.
    pub job_id: String,
    /// Its deliveries, in `sequence` order, each with its attempts.
    pub deliveries: Vec<DeliveryView>,
}

/// The answer to a redelivery request.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RedeliveryQueued {
    /// The delivery, queued again.
    pub delivery_id: String,
    /// Always `pending`: it waits for its turn in its job's lane.
    pub status: crate::store::DeliveryStatus,
}

/// The answer of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    #[schema(examples("ok", "ready"))]
    pub status: String,
}

/// The delivery ledger of one job: every webhook of the job, its state and
/// each attempt (time, answer's status code or error, duration).
#[utoipa::path(
    get,
    path = "/ai-clipping/jobs/{job_id}/webhooks",
    tag = "deliveries",
    operation_id = "job_webhooks",
    params(("job_id" = String, Path, description = "The worker's id of the job.")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The job's deliveries.", body = JobDeliveries),
        (status = 401, description = "Missing or wrong bearer token (only with `--api-token`).", body = ErrorBody),
        (status = 404, description = "No such job.", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry later.", body = ErrorBody),
    ),
)]
async fn job_webhooks(
    _auth: Authorized,
    State(state): State<AppState>,
    IdPath(job_id): IdPath,
) -> Result<Response, ApiError> {
    state
        .store
        .get_job(&job_id)
        .await?
        .ok_or(ApiError::NotFound("job"))?;
    let rows = state
        .store
        .list_deliveries(&DeliveryFilter {
            job_id: Some(job_id.clone()),
            ..DeliveryFilter::default()
        })
        .await?;
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in rows {
        let attempts = state.store.attempts(&row.delivery_id).await?;
        deliveries.push(DeliveryView::new(row, attempts));
    }
    Ok(Json(JobDeliveries { job_id, deliveries }).into_response())
}

/// Queues a delivery again, whatever its state (delivered, failed or
/// superseded included), with a fresh retry schedule and the same
/// `webhook-id`, so a receiver that already has it sees a duplicate.
#[utoipa::path(
    post,
    path = "/ai-clipping/webhooks/{delivery_id}/redeliver",
    tag = "deliveries",
    operation_id = "redeliver",
    params(("delivery_id" = String, Path, description = "The delivery's id, which is also its `webhook-id` (`msg_…`).")),
    security((), ("bearer" = [])),
    responses(
        (status = 202, description = "Queued.", body = RedeliveryQueued),
        (status = 401, description = "Missing or wrong bearer token (only with `--api-token`).", body = ErrorBody),
        (status = 404, description = "No such delivery.", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry later.", body = ErrorBody),
    ),
)]
async fn redeliver(
    _auth: Authorized,
    State(state): State<AppState>,
    IdPath(delivery_id): IdPath,
) -> Result<Response, ApiError> {
    let row = state
        .store
        .requeue_delivery(&delivery_id, false)
        .await?
        .ok_or(ApiError::NotFound("delivery"))?;
    tracing::info!(%delivery_id, "redelivery requested");
    state.outbox.enqueue(QueuedDelivery::from_row(row, true));
    Ok((
        StatusCode::ACCEPTED,
        Json(RedeliveryQueued {
            delivery_id,
            status: crate::store::DeliveryStatus::Pending,
        }),
    )
        .into_response())
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    responses((status = 200, description = "Alive.", body = Health, example = json!({"status": "ok"}))),
)]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the store answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready.", body = Health, example = json!({"status": "ready"})),
        (status = 503, description = "The store is unavailable.", body = ErrorBody),
    ),
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.store.ping().await.map_err(ApiError::Unavailable)?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}

/// Prometheus metrics, in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    responses((status = 200, description = "The metrics.", content_type = "text/plain; version=0.0.4", body = String)),
)]
async fn render_metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tower::ServiceExt as _;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Collects everything the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    #[tokio::test]
    async fn request_logs_name_the_path_but_never_the_query() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish();
        // A current-thread runtime: the request runs on this thread, under
        // this subscriber.
        let _guard = tracing::subscriber::set_default(subscriber);
        let app: Router = Router::new()
            .route(
                "/ai-clipping/jobs/{job_id}",
                axum::routing::get(|| async { "ok" }),
            )
            .layer(request_trace());
        let request = Request::builder()
            .uri("/ai-clipping/jobs/job_1?access_token=s3cr3t-in-query")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);

        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("/ai-clipping/jobs/job_1"), "{logs}");
        assert!(logs.contains("finished processing request"), "{logs}");
        assert!(!logs.contains("s3cr3t"), "{logs}");
        assert!(!logs.contains("access_token"), "{logs}");
    }
}
