//! The documentation page both services serve at `/docs/`: Swagger UI,
//! compiled into the binary (no file is fetched at build or run time, and
//! the page loads nothing from outside), reading the service's own
//! `/openapi.json`.
//!
//! The page's files are flat (`index.html`, `swagger-ui.css`, …) and refer
//! to each other relatively, so the page is served under `/docs/` and
//! `/docs` redirects there. The document's URL is relative too
//! (`../openapi.json`), so the page keeps working behind a proxy that mounts
//! the service under a path prefix.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use utoipa_swagger_ui::Config;

/// One file of the page.
#[derive(Debug, Clone)]
pub struct DocsFile {
    /// Its `Content-Type`.
    pub content_type: String,
    /// Its bytes.
    pub bytes: Cow<'static, [u8]>,
}

/// The page's configuration: the document next to `/docs/`, the page
/// alone without Swagger's own search bar (as FastAPI shows it), the online
/// validator badge off (it would load an image from outside), requests
/// timed, tags filterable.
static CONFIG: LazyLock<Arc<Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        Config::from("../openapi.json")
            .use_base_layout()
            .validator_url("none")
            .display_request_duration(true)
            .filter(true)
            .try_it_out_enabled(false),
    )
});

/// The file `name` of the page (`""` is `index.html`), or `None` when the
/// page has no such file.
pub fn file(name: &str) -> Option<DocsFile> {
    match utoipa_swagger_ui::serve(name, CONFIG.clone()) {
        Ok(Some(file)) => Some(DocsFile {
            content_type: file.content_type,
            bytes: file.bytes,
        }),
        Ok(None) => None,
        Err(e) => {
            // Only the initializer is rendered, from a fixed configuration:
            // this cannot fail short of a broken build.
            tracing::error!(error = %e, file = name, "the documentation page could not be rendered");
            None
        }
    }
}
