//! The PostgreSQL implementation of the store, which any number of workers
//! share.
//!
//! Every connection's `search_path` is the worker's own schema
//! ([`PG_SCHEMA`](super::PG_SCHEMA)), created by the migrator together with
//! its migrations table, so the worker's tables never meet another
//! service's even in a shared database. Writes need no funnel as in SQLite:
//! PostgreSQL runs concurrent transactions itself; the group-commit writer
//! still batches events, which saves commits under load.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{DELIVERIES_CHANNEL, Durability, JOBS_CHANNEL, LaneWakeups, PG_SCHEMA, REAP_PAYLOAD};

mod deliveries;
mod jobs;

/// Connections per worker: the notification listener holds one for good;
/// the event writer, the ledger writer, lane leases, claims, readers and
/// handlers share the rest (with 8 the benchmark saw claims wait seconds
/// for a connection). PostgreSQL's default limit of 100 connections is
/// thus enough for about five workers beside the API.
const MAX_CONNECTIONS: u32 = 16;

/// A PostgreSQL store; cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Postgres {
    pool: PgPool,
}

impl Postgres {
    /// Connects to `url`; with `migrate`, creates the worker's schema if
    /// needed and applies its migrations (under the migrator's advisory
    /// lock, so workers starting together do it once). Without it, checks
    /// that the schema is there.
    pub(super) async fn connect(
        url: &str,
        durability: Durability,
        migrate: bool,
    ) -> anyhow::Result<Postgres> {
        let shown = super::StoreUrl::Postgres(url.to_owned()).to_string();
        let mut options: PgConnectOptions = url
            .parse()
            .with_context(|| format!("failed to parse the store URL {shown}"))?;
        options = options
            .application_name("clipping-worker")
            .options([("search_path", PG_SCHEMA)]);
        if durability == Durability::Normal {
            options = options.options([("synchronous_commit", "off")]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .with_context(|| format!("failed to connect to the worker store at {shown}"))?;
        if migrate {
            let mut migrator = sqlx::migrate!("../../migrations/worker-postgres");
            migrator.create_schema(PG_SCHEMA);
            migrator.dangerous_set_table_name(format!("{PG_SCHEMA}._sqlx_migrations"));
            migrator.run(&pool).await.with_context(|| {
                format!("failed to apply the worker store migrations at {shown}")
            })?;
        } else {
            let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
                .bind(format!("{PG_SCHEMA}.jobs"))
                .fetch_one(&pool)
                .await
                .with_context(|| format!("failed to read the worker store at {shown}"))?;
            if found.is_none() {
                pool.close().await;
                anyhow::bail!(
                    "no worker store at {shown} (no schema {PG_SCHEMA} with its tables; `clipping-worker migrate --store …` or `serve` creates it)"
                );
            }
        }
        Ok(Postgres { pool })
    }

    pub(super) async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    /// Listens for other workers' announcements and wakes this worker's
    /// dispatcher for each. The listener reconnects by itself after a lost
    /// connection; notifications sent meanwhile are lost, which the
    /// dispatcher's slow poll covers. Ends when the store is closed.
    pub(super) async fn run_listener(
        self,
        jobs: Arc<Notify>,
        reap: Arc<Notify>,
        lanes: Arc<LaneWakeups>,
        stop: CancellationToken,
    ) {
        let mut delay = Duration::from_millis(100);
        loop {
            let listener = async {
                let mut listener = PgListener::connect_with(&self.pool).await?;
                listener
                    .listen_all([JOBS_CHANNEL, DELIVERIES_CHANNEL])
                    .await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let mut listener = tokio::select! {
                l = listener => match l {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = ?e, "failed to listen for the fleet's notifications; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = stop.cancelled() => return,
                        }
                        delay = (delay * 2).min(Duration::from_secs(5));
                        continue;
                    }
                },
                _ = stop.cancelled() => return,
            };
            delay = Duration::from_millis(100);
            // A notification sent before the listener was up is lost: look
            // at the queue, the expired leases and the orphaned lanes once.
            jobs.notify_one();
            reap.notify_one();
            lanes.push(String::new());
            loop {
                let notification = tokio::select! {
                    n = listener.recv() => n,
                    _ = stop.cancelled() => return,
                };
                match notification {
                    Ok(n) if n.channel() == JOBS_CHANNEL && n.payload() == REAP_PAYLOAD => {
                        reap.notify_one();
                    }
                    Ok(n) if n.channel() == JOBS_CHANNEL => jobs.notify_one(),
                    Ok(n) if n.channel() == DELIVERIES_CHANNEL => {
                        lanes.push(n.payload().to_owned());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = ?e, "lost the fleet's notifications; listening again");
                        break;
                    }
                }
            }
        }
    }
}
