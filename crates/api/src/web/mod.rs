//! `GET /`: the web page, embedded in the binary so the service ships as
//! one file. The page itself (`index.html`) signs in with an API token,
//! submits jobs through the REST API and follows them over `/ws` with a
//! ticket, resuming with `since` after a reconnect.

use axum::response::Html;

/// The page, compiled in.
const INDEX: &str = include_str!("index.html");

/// `GET /`.
#[utoipa::path(
    get,
    path = "/",
    tag = "page",
    operation_id = "page",
    summary = "The web page",
    description = "Sign in with an API token, submit jobs and watch them progress live.",
    responses((status = 200, description = "The page.", content_type = "text/html", body = String)),
)]
pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}
