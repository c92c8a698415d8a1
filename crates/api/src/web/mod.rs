//! `GET /`: the web page. One HTML file with its CSS and JavaScript inline,
//! embedded in the binary, so the service ships as one file and the page
//! needs no build step and loads nothing from the internet.
//!
//! The page signs in with an API token (kept in the browser's local
//! storage), shows the user's jobs from REST, then follows them live over
//! `/ws` with a single-use ticket, reconnecting with backoff and `since`.

use axum::response::Html;

/// The page, compiled in.
const INDEX: &str = include_str!("index.html");

/// `GET /`.
pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}
