//! The worker's OpenAPI 3.1 document, served at `GET /openapi.json`, and the
//! documentation page that reads it at `GET /docs/`.
//!
//! The document is generated from the code: each route's description sits
//! on its handler (`#[utoipa::path]`, registered with the route by
//! [`crate::http::routes`]), and the schemas are derived from the serde
//! types of `webhook-types`. What utoipa cannot say yet is added here: the
//! top-level `webhooks` section (new in OpenAPI 3.1), which describes the
//! four events this worker sends to a job's `callback_url`, and
//! `/media/{key}`, which exists only with local storage.
//!
//! The document is committed as `docs/openapi/worker.json`; a test fails
//! when the two differ (`scripts/openapi` regenerates it).

use std::sync::LazyLock;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use webhook_types::{Event, WebhookPayload};

use crate::error::ApiError;

/// The parts of the document that belong to no route.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "clipping-worker",
        description = "Cuts videos into short clips. A job is submitted over HTTP; its progress \
                       is reported to the job's `callback_url` as signed webhooks (Standard \
                       Webhooks v1), durable, retried and in order per job: see `webhooks`.",
    ),
    paths(media_file),
    components(schemas(WebhookPayload)),
    modifiers(&BearerToken),
    tags(
        (name = "jobs", description = "Submitting jobs and reading their state."),
        (name = "deliveries", description = "The delivery ledger: every webhook sent, and each attempt."),
        (name = "media", description = "Rendered clips, posters, transcripts and plans (local storage only)."),
        (name = "operations", description = "Health, readiness and metrics."),
        (name = "webhooks", description = "What the worker sends to a job's `callback_url`, and the answers it understands."),
        (name = "documentation", description = "This document and its page."),
    ),
)]
struct WorkerApi;

/// The `bearer` security scheme: `--api-token`, when the worker has one.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some(
            "The worker's `--api-token` (`WORKER_API_TOKEN`). Needed only when the worker is \
             started with one."
                .into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document without its routes, which [`crate::http::routes`] adds.
pub fn base() -> utoipa::openapi::OpenApi {
    WorkerApi::openapi()
}

/// Every route and its schemas; [`document_json`] adds the `webhooks`.
pub fn document() -> utoipa::openapi::OpenApi {
    crate::http::routes().split_for_parts().1
}

/// The whole document as pretty JSON, made once: [`document`] and the
/// top-level `webhooks` (which utoipa's types do not have), in the order a
/// job meets them.
pub fn document_json() -> &'static str {
    /// The document, then `webhooks`.
    #[derive(Serialize)]
    struct WithWebhooks {
        #[serde(flatten)]
        document: utoipa::openapi::OpenApi,
        webhooks: InOrder,
    }
    static JSON: LazyLock<String> = LazyLock::new(|| {
        let whole = WithWebhooks {
            document: document(),
            webhooks: InOrder(webhooks()),
        };
        let mut text = serde_json::to_string_pretty(&whole).expect("the document serialises");
        text.push('\n');
        text
    });
    &JSON
}

/// Named entries written as a JSON object in their own order (a JSON
/// object of this crate's serde_json sorts its keys).
struct InOrder(Vec<(String, Value)>);

impl Serialize for InOrder {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// The headers of every webhook, as operation parameters.
fn webhook_header_parameters() -> Value {
    json!([
        {
            "name": "webhook-id",
            "in": "header",
            "required": true,
            "description": "The delivery's id: `msg_` and a unique id. The same on every retry \
                            of one delivery: de-duplicate by it.",
            "schema": {"type": "string", "pattern": "^msg_[A-Za-z0-9_-]+$"},
            "example": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
        },
        {
            "name": "webhook-timestamp",
            "in": "header",
            "required": true,
            "description": "Unix seconds at the time of this attempt. Refuse one more than five \
                            minutes away from your clock (a replay).",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
            "example": "1736937000"
        },
        {
            "name": "webhook-signature",
            "in": "header",
            "required": true,
            "description": "Standard Webhooks v1: `v1,` and the base64 HMAC-SHA256 of \
                            `{webhook-id}.{webhook-timestamp}.{body}` under the base64-decoded \
                            part of the `whsec_…` secret. Several space-separated entries while \
                            secrets rotate; one matching entry is enough.",
            "schema": {"type": "string"},
            "example": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="
        },
        {
            "name": "X-Webhook-Event",
            "in": "header",
            "required": false,
            "description": "The event name, as in the body's `event`.",
            "schema": {"type": "string", "enum": Event::ALL.map(Event::as_str)}
        }
    ])
}

/// What a sentence about each event says.
fn event_description(event: Event) -> &'static str {
    match event {
        Event::Started => {
            "The job left the queue. Always the first event of a job: status `downloading`, \
             progress 0, `sequence` 1."
        }
        Event::Progress => {
            "A pipeline stage moved on, or progress within it (at most one per job per \
             `--progress-interval-ms`, unless the status changed). Progress never decreases. \
             A progress event that a newer event of the same job overtakes before it is \
             delivered is superseded: never sent (or never sent again), so `sequence` may \
             skip a number but never goes back."
        }
        Event::Completed => {
            "The job finished: status `completed`, progress 100 and `output` with the clips. \
             A terminal event: nothing follows it."
        }
        Event::Failed => {
            "The job stopped: status `failed`, the progress it reached and `error`. A terminal \
             event: nothing follows it."
        }
    }
}

/// The top-level `webhooks` section: one entry per event.
fn webhooks() -> Vec<(String, Value)> {
    let mut webhooks = Vec::new();
    for event in Event::ALL {
        let name = event.as_str();
        let operation = json!({
            "tags": ["webhooks"],
            "summary": format!("`{name}`, sent to the job's callback_url"),
            "description": format!(
                "{}\n\n{}",
                event_description(event),
                DELIVERY_RULES
            ),
            "operationId": name,
            "parameters": webhook_header_parameters(),
            "requestBody": {
                "required": true,
                "description": "The body is signed and sent as the same bytes: verify the \
                                signature over the raw body before parsing it.",
                "content": {
                    "application/json": {
                        "schema": {
                            "allOf": [
                                {"$ref": "#/components/schemas/WebhookPayload"},
                                webhook_types::schema::event_rules(event)
                            ]
                        },
                        "examples": webhook_types::schema::plan_examples(event)
                    }
                }
            },
            "responses": {
                "2XX": {"description": "Received: the delivery succeeded and is not sent again."},
                "410": {"description": "Gone: the receiver wants no more attempts of this delivery; it is marked failed."},
                "default": {
                    "description": "Anything else, a timeout (10 s) or a connection error: the \
                                    delivery is retried with exponential backoff and full jitter \
                                    (by default 0 s, 1 s, 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, \
                                    3 h, 6 h), and the job's later events wait for it.",
                    "headers": {
                        "Retry-After": {
                            "description": "Seconds, or an HTTP date: honoured as the earliest \
                                            time of the next attempt.",
                            "schema": {"type": "string"}
                        }
                    }
                }
            }
        });
        webhooks.push((name.to_owned(), json!({ "post": operation })));
    }
    webhooks
}

/// How every webhook is delivered, said once for each event.
const DELIVERY_RULES: &str = "Delivery: a `POST` with `Content-Type: application/json` and \
    `User-Agent: clipping-worker/<version>`, signed with Standard Webhooks v1 (headers below). \
    At least once: answer 2xx quickly and de-duplicate by `webhook-id`. In order per job: the \
    next event is not sent while an earlier one is being retried, and `sequence` (1, 2, …) \
    tells a late retry from news. Every delivery is stored before its first attempt, so a \
    worker restart loses none.";

// `/media/{key}` exists only with local storage, so it is described here
// rather than through the route table.
/// A stored file: a clip, its poster, a transcript or a plan.
///
/// Served only when the worker stores media locally (`--storage local`, the
/// default); with S3 the URLs handed out point at the bucket or
/// `--public-url` instead.
#[utoipa::path(
    get,
    path = "/media/{key}",
    tag = "media",
    operation_id = "media_file",
    params((
        "key" = String,
        Path,
        description = "The object's key, as in the URLs the worker hands out: segments of \
                       `A-Z a-z 0-9 - . _ ~` separated by `/`.",
    )),
    responses(
        (status = 200, description = "The file, with its content type (`video/mp4`, `image/jpeg`, `application/json`).", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The requested range (`Range: bytes=…`), so browsers can seek.", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such file, or the worker stores media in S3.", body = webhook_types::ErrorBody),
    ),
)]
#[allow(dead_code)] // Describes the route `storage::media_router` serves.
fn media_file() {}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "documentation",
    operation_id = "openapi",
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
        None => ApiError::NotFound("file").into_response(),
    }
}
