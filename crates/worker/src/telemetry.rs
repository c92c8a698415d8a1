//! Logs and metrics set-up.
//!
//! Logs go to stderr through `tracing`, filtered by `RUST_LOG` (default
//! `info`), as JSON lines when `LOG_FORMAT=json`. Stdout is left to the
//! commands whose output is data (`submit`, `listen`, `webhooks list`).
//! Secrets never reach a log: the types that hold them print `[redacted]`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Installs the global log subscriber; call once, from `main`.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,reqwest=warn"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless, so its error is ignored.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The process-wide Prometheus recorder's handle, installed on first use.
///
/// The recorder is global (the `metrics` macros have no other way to find
/// it), so several `Application`s in one process, as in tests, share it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                // Someone else installed a recorder first: render an empty,
                // detached one rather than fail to start.
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle())
        })
        .clone()
}
