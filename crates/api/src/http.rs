//! The HTTP face of the service: the state every handler reaches and the
//! routes, all in one place.

use std::sync::Arc;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use signing::Verifier;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;
use url::Url;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Config;
use crate::hub::Hub;
use crate::{error, group_commit, openapi, receiver, rest, web, ws};

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

/// Every route of the service, each registered together with its OpenAPI
/// description (`routes!` reads the method and path from the handler's
/// `#[utoipa::path]`), so that a route cannot exist without its
/// description. Routes are added here and nowhere else; the tests walk the
/// document against the running service.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(web::index))
        .routes(routes!(rest::healthz))
        .routes(routes!(rest::readyz))
        .routes(routes!(rest::metrics))
        .routes(routes!(receiver::receive))
        .routes(routes!(rest::create_job, rest::list_jobs))
        .routes(routes!(rest::get_job))
        .routes(routes!(rest::ws_ticket))
        .routes(routes!(ws::handler))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(openapi::docs_redirect))
        .routes(routes!(openapi::docs_page))
        .routes(routes!(openapi::docs_asset))
}

/// The service: [`routes`], the error-shaped fallback and the request
/// trace.
pub fn router(state: AppState) -> Router {
    let (routes, _document) = routes().split_for_parts();
    routes
        .fallback(|| async { error::Error::NotFound("route") })
        // Spans carry the path only: query strings hold WebSocket tickets.
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::extract::Request| {
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
            }),
        )
        .with_state(state)
}
