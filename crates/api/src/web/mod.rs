//! `GET /`: the web page. A small placeholder for now, embedded in the
//! binary so the service ships as one file; the real page is built
//! separately and replaces `index.html`.

use axum::response::Html;

/// The page, compiled in.
const INDEX: &str = include_str!("index.html");

/// `GET /`.
pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}
