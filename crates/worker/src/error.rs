//! The service's one error type and its HTTP answer,
//! `{"error": {"code", "message", "field"}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use webhook_types::{ErrorBody, ParseError, ParseErrorKind};

use crate::policy::PolicyError;

/// Everything a handler can answer with other than success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body was not JSON (400) or had a bad field (422).
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// A field passed parsing but the worker refuses it (422).
    #[error("{field}: {message}")]
    Invalid {
        /// The JSON path of the field.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// The callback URL breaks the callback policy (422, field callback_url).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The body is over the limit (413).
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    /// Missing or wrong bearer token (401).
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// No such resource (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// No route (404) or method (405).
    #[error("no such route")]
    NoRoute(StatusCode),
    /// The store is unreachable (503).
    #[error("the store is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else (500); the cause is logged, never answered.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                ApiError::Unavailable(e)
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::Parse(e) => {
                let status = match e.kind {
                    ParseErrorKind::Syntax => StatusCode::BAD_REQUEST,
                    ParseErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
                };
                (status, ErrorBody::from(e))
            }
            ApiError::Invalid { field, message } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorBody::new("invalid_field", message.clone(), Some((*field).to_owned())),
            ),
            ApiError::Policy(e) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorBody::new(
                    "callback_not_allowed",
                    e.to_string(),
                    Some("callback_url".to_owned()),
                ),
            ),
            ApiError::TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorBody::new("payload_too_large", self.to_string(), None),
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                ErrorBody::new("unauthorized", self.to_string(), None),
            ),
            ApiError::NotFound(_) => (
                StatusCode::NOT_FOUND,
                ErrorBody::new("not_found", self.to_string(), None),
            ),
            ApiError::NoRoute(status) => (
                *status,
                ErrorBody::new(
                    if *status == StatusCode::METHOD_NOT_ALLOWED {
                        "method_not_allowed"
                    } else {
                        "not_found"
                    },
                    self.to_string(),
                    None,
                ),
            ),
            ApiError::Unavailable(e) => {
                tracing::error!(error = ?e, "store unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorBody::new("unavailable", self.to_string(), None),
                )
            }
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorBody::new("internal", self.to_string(), None),
                )
            }
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
