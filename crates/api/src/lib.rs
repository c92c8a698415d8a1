//! `viewcreator-api`: receives the clipping worker's signed webhooks, keeps
//! the truth about jobs in PostgreSQL, and pushes each change to the
//! WebSocket of the user who owns the job, on every API instance.
//!
//! Module map: [`startup`] (building, running and stopping the service),
//! [`http`] (the shared state and every route), [`config`] (flags),
//! [`error`] (the one error type), [`token`] (making and hashing tokens and
//! tickets), [`auth`] (the `AuthUser` extractor), [`receiver`] (webhooks)
//! with [`group_commit`] and [`batch`] (batching them), [`jobs`] (the state machine),
//! [`store`] (all SQL), [`submitter`] and [`reconciler`] (talking to the
//! worker), [`hub`] and [`ws`] (live push) with [`messages`] (what a socket
//! receives), [`rest`] and [`web`] (the browser's API and page),
//! [`openapi`] (the OpenAPI document and `/docs`), [`cli`] (the
//! sub-commands).

pub mod auth;
pub mod batch;
pub mod cli;
pub mod config;
pub mod error;
pub mod extract;
pub mod group_commit;
pub mod http;
pub mod hub;
pub mod jobs;
pub mod messages;
pub mod openapi;
pub mod receiver;
pub mod reconciler;
pub mod rest;
pub mod startup;
pub mod store;
pub mod submitter;
pub mod token;
pub mod web;
pub mod ws;

pub use http::{AppState, router};
pub use startup::Application;
