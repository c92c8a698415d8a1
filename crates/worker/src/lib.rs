//! `clipping-worker`: the video-clipping service of the seed design, built
//! to run in production.
//!
//! It accepts clipping jobs over HTTP, runs at most `--max-concurrent-jobs`
//! of them through a pipeline engine, and reports each job's progress to its
//! `callback_url` with signed webhooks (Standard Webhooks v1) that are stored
//! before they are sent, retried for hours, and delivered in order per job.
//! Everything lives in an embedded SQLite store under `--data-dir`, so the
//! worker needs nothing installed and survives restarts without losing an
//! event.
//!
//! Map of the crate, following one job:
//! - [`http`]: the routes; [`error`]: their error shape.
//! - [`store`]: every query (jobs, outbox, attempts).
//! - [`jobs`]: the queue, the runner and start-up recovery. **A job a crash
//!   interrupted mid-pipeline is failed at the next start, not re-run**; see
//!   the module docs for why.
//! - [`pipeline`]: the engine trait and the [`pipeline::simulated`] engine
//!   (demos, tests, load tests).
//! - [`reporter`] and [`throttle`]: the event rules and the progress
//!   throttle.
//! - [`sender`]: the outbox's delivery lanes, retries ([`backoff`]) and the
//!   batched ledger; [`policy`]: where callbacks may go.
//! - [`config`] and [`cli`]: the command line; [`startup`]: building and
//!   stopping the service.

#![warn(missing_docs)]

pub mod backoff;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod http;
pub mod jobs;
pub mod pipeline;
pub mod policy;
pub mod reporter;
pub mod sender;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod throttle;

pub use config::ServeConfig;
pub use http::{AppState, router};
pub use startup::{Application, shutdown_signal};
