//! The API's OpenAPI 3.1 document, served at `GET /openapi.json`, and the
//! documentation page that reads it at `GET /docs/`.
//!
//! Generated from the code: each route's description sits on its handler
//! (`#[utoipa::path]`, registered with the route by [`crate::http::routes`])
//! and the schemas are derived from the serde types the handlers answer
//! with. The parts that would make a handler's annotation long live here:
//! the receiver's headers and its table of answers, and the WebSocket's
//! query and messages (named schemas, [`crate::messages`], referenced from
//! `GET /ws`).
//!
//! The document is committed as `docs/openapi/api.json`; a test fails when
//! the two differ (`scripts/openapi` regenerates it).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::response::Response as ResponseDoc;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToSchema};

use crate::error::Error;
use crate::messages::ServerMessage;

/// The parts of the document that belong to no route.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "viewcreator-api",
        description = "Clipping jobs for signed-in users: create them, read them, and follow \
                       them live over a WebSocket. Receives the clipping worker's signed \
                       webhooks (`POST /webhooks/clipping`) and keeps the truth in \
                       PostgreSQL. JSON is camelCase on the REST and WebSocket side, \
                       snake_case on the webhook side (the worker's wire).",
    ),
    components(schemas(ServerMessage, ReceiverAnswer)),
    modifiers(&BearerToken),
    tags(
        (name = "jobs", description = "The caller's clipping jobs."),
        (name = "live", description = "Job events as they happen, over a WebSocket."),
        (name = "webhooks", description = "The clipping worker's signed progress reports."),
        (name = "page", description = "The web page."),
        (name = "operations", description = "Health, readiness and metrics."),
        (name = "documentation", description = "This document and its page."),
    ),
)]
struct ViewcreatorApi;

/// The `bearer` security scheme: a user's API token.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some(
            "A user's API token (`vct_…`), as printed by `viewcreator-api users create`.".into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document without its routes, which [`crate::http::routes`] adds.
pub fn base() -> utoipa::openapi::OpenApi {
    ViewcreatorApi::openapi()
}

/// The whole document, with the original plan's examples on the receiver's
/// body.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = crate::http::routes().split_for_parts().1;
    let body = document
        .paths
        .paths
        .get_mut("/webhooks/clipping")
        .and_then(|item| item.post.as_mut())
        .and_then(|operation| operation.request_body.as_mut())
        .and_then(|body| body.content.get_mut("application/json"))
        .expect("the receiver takes a JSON body");
    let mut examples = serde_json::Map::new();
    for event in webhook_types::Event::ALL {
        if let Value::Object(some) = webhook_types::schema::plan_examples(event) {
            examples.extend(some);
        }
    }
    body.examples = serde_json::from_value(Value::Object(examples)).expect("examples parse");
    document
}

/// [`document`] as pretty JSON, made once.
pub fn document_json() -> &'static str {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        let mut text = document()
            .to_pretty_json()
            .expect("the document serialises");
        text.push('\n');
        text
    });
    &JSON
}

/// The body of every `200` of `POST /webhooks/clipping`.
///
/// Documents the receiver's answers (built in [`crate::receiver::Outcome::body`]);
/// a test reads each of them into this type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiverAnswer {
    /// Always true: the delivery is recorded and must not be sent again.
    pub received: bool,
    /// Present, and true, when this `webhook-id` was received before:
    /// nothing changed twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub duplicate: Option<bool>,
    /// `unknown job` when no job matches the payload's ids; the delivery is
    /// recorded and left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, examples("unknown job"))]
    pub ignored: Option<String>,
}

/// What `POST /webhooks/clipping` does, for its description.
pub const RECEIVER_DESCRIPTION: &str = "The clipping worker's webhooks, signed with Standard \
    Webhooks v1. In this order: the body is read raw (413 over 1 MiB); the signature is \
    verified over those exact bytes (401: missing, wrong, or `webhook-timestamp` more than 5 \
    minutes off; any secret of `--webhook-secret` may match); the JSON is parsed (400 not \
    JSON, 422 a field of the wrong type or out of range); then the job is found by \
    `external_job_id`, else by the worker's `job_id`, and updated in one transaction with \
    the record of the `webhook-id`, its clips and the user's event, which is pushed to the \
    owner's WebSockets after the commit.\n\nA job in `completed` or `failed` never changes \
    again; an event whose `sequence` is not above the last applied one is recorded but does \
    not move the job.";

/// The Standard Webhooks headers the receiver checks.
#[derive(Debug)]
pub struct WebhookHeaders;

impl IntoParams for WebhookHeaders {
    fn into_params(_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        serde_json::from_value(webhook_header_parameters()).expect("the headers parse")
    }
}

/// The webhook headers, as OpenAPI parameters (the worker's document
/// describes the same headers in its `webhooks`).
fn webhook_header_parameters() -> Value {
    json!([
        {
            "name": "webhook-id",
            "in": "header",
            "required": true,
            "description": "The delivery's id (`msg_…`), the same on every retry: the \
                            de-duplication key. At most 256 characters (400 otherwise).",
            "schema": {"type": "string", "maxLength": 256},
            "example": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
        },
        {
            "name": "webhook-timestamp",
            "in": "header",
            "required": true,
            "description": "Unix seconds of the attempt; more than 5 minutes away from this \
                            server's clock is refused (401).",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
            "example": "1736937000"
        },
        {
            "name": "webhook-signature",
            "in": "header",
            "required": true,
            "description": "Space-separated `v1,<base64 HMAC-SHA256>` entries over \
                            `{webhook-id}.{webhook-timestamp}.{body}`; one that verifies with \
                            any configured secret is enough.",
            "schema": {"type": "string"},
            "example": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="
        }
    ])
}

/// Every answer of the receiver (contract §3's table).
#[derive(Debug)]
pub struct ReceiverAnswers;

impl IntoResponses for ReceiverAnswers {
    fn responses() -> BTreeMap<String, RefOr<ResponseDoc>> {
        let error =
            json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}});
        responses(json!({
            "200": {
                "description": "Received. Accepted: `{\"received\": true}`. The same \
                                `webhook-id` again: `{\"received\": true, \"duplicate\": \
                                true}`, and nothing changes twice. No job matches: \
                                `{\"received\": true, \"ignored\": \"unknown job\"}`.",
                "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ReceiverAnswer"},
                    "examples": {
                        "accepted": {"value": {"received": true}},
                        "duplicate": {"value": {"received": true, "duplicate": true}},
                        "unknown job": {"value": {"received": true, "ignored": "unknown job"}}
                    }
                }}
            },
            "400": {"description": "The body is not JSON, or `webhook-id` is empty or too long.", "content": error},
            "401": {"description": "Missing or bad signature, or `webhook-timestamp` more than 5 minutes off.", "content": error},
            "413": {"description": "The body is larger than 1 MiB.", "content": error},
            "422": {"description": "A field of the wrong type, missing or out of range, or events and statuses that do not go together; `field` names it.", "content": error},
            "503": {
                "description": "The database is unavailable: retry later (the worker does).",
                "content": error,
                "headers": {"Retry-After": {"description": "Seconds: `5`.", "schema": {"type": "string"}}}
            }
        }))
    }
}

/// What `GET /ws` does, for its description.
pub const WS_DESCRIPTION: &str = "A WebSocket (`Upgrade: websocket`) carrying the caller's \
    job events, one JSON text frame per event: a `ServerMessage` (see the schemas \
    `ClippingStarted`, `ClippingProgress`, `ClippingCompleted` and `ClippingFailed`, told \
    apart by `type`). A connection only ever receives events of its own user's jobs.\n\n\
    Authenticated by `?ticket=` (from `POST /api/ws-ticket`; browsers cannot set headers on \
    a WebSocket) or an `Authorization: Bearer` header. A browser `Origin` outside \
    `--allowed-origins` is refused.\n\n`eventId` increases per user. `?since=<eventId>` first \
    replays, in order, the caller's events after that id, then goes live with no gap and no \
    repeat: a client that reconnects passes the last `eventId` it saw. Frames are at most \
    256 KiB: a `clipping.completed` whose clips would not fit carries `clipsOmitted: true` \
    instead of `clips` (read them with `GET /api/clipping-jobs/{id}`).\n\nThe server pings \
    every 20 s and closes a connection silent for 60 s (close code 1001); a client that \
    reads too slowly is closed with 1013 and can come back with `since`; 1001 also when the \
    server stops.";

/// The query of `GET /ws`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WsQuery {
    /// A ticket from `POST /api/ws-ticket` (single use, 60 s); or send
    /// `Authorization: Bearer <token>` instead.
    pub ticket: Option<String>,
    /// Replay the caller's events after this `eventId` first.
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// Only this job's events.
    pub job: Option<uuid::Uuid>,
}

/// Every answer of `GET /ws`.
#[derive(Debug)]
pub struct WsAnswers;

impl IntoResponses for WsAnswers {
    fn responses() -> BTreeMap<String, RefOr<ResponseDoc>> {
        let error =
            json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}});
        responses(json!({
            "101": {
                "description": "Switching protocols: the socket is open. Each text frame the \
                                server sends is one message.",
                "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ServerMessage"}
                }}
            },
            "400": {"description": "Not a WebSocket upgrade, or a bad `since` or `job`.", "content": error},
            "401": {"description": "No valid ticket or token.", "content": error},
            "403": {"description": "A browser `Origin` that is not allowed.", "content": error},
            "429": {"description": "Too many connections for this user.", "content": error},
            "503": {"description": "The database is unavailable; retry later.", "content": error}
        }))
    }
}

/// Responses written as JSON, read into utoipa's types.
fn responses(value: Value) -> BTreeMap<String, RefOr<ResponseDoc>> {
    serde_json::from_value(value).expect("the responses parse")
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "documentation",
    operation_id = "openapi",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 document of this service.", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

/// The documentation page lives under `/docs/`.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "documentation",
    operation_id = "docs",
    summary = "The documentation page",
    responses((status = 308, description = "Redirects to `/docs/`.", headers(("Location" = String, description = "`docs/`, relative to this URL.")))),
)]
pub async fn docs_redirect() -> Response {
    // Relative, so that a proxy's path prefix is kept.
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, "docs/")],
    )
        .into_response()
}

/// The documentation page (Swagger UI, bundled in the binary).
#[utoipa::path(
    get,
    path = "/docs/",
    tag = "documentation",
    operation_id = "docs_page",
    summary = "The documentation page (Swagger UI)",
    responses((status = 200, description = "The page.", content_type = "text/html", body = String)),
)]
pub async fn docs_page() -> Response {
    docs_file("index.html")
}

/// A file of the documentation page (its scripts, styles and icons).
#[utoipa::path(
    get,
    path = "/docs/{file}",
    tag = "documentation",
    operation_id = "docs_file",
    summary = "A file of the documentation page",
    params(("file" = String, Path, description = "A file of the page, such as `swagger-ui.css`.")),
    responses(
        (status = 200, description = "The file.", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "The page has no such file.", body = webhook_types::ErrorBody),
    ),
)]
pub async fn docs_asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    docs_file(&file)
}

fn docs_file(name: &str) -> Response {
    match service::docs::file(name) {
        Some(file) => (
            [(header::CONTENT_TYPE, file.content_type)],
            file.bytes.into_owned(),
        )
            .into_response(),
        None => Error::NotFound("file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::Outcome;

    /// The receiver's answers are what the document says they are.
    #[test]
    fn every_receiver_answer_is_a_receiver_answer() {
        for outcome in [
            Outcome::Applied,
            Outcome::Stale,
            Outcome::Terminal,
            Outcome::Duplicate,
            Outcome::UnknownJob,
        ] {
            let body = outcome.body();
            let answer: ReceiverAnswer = serde_json::from_value(body.clone())
                .unwrap_or_else(|e| panic!("{outcome:?}: {body} is not a ReceiverAnswer: {e}"));
            assert!(answer.received);
            assert_eq!(serde_json::to_value(&answer).unwrap(), body);
        }
    }
}
