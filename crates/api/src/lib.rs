//! `viewcreator-api`: receives the clipping worker's signed webhooks, keeps
//! the truth about jobs in PostgreSQL, and pushes each change to the
//! WebSocket of the user who owns the job, on every API instance.
//!
//! This file builds the application: [`Application::build`] connects,
//! migrates and binds; [`Application::run_until_stopped`] serves HTTP and
//! runs the background loops (hub, submitter, reconciler) until the caller's
//! shutdown token fires. Tests start the very same thing on port 0.
//!
//! Module map: [`config`] (flags), [`error`] (the one error type),
//! [`auth`] (tokens, tickets, the `AuthUser` extractor), [`receiver`]
//! (webhooks) and [`group_commit`] (batching them), [`jobs`] (the state machine), [`store`] (all SQL),
//! [`submitter`] and [`reconciler`] (talking to the worker), [`hub`] and
//! [`ws`] (live push), [`rest`] and [`web`] (the browser's API and page),
//! [`cli`] (the sub-commands).

pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod extract;
pub mod group_commit;
pub mod hub;
pub mod jobs;
pub mod receiver;
pub mod reconciler;
pub mod rest;
pub mod store;
pub mod submitter;
pub mod web;
pub mod ws;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::{get, post};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use signing::Verifier;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;
use url::Url;

use crate::config::Config;
use crate::hub::Hub;

/// The API's migrations, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/api");

/// How long background loops get to finish after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

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

/// The process-wide Prometheus recorder: installed once, shared by every
/// application the process builds (tests build many).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .unwrap_or_else(|e| {
                    // Someone else installed a recorder (an embedding program):
                    // render our own, empty, rather than fail.
                    tracing::warn!(error = %e, "metrics recorder already installed");
                    PrometheusBuilder::new().build_recorder().handle()
                })
        })
        .clone()
}

/// Connects a pool as the service uses it.
pub async fn connect(config: &Config) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(config.tuning.db_max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(config.database_url.expose())
        .await
        .context("failed to connect to PostgreSQL")
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

/// A built, bound, migrated service, ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
    http: reqwest::Client,
}

impl Application {
    /// Connects to the database, applies migrations and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = connect(&config).await?;
        MIGRATOR
            .run(&pool)
            .await
            .context("failed to apply migrations")?;
        Self::build_with_pool(config, pool).await
    }

    /// As [`Application::build`], with a pool the caller made and migrated
    /// (tests: one fresh database each).
    pub async fn build_with_pool(config: Config, pool: PgPool) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("failed to bind {}", config.listen))?;
        let addr = listener
            .local_addr()
            .context("failed to read the bound address")?;
        let public_url = match &config.public_url {
            Some(url) => url.clone(),
            None => {
                Url::parse(&format!("http://{addr}")).context("failed to build the public URL")?
            }
        };
        let mut allowed_origins = config.allowed_origins.clone();
        if allowed_origins.is_empty() {
            allowed_origins.extend(config::normalise_origin(public_url.as_str()));
        }
        let verifier = match &config.webhook_secrets {
            Some(set) => Some(Arc::new(Verifier::new(set.clone()))),
            None => {
                tracing::warn!(
                    "!!! --insecure-accept-unsigned: webhook signatures are NOT checked; \
                     anyone who can reach this API can forge job updates !!!"
                );
                None
            }
        };
        let http = reqwest::Client::builder()
            .timeout(config.tuning.worker_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("failed to build the HTTP client")?;
        let hub = Hub::new(config.tuning.ws_queue, config.tuning.ws_max_per_user);
        let committer = group_commit::Committer::start(
            pool.clone(),
            config.media_cdn_domain.clone(),
            config.tuning.commit_lanes,
            config.tuning.commit_batch,
        );
        let state = AppState {
            committer,
            pool,
            verifier,
            hub,
            submitter_wake: Arc::new(Notify::new()),
            metrics: metrics_handle(),
            allowed_origins: Arc::new(allowed_origins),
            public_url,
            shutdown: CancellationToken::new(),
            config: Arc::new(config),
        };
        Ok(Self {
            port: addr.port(),
            listener,
            state,
            http,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (tests reach the pool and hub through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` is cancelled, then stops taking connections,
    /// closes WebSockets (1001) and lets background loops finish their
    /// current step.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let state = self.state;
        let token = state.shutdown.clone();
        tokio::spawn({
            let token = token.clone();
            async move {
                shutdown.cancelled().await;
                token.cancel();
            }
        });
        let config = state.config.clone();
        let callback_url = format!(
            "{}/webhooks/clipping",
            state.public_url.as_str().trim_end_matches('/')
        );
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(state.hub.clone().run(
            state.pool.clone(),
            config.tuning.hub_poll,
            token.clone(),
        ));
        tasks.spawn(
            submitter::Submitter {
                pool: state.pool.clone(),
                http: self.http.clone(),
                worker_url: config.worker_url.clone(),
                callback_url,
                wake: state.submitter_wake.clone(),
                tuning: config.tuning.clone(),
            }
            .run(token.clone()),
        );
        tasks.spawn(
            reconciler::Reconciler {
                pool: state.pool.clone(),
                http: self.http.clone(),
                worker_url: config.worker_url.clone(),
                stale_after: config.stale_after,
                interval: config.tuning.reconcile_interval,
                cdn_domain: config.media_cdn_domain.clone(),
            }
            .run(token.clone()),
        );
        tracing::info!(port = self.port, public_url = %state.public_url, "viewcreator-api listening");
        let served = axum::serve(self.listener, router(state))
            .with_graceful_shutdown(token.clone().cancelled_owned())
            .await
            .context("the HTTP server failed");
        token.cancel();
        if tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!("background loops did not stop in time; abandoning them");
        }
        served
    }
}

/// Resolves on Ctrl-C or SIGTERM: the one shutdown signal of the process.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested");
}
