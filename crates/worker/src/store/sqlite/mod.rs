//! The embedded SQLite implementation of the store, for one worker on one
//! machine.
//!
//! SQLite allows one writer at a time. Rather than let several connections
//! race for the write lock (SQLite's busy handler then sleeps in whole
//! milliseconds, which ruins delivery latency), all writes go through a pool
//! of exactly one connection, where they queue fairly in memory; reads use a
//! separate pool and, thanks to WAL mode, never wait for the writer. WAL
//! checkpoints run beside, not inside, commits.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio_util::sync::CancellationToken;

use super::Durability;

mod deliveries;
mod jobs;

/// How often the WAL is copied into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// Rows per multi-row statement: well under SQLite's limit of 32,766 bound
/// parameters, and few distinct statement texts for the statement cache.
const ROWS_PER_STATEMENT: usize = 128;

/// The two pools of a SQLite store; cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Sqlite {
    /// Exactly one connection: every write transaction queues here.
    write: SqlitePool,
    /// Several connections for reads, which WAL lets run beside the writer.
    read: SqlitePool,
}

impl Sqlite {
    /// Opens the store in `file`; with `create`, creates the file (and its
    /// directory) if needed and applies the worker's migrations.
    pub(super) async fn open(
        file: &Path,
        durability: Durability,
        create: bool,
    ) -> anyhow::Result<Sqlite> {
        if create && let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("failed to create data dir {}", dir.display()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(file)
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            // Batched writes use one statement text per batch size.
            .statement_cache_capacity(512);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            // Checkpoints (which write and fsync the database file) would
            // otherwise run inside whichever commit crosses the threshold,
            // stalling every event queued behind it; the checkpointer task
            // runs them beside the writer instead.
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await
            .context("failed to open the worker store")?;
        // Applied by the commands that read an existing store too: a newer
        // binary reading an older store brings it up to date, as `serve`
        // would.
        sqlx::migrate!("../../migrations/worker")
            .run(&write)
            .await
            .context("failed to apply the worker store migrations")?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .context("failed to open the worker store for reading")?;
        Ok(Sqlite { write, read })
    }

    pub(super) async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map(|_| ())
    }

    /// Closes both pools, flushing the WAL.
    pub(super) async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Copies the WAL into the database file every few hundred milliseconds,
    /// from a read connection, without blocking the writer (`PASSIVE`).
    /// Ends when the store is closed.
    pub(super) async fn run_checkpointer(self, stop: CancellationToken) {
        let pool = self.read;
        let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if pool.is_closed() {
                return;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                if pool.is_closed() {
                    return;
                }
                tracing::debug!(error = ?e, "WAL checkpoint failed; will retry");
            }
        }
    }
}

/// `(?, ?, …), (?, ?, …)`: `rows` groups of `cols` placeholders.
fn placeholders(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(", "));
    vec![row; rows].join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--durability` reaches the connection that commits events.
    #[tokio::test]
    async fn durability_sets_the_write_connections_synchronous_mode() {
        for (durability, expected) in [(Durability::Full, 2), (Durability::Normal, 1)] {
            let dir = tempfile::tempdir().unwrap();
            let store = Sqlite::open(&dir.path().join("w.db"), durability, true)
                .await
                .unwrap();
            let mode: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&store.write)
                .await
                .unwrap();
            assert_eq!(mode, expected, "{durability:?}");
            store.close().await;
        }
    }
}
