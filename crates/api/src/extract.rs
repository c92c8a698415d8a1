//! Our own body extractors, so that an oversized or malformed body is
//! answered in the service's error shape, never the framework's plain text.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_LENGTH;
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;
use webhook_types::Validate;

use crate::error::Error;

/// The largest body any endpoint accepts: 1 MiB.
pub const MAX_BODY: usize = 1024 * 1024;

/// Reads a body into memory, refusing (413) as soon as it passes `limit`:
/// from `Content-Length` before reading anything, or while streaming a body
/// that did not announce its size.
pub async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Error> {
    let announced = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > limit as u64) {
        return Err(Error::PayloadTooLarge { limit });
    }
    let mut buf = Vec::with_capacity(announced.map_or(0, |l| l as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::BadRequest {
            code: "bad_body",
            message: format!("could not read the body: {e}"),
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(Error::PayloadTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// A JSON body parsed with `webhook_types::parse_json`: 400 for malformed
/// JSON, 422 naming the field for a wrong type or value, 413 over 1 MiB.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = Error;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Error> {
        let (parts, body) = req.into_parts();
        let bytes = read_limited(&parts.headers, body, MAX_BODY).await?;
        Ok(ApiJson(webhook_types::parse_json(&bytes)?))
    }
}
