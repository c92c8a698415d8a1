//! Background tasks that are stopped and awaited on shutdown, never left
//! running behind a service that has "stopped".

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A set of long-running tasks with one stop token.
///
/// Each task is handed [`BackgroundTasks::token`] (or a clone) and must
/// return soon after it is cancelled, having finished or handed back what it
/// held. [`BackgroundTasks::stop`] cancels the token and waits for every
/// task, within a bound. Clones share the same set.
#[derive(Debug, Clone, Default)]
pub struct BackgroundTasks {
    tracker: TaskTracker,
    /// Cancelled by `stop`; the tasks watch it.
    token: CancellationToken,
}

impl BackgroundTasks {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token the tasks watch: cancelled when [`BackgroundTasks::stop`]
    /// begins.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Runs `task` in the set. `name` is logged if it outlives the grace.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(async move {
            task.await;
            tracing::debug!(task = name, "background task stopped");
        });
    }

    /// How many tasks are still running.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Cancels the token and waits up to `grace` for every task to return.
    /// `true` when all did; otherwise the stragglers are logged and left to
    /// the runtime's own shutdown.
    pub async fn stop(&self, grace: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
        {
            return true;
        }
        tracing::warn!(
            still_running = self.tracker.len(),
            "background tasks did not stop within {grace:?}"
        );
        false
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn stop_cancels_and_waits_for_every_task() {
        let tasks = BackgroundTasks::new();
        let finished = Arc::new(AtomicBool::new(false));
        let token = tasks.token();
        let flag = finished.clone();
        tasks.spawn("cleanup", async move {
            token.cancelled().await;
            // Work after cancellation, which stop() must wait for.
            tokio::time::sleep(Duration::from_secs(1)).await;
            flag.store(true, Ordering::SeqCst);
        });
        assert_eq!(tasks.running(), 1);
        assert!(tasks.stop(Duration::from_secs(5)).await);
        assert!(finished.load(Ordering::SeqCst));
        assert_eq!(tasks.running(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ignores_the_token_is_reported_after_the_grace() {
        let tasks = BackgroundTasks::new();
        tasks.spawn("stubborn", std::future::pending());
        let start = tokio::time::Instant::now();
        assert!(!tasks.stop(Duration::from_secs(2)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(tasks.running(), 1);
    }
}
