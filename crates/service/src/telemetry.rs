//! Logs and metrics set-up, the same in both services.
//!
//! Logs go to stderr through `tracing`, filtered by `RUST_LOG` (else the
//! caller's default), as JSON lines when `LOG_FORMAT=json`. Stdout is left
//! to the commands whose output is data. Secrets never reach a log: the
//! types that hold them print `[redacted]`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// The default filter of a long-running command (`serve`, `listen`):
/// the service's own `info`, the libraries' warnings only.
pub const SERVICE_LOG_FILTER: &str = "info,sqlx=warn,hyper=warn,reqwest=warn";

/// The default filter of a one-shot command, whose stdout is its answer:
/// warnings only.
pub const COMMAND_LOG_FILTER: &str = "warn";

/// Whether `LOG_FORMAT` asks for JSON lines.
fn json_logs() -> bool {
    std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"))
}

/// Installs the global log subscriber; `default_filter` applies when
/// `RUST_LOG` is unset or invalid. Call once, from `main`; a second call (as
/// in tests) changes nothing.
pub fn init_tracing(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Only a second initialisation fails, and it is harmless.
    let _ = if json_logs() {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The process-wide Prometheus recorder's handle, installed on first use.
///
/// The recorder is global (the `metrics` macros have no other way to find
/// it), so several applications in one process, as in tests, share it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .unwrap_or_else(|e| {
                    // Someone else installed a recorder first (an embedding
                    // program): render an empty, detached one rather than
                    // fail to start.
                    tracing::warn!(error = %e, "a metrics recorder was already installed");
                    PrometheusBuilder::new().build_recorder().handle()
                })
        })
        .clone()
}
