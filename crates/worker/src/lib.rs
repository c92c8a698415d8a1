//! `clipping-worker`: the video-clipping service of the original plan, built
//! to run in production.
//!
//! It accepts clipping jobs over HTTP, runs at most `--max-concurrent-jobs`
//! of them through a pipeline engine, and reports each job's progress to its
//! `callback_url` with signed webhooks (Standard Webhooks v1) that are stored
//! before they are sent, retried for hours, and delivered in order per job.
//! Everything lives in a store that survives restarts without losing an
//! event: by default an embedded SQLite file under `--data-dir`, so one
//! worker needs nothing installed; or a PostgreSQL database (`--store
//! postgres://…`).
//!
//! Guarantees, and their limits:
//! - Every event is committed to the store (with the job's new state, in one
//!   transaction) before its first delivery attempt; a restart loses none and
//!   resumes pending deliveries at once.
//! - Delivery is **at least once**: an attempt that succeeded just before a
//!   crash, whose outcome was not yet committed, is sent again after the
//!   restart with the same `webhook-id`, which receivers dedupe on. A
//!   delivery's id *is* its `webhook-id` (`msg_…`).
//! - Per job, events are delivered in `sequence` order; an overtaken
//!   `job.progress` is superseded (never sent), the other events never are.
//! - Every job ends with exactly one terminal event; a job a crash cut short
//!   mid-pipeline is failed by the worker that takes its lease over (on
//!   SQLite, at the next start; see [`jobs`]).
//! - Callbacks are checked against the policy at submission and again, on
//!   the resolved address, before every attempt; a refusal at attempt time is
//!   recorded and retried like a connection error (the DNS answer or the
//!   configuration may change), until the schedule runs out.
//!
//! Map of the crate, following one job:
//! - [`http`]: the routes; [`error`]: their error shape; [`openapi`]: the
//!   OpenAPI document generated from them, and the `/docs` page.
//! - [`store`]: every query (jobs, outbox, attempts), on SQLite or
//!   PostgreSQL.
//! - [`jobs`]: claims, leases, the runner and takeover. **A job a crash
//!   interrupted mid-pipeline is failed, not re-run**; see the module docs
//!   for why.
//! - [`pipeline`]: the engine trait and the [`pipeline::simulated`] engine
//!   (demos, tests, load tests).
//! - [`reporter`] and [`throttle`]: the event rules and the progress
//!   throttle.
//! - [`sender`]: the outbox's delivery lanes, retries ([`backoff`]) and the
//!   batched ledger; [`policy`]: where callbacks may go.
//! - [`storage`]: where rendered media goes (a local directory served at
//!   `/media/…`, or S3) and the URLs handed out for it.
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
pub mod openapi;
pub mod pipeline;
pub mod policy;
pub mod reporter;
pub mod sender;
pub mod startup;
pub mod storage;
pub mod store;
pub mod throttle;

pub use config::ServeConfig;
pub use http::{AppState, router};
pub use startup::Application;
