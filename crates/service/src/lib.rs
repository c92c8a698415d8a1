//! The plumbing both services share, so that a reader who knows one service
//! recognises the other: the shutdown signal, log and metrics set-up, the
//! `healthcheck` sub-command, the tracker that stops and awaits background
//! tasks, the one way a command-line failure is reported, the one
//! exponential backoff for retries outside the delivery schedule, and the
//! documentation page at `/docs/`.
//!
//! Nothing here knows about clipping jobs, webhooks or storage.

pub mod backoff;
pub mod docs;
pub mod health;
pub mod report;
pub mod shutdown;
pub mod tasks;
pub mod telemetry;

pub use health::healthcheck;
pub use report::exit_code;
pub use shutdown::{cancel_on_shutdown_signal, shutdown_signal};
pub use tasks::BackgroundTasks;
pub use telemetry::{init_tracing, metrics_handle};
