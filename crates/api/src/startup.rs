//! Building, running and stopping the service.
//!
//! [`Application::build`] binds the listener first (a busy port fails before
//! the database is touched), then connects, migrates and starts the commit
//! lanes; [`Application::run_until_stopped`] serves HTTP and runs the
//! background loops (hub, submitter, reconciler) until the caller's shutdown
//! token fires, then drains the server and stops and awaits every background
//! task. Tests start the very same thing on port 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use service::BackgroundTasks;
use signing::Verifier;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection, PgPool};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::{self, Config, DatabaseUrl};
use crate::http::{AppState, router};
use crate::hub::Hub;
use crate::{group_commit, reconciler, submitter};

/// The API's migrations, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/api");

/// How long background loops get to finish after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// How long one connection attempt may take before the database counts as
/// unreachable (a host that drops packets rather than refusing).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects a pool to the database at `url`.
///
/// One connection is made first, directly: a refused connection, a wrong
/// password or a missing database then fails at once with its own cause and
/// the server and database it concerns, instead of the pool retrying until
/// its acquire timeout and reporting only that it timed out.
pub async fn connect(url: &DatabaseUrl, max_connections: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url.expose().parse().map_err(|e: sqlx::Error| {
        anyhow::anyhow!("--database-url / DATABASE_URL is not a PostgreSQL URL: {e}")
    })?;
    let target = DbTarget::of(&options);
    let first = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "{target}: no answer within {CONNECT_TIMEOUT:?}; check the host and port in \
                 --database-url / DATABASE_URL and that a firewall lets the connection through"
            )
        })?
        .map_err(|e| target.explain(&e))?;
    // The probe connection is not pooled; closing it politely is a courtesy.
    let _ = first.close().await;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| target.explain(&e))
}

/// The server and database a URL points at, for error messages (never the
/// password).
#[derive(Debug, Clone)]
struct DbTarget {
    host: String,
    port: u16,
    database: String,
}

impl DbTarget {
    fn of(options: &PgConnectOptions) -> Self {
        Self {
            host: options.get_host().to_owned(),
            port: options.get_port(),
            database: options
                .get_database()
                .unwrap_or(options.get_username())
                .to_owned(),
        }
    }

    /// A failed connection, said once, with what to try.
    fn explain(&self, error: &sqlx::Error) -> anyhow::Error {
        let hint = match error {
            sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                return anyhow::anyhow!(
                    "{self}: connection refused; is PostgreSQL running and listening there? \
                     Check the host and port in --database-url / DATABASE_URL"
                );
            }
            sqlx::Error::Database(db) => {
                let what = db.message();
                let hint = match db.code().as_deref() {
                    // invalid_catalog_name
                    Some("3D000") => format!(
                        "create it (createdb -h {} -p {} {}) or name another database",
                        self.host, self.port, self.database
                    ),
                    // invalid_password, invalid_authorization_specification
                    Some("28P01" | "28000") => {
                        "check the user name and password in the URL".to_owned()
                    }
                    _ => "check --database-url / DATABASE_URL".to_owned(),
                };
                return anyhow::anyhow!("{self}: {what}; {hint}");
            }
            sqlx::Error::PoolTimedOut => {
                "no connection became free in time; is the server overloaded?"
            }
            _ => "check --database-url / DATABASE_URL",
        };
        anyhow::anyhow!("{self}: {error}; {hint}")
    }
}

impl std::fmt::Display for DbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot use PostgreSQL at {}:{} (database {:?})",
            self.host, self.port, self.database
        )
    }
}

/// A built, bound, migrated service, ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
    http: reqwest::Client,
    /// The commit lanes (started here) and the hub, submitter and
    /// reconciler (started by `run_until_stopped`): stopped and awaited
    /// after the HTTP server has drained.
    tasks: BackgroundTasks,
}

impl Application {
    /// Binds the listener, then connects to the database and applies
    /// migrations.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = bind(&config).await?;
        let pool = connect(&config.database_url, config.tuning.db_max_connections).await?;
        MIGRATOR
            .run(&pool)
            .await
            .context("failed to apply migrations")?;
        Self::assemble(config, pool, listener)
    }

    /// As [`Application::build`], with a pool the caller made and migrated
    /// (tests: one fresh database each).
    pub async fn build_with_pool(config: Config, pool: PgPool) -> anyhow::Result<Self> {
        let listener = bind(&config).await?;
        Self::assemble(config, pool, listener)
    }

    /// Everything after the listener and the pool.
    fn assemble(config: Config, pool: PgPool, listener: TcpListener) -> anyhow::Result<Self> {
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
        let tasks = BackgroundTasks::new();
        let committer = group_commit::Committer::start(
            pool.clone(),
            config.media_cdn_domain.clone(),
            config.tuning.commit_lanes,
            config.tuning.commit_batch,
            &tasks,
        );
        let state = AppState {
            committer,
            pool,
            verifier,
            hub,
            submitter_wake: Arc::new(Notify::new()),
            metrics: service::metrics_handle(),
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
            tasks,
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
        let tasks = self.tasks;
        tasks.spawn(
            "hub",
            state
                .hub
                .clone()
                .run(state.pool.clone(), config.tuning.hub_poll, token.clone()),
        );
        tasks.spawn(
            "submitter",
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
            "reconciler",
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
        tasks.stop(SHUTDOWN_GRACE).await;
        served
    }
}

/// Binds the service's listener.
async fn bind(config: &Config) -> anyhow::Result<TcpListener> {
    TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("failed to listen on {}", config.listen))
}
