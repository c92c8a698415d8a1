//! The one shutdown signal of a process: Ctrl-C or SIGTERM, whichever comes
//! first.

use std::future::Future;
use std::io;

use tokio_util::sync::CancellationToken;

/// Resolves on Ctrl-C or SIGTERM.
///
/// The SIGTERM handler is installed when this function is called, not when
/// the future is first polled, so a signal sent right after the call is not
/// lost. If one of the two handlers cannot be installed, the failure is
/// logged and the other is still waited on: a process must never stop just
/// because it could not listen for one of its stop signals.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    let terminate = {
        let installed = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        async move {
            let mut signal = installed?;
            signal.recv().await;
            Ok(())
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<io::Result<()>>();
    async move {
        first_of(tokio::signal::ctrl_c(), terminate).await;
        tracing::info!("shutdown requested");
    }
}

/// A token that is cancelled when the process receives its shutdown
/// signal: what `serve` hands to `run_until_stopped`. The handlers are
/// installed before this returns.
pub fn cancel_on_shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let signal = shutdown_signal();
    tokio::spawn({
        let token = token.clone();
        async move {
            signal.await;
            token.cancel();
        }
    });
    token
}

/// Waits for the first of two signal futures to succeed. One that fails
/// (its handler could not be installed) is logged and parked, never taken
/// as a request to stop.
async fn first_of(
    ctrl_c: impl Future<Output = io::Result<()>>,
    terminate: impl Future<Output = io::Result<()>>,
) {
    let ctrl_c = async {
        if let Err(e) = ctrl_c.await {
            tracing::error!(error = %e, "failed to listen for Ctrl-C; SIGTERM still stops the process");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        if let Err(e) = terminate.await {
            tracing::error!(error = %e, "failed to listen for SIGTERM; Ctrl-C still stops the process");
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn broken() -> io::Result<()> {
        Err(io::Error::other("no handler"))
    }

    async fn after(d: Duration) -> io::Result<()> {
        tokio::time::sleep(d).await;
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_that_cannot_be_installed_does_not_stop_the_process() {
        let start = tokio::time::Instant::now();
        first_of(broken(), after(Duration::from_secs(30))).await;
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        let start = tokio::time::Instant::now();
        first_of(after(Duration::from_secs(7)), broken()).await;
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_signal_wins() {
        let start = tokio::time::Instant::now();
        first_of(after(Duration::from_secs(2)), after(Duration::from_secs(9))).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn sigterm_resolves_the_signal() {
        let signal = shutdown_signal();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(30), signal)
            .await
            .expect("SIGTERM resolves the shutdown signal");
    }
}
