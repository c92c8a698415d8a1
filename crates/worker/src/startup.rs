//! Building, running and stopping the service.
//!
//! [`Application::build`] binds the listener first (a busy port fails before
//! anything is created on disk; the default `--public-url` needs its port),
//! then opens the store and the media storage, starts the sender (which
//! resumes every pending delivery at once) and recovers jobs the last run
//! left behind; [`Application::run_until_stopped`] serves until the caller's
//! shutdown token is cancelled, then stops each part in order: intake first,
//! then the pipelines, then the sender (in-flight attempts get
//! `--shutdown-grace-ms`), then the store. Whatever was not delivered stays
//! pending in the store for the next start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::config::{EngineKind, ServeConfig};
use crate::http::{AppState, router};
use crate::jobs::{self, RunnerContext};
use crate::pipeline::Engine;
use crate::pipeline::ffmpeg::FfmpegEngine;
use crate::pipeline::simulated::SimulatedEngine;
use crate::sender::{Outbox, SenderConfig, SenderTasks};
use crate::storage::{MediaStore, StorageTarget};
use crate::store::Store;

/// How long open HTTP connections may take to finish after shutdown began.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// A built, not yet running, worker.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
    /// The worker's own stop token, watched by the pipelines and the sender;
    /// cancelled when the caller's token passed to `run_until_stopped` is.
    shutdown: CancellationToken,
    /// Every job task, so shutdown can wait for them.
    jobs: TaskTracker,
    sender: SenderTasks,
    grace: Duration,
    /// This process's job lease owner id.
    owner: Arc<str>,
}

impl Application {
    /// Builds the worker from its configuration (see the module docs).
    pub async fn build(config: ServeConfig) -> anyhow::Result<Application> {
        let shutdown = CancellationToken::new();
        // Bind first: a busy port fails before anything is created.
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("failed to listen on {}", config.listen))?;
        let bound = listener.local_addr()?;
        let store = Store::connect(&config.store, &config.data_dir, config.durability).await?;
        if config.webhook_secret.is_none() {
            tracing::warn!(
                "no --webhook-secret / WEBHOOK_SECRET: webhooks will be sent UNSIGNED; receivers cannot tell them from forgeries"
            );
        }
        if config.allow_private_callbacks {
            tracing::warn!(
                "--allow-private-callbacks: callbacks may target loopback and private networks"
            );
        }
        // The default public URL of local media needs the bound port.
        let public_url = public_url(&config, bound)?;
        let media = MediaStore::open(&config.storage, &config.data_dir, &public_url)
            .await
            .with_context(|| format!("failed to open the media storage `{}`", config.storage))?;
        let media = match &config.public_url {
            Some(base) => media.with_public_base(base),
            None => media,
        };
        tracing::info!(storage = %config.storage, %public_url, "media storage ready");
        let policy = Arc::new(config.policy());
        let grace = Duration::from_millis(config.shutdown_grace_ms);
        // Unique per start: a restarted worker never takes its previous
        // life's leases for its own.
        let owner: Arc<str> = format!("{}-{}", host_name(), uuid::Uuid::new_v4().simple()).into();
        let (outbox, sender) = Outbox::start(
            store.clone(),
            SenderConfig {
                secrets: config.webhook_secret.clone(),
                schedule: config.retry_schedule.clone(),
                policy: policy.clone(),
                max_in_flight: config.max_in_flight_deliveries as usize,
                timeout: Duration::from_millis(config.webhook_timeout_ms.max(1)),
                grace,
                owner: owner.clone(),
                lease: Duration::from_millis(config.job_lease_ms),
                poll: Duration::from_millis(config.queue_poll_ms),
                clock: config.clock.clone(),
            },
            shutdown.clone(),
        )
        .await?;
        let engine: Arc<dyn Engine> = match config.engine {
            EngineKind::Ffmpeg => {
                let engine =
                    FfmpegEngine::new(config.ffmpeg_config(policy.clone()), media.clone()).await?;
                tracing::info!(storage = media.kind(), preset = %config.x264_preset, "using the ffmpeg engine");
                Arc::new(engine)
            }
            EngineKind::Simulated => {
                tracing::info!(
                    stage_ms = config.sim_stage_ms,
                    "using the simulated engine (demos, tests and load tests only)"
                );
                Arc::new(SimulatedEngine {
                    stage: Duration::from_millis(config.sim_stage_ms),
                })
            }
        };
        let jobs_tracker = TaskTracker::new();
        let ctx = RunnerContext {
            store: store.clone(),
            outbox: outbox.clone(),
            engine: engine.clone(),
            progress_interval: config.progress_interval(),
            cancel: shutdown.clone(),
            owner: owner.clone(),
            clock: config.clock.clone(),
            lease: Duration::from_millis(config.job_lease_ms),
            poll: Duration::from_millis(config.queue_poll_ms),
        };
        // Settle what the last run left before the dispatcher claims.
        let queue = jobs::JobQueue::new(&store);
        jobs::recover(&ctx, &queue)
            .await
            .context("failed to recover jobs from the store")?;
        jobs::start(
            ctx.clone(),
            queue.clone(),
            config.max_concurrent_jobs as usize,
            jobs_tracker.clone(),
        );
        let port = bound.port();
        tracing::info!(addr = %listener.local_addr()?, data_dir = %config.data_dir.display(), store = %config.store, %owner, "clipping-worker ready");
        let state = AppState {
            store,
            queue,
            outbox,
            engine,
            policy,
            api_token: config.api_token.clone(),
            metrics: service::metrics_handle(),
            media,
        };
        Ok(Application {
            listener,
            port,
            state,
            shutdown,
            jobs: jobs_tracker,
            sender,
            grace,
            owner,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state, for tests and benchmarks that drive parts directly.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `stop` is cancelled (by the shutdown signal in `main`,
    /// by tests directly), then stops in order.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            shutdown,
            jobs,
            sender,
            grace,
            owner,
            ..
        } = self;
        let store = state.store.clone();
        let token = shutdown.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, router(state))
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await
        });
        stop.cancelled().await;
        shutdown.cancel();
        tracing::info!("shutting down: intake stops, in-flight work gets its grace");
        // Intake: let open requests finish, within a bound.
        let mut server = server;
        match tokio::time::timeout(HTTP_DRAIN, &mut server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = ?e, "HTTP server error"),
            Ok(Err(e)) => tracing::error!(error = ?e, "HTTP server task failed"),
            Err(_) => {
                tracing::warn!("HTTP connections still open; closing them");
                server.abort();
            }
        }
        // Pipelines: they saw the same token and stop at once.
        jobs.close();
        if tokio::time::timeout(grace, jobs.wait()).await.is_err() {
            tracing::warn!("job tasks did not stop in time");
        }
        // Jobs cut short are failed by whoever takes them over: on
        // PostgreSQL another worker, at once rather than a lease later.
        if store.is_shared()
            && let Err(e) = store.abandon_jobs(&owner).await
        {
            tracing::warn!(error = ?e, "failed to hand this worker's unfinished jobs over");
        }
        sender.shutdown().await;
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// This machine's name, for lease owner ids that say where a job runs.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned())
}

/// `--public-url`, or `http://<bound address>` (with a wildcard address
/// replaced by loopback, the one address sure to reach this host).
fn public_url(config: &ServeConfig, bound: SocketAddr) -> anyhow::Result<Url> {
    if let Some(url) = &config.public_url {
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            anyhow::bail!("--public-url must be an http(s) URL with a host, got `{url}`");
        }
        return Ok(url.clone());
    }
    let mut addr = bound;
    if addr.ip().is_unspecified() {
        let loopback: std::net::IpAddr = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        addr.set_ip(loopback);
        if config.storage == StorageTarget::Local {
            tracing::warn!(
                %bound,
                "no --public-url: local media URLs use {addr}, which only this host reaches"
            );
        }
    }
    Url::parse(&format!("http://{addr}")).context("failed to build the default public URL")
}
