//! The service's one error type and its HTTP answer.
//!
//! Every failure a handler can meet becomes an [`Error`]; its `IntoResponse`
//! writes the contract's `{"error": {"code", "message", "field"}}` with the
//! right status. Server-side failures (5xx) are logged here with their cause
//! and answered without it, so internals never reach a client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use webhook_types::{ErrorBody, ParseError, ParseErrorKind};

/// Everything that can go wrong while answering a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A body that is not JSON (400) or JSON of the wrong shape (422).
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A request the service refuses as malformed outside of a JSON body
    /// (a bad header, a bad query parameter).
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// No valid credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A webhook whose signature does not verify.
    #[error("invalid webhook signature: {0}")]
    Signature(#[from] signing::VerifyError),
    /// Authenticated, but not allowed (a foreign WebSocket origin).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing here for this caller.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Body over the limit.
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Too many WebSocket connections for one user.
    #[error("too many connections for this user (at most {0})")]
    TooManyConnections(usize),
    /// The database cannot be reached: the caller should retry later.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The database was found unreachable moments ago and is not tried
    /// again yet (see [`crate::group_commit::DbHealth`]): 503 at once.
    #[error("the database was unreachable moments ago")]
    DatabaseDown,
    /// Any other database failure.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Anything else that is our fault.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            Error::Unavailable(e)
        } else {
            Error::Database(e)
        }
    }
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<sqlx::Error>() {
            Ok(db) => db.into(),
            Err(e) => Error::Internal(e),
        }
    }
}

/// Whether a database error means "cannot reach the database now" (answer
/// 503 so that senders retry) rather than a bug or a bad statement.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08: connection exceptions; 57P0x: the server is shutting
            // down or starting; 53300: too many connections.
            code.starts_with("08") || code.starts_with("57P0") || code == "53300"
        }),
        _ => false,
    }
}

impl Error {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Parse(p) => match p.kind {
                ParseErrorKind::Syntax => StatusCode::BAD_REQUEST,
                ParseErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            },
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) | Error::Signature(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::TooManyConnections(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) | Error::DatabaseDown => StatusCode::SERVICE_UNAVAILABLE,
            Error::Database(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The body of this error.
    pub fn body(&self) -> ErrorBody {
        match self {
            Error::Parse(p) => ErrorBody::from(p),
            Error::BadRequest { code, message } => ErrorBody::new(*code, message.clone(), None),
            Error::Unauthorized(m) => ErrorBody::new("unauthorized", *m, None),
            Error::Signature(e) => ErrorBody::new("invalid_signature", e.to_string(), None),
            Error::Forbidden(m) => ErrorBody::new("forbidden", m.clone(), None),
            Error::NotFound(what) => ErrorBody::new("not_found", format!("{what} not found"), None),
            Error::PayloadTooLarge { .. } => {
                ErrorBody::new("payload_too_large", self.to_string(), None)
            }
            Error::TooManyConnections(_) => {
                ErrorBody::new("too_many_connections", self.to_string(), None)
            }
            // 5xx: the cause is logged, never sent.
            Error::Unavailable(_) | Error::DatabaseDown => ErrorBody::new(
                "unavailable",
                "the service is temporarily unavailable; retry later",
                None,
            ),
            Error::Database(_) | Error::Internal(_) => {
                ErrorBody::new("internal", "internal server error", None)
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if matches!(self, Error::DatabaseDown) {
            // Already logged once, when the database was found unreachable.
            tracing::debug!(%status, error = %self, "request refused");
        } else if status.is_server_error() {
            // `{:#}` on anyhow and the source chain on the rest: the whole
            // cause, for operators only.
            let cause = match &self {
                Error::Unavailable(e) | Error::Database(e) => format!("{e}"),
                Error::Internal(e) => format!("{e:#}"),
                _ => String::new(),
            };
            tracing::error!(%status, error = %self, %cause, "request failed");
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        if matches!(self, Error::Unavailable(_) | Error::DatabaseDown) {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("5"));
        }
        response
    }
}

/// Result alias for handlers.
pub type Result<T, E = Error> = std::result::Result<T, E>;
