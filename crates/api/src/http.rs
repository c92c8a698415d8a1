//! The HTTP face of the service: the state every handler reaches and the
//! routes, all in one place.

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use signing::Verifier;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;
use url::Url;

use crate::config::Config;
use crate::hub::Hub;
use crate::{error, group_commit, receiver, rest, web, ws};

/// What every handler can reach. Cheap to clone: everything is shared.
#[derive(Clone)]
pub struct AppState {
    /// The database pool.
    pub pool: PgPool,
    /// The checked configuration.
    pub config: Arc<Config>,
    /// Checks webhook signatures; `None` only with
    /// `--insecure-accept-unsigned`.
    pub verifier: Option<Arc<Verifier>>,
    /// This instance's WebSocket registry.
    pub hub: Arc<Hub>,
    /// Applies webhook deliveries, batching concurrent ones into one commit.
    pub committer: group_commit::Committer,
    /// Wakes the submitter when a job is created here.
    pub submitter_wake: Arc<Notify>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Normalised origins allowed on `/ws`.
    pub allowed_origins: Arc<Vec<String>>,
    /// This API's public base URL, resolved.
    pub public_url: Url,
    /// Cancelled when the service stops; WebSockets close with 1001.
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .field("public_url", &self.public_url.as_str())
            .finish_non_exhaustive()
    }
}

/// The routes of the service.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(web::index))
        .route("/healthz", get(rest::healthz))
        .route("/readyz", get(rest::readyz))
        .route("/metrics", get(rest::metrics))
        .route("/webhooks/clipping", post(receiver::receive))
        .route(
            "/api/clipping-jobs",
            post(rest::create_job).get(rest::list_jobs),
        )
        .route("/api/clipping-jobs/{id}", get(rest::get_job))
        .route("/api/ws-ticket", post(rest::ws_ticket))
        .route("/ws", get(ws::handler))
        .fallback(|| async { error::Error::NotFound("route") })
        // Spans carry the path only: query strings hold WebSocket tickets.
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::extract::Request| {
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
            }),
        )
        .with_state(state)
}
