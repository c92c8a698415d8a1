//! The wire between `clipping-worker` and `viewcreator-api`.
//!
//! Every type here is public API: the worker serialises it, the API (and any
//! third-party receiver) parses it, and the JSON shapes are fixed by the
//! project's contract. Fields are added, never renamed.
//!
//! Untrusted JSON enters through [`parse_json`], which turns it into types
//! that cannot hold an invalid state (a progress above 100, an unknown
//! status, a clip that ends before it starts) and names the offending field
//! when it cannot. This crate knows nothing of HTTP, storage or async
//! runtimes, so both services and their tests can share it freely.

mod error;
mod job;
pub mod original_plan;
mod payload;
mod request;
#[cfg(feature = "openapi")]
pub mod schema;
mod time;

pub use error::{ErrorBody, ErrorDetail, ParseError, ParseErrorKind};
pub use job::{JobAccepted, JobState, JobView};
pub use payload::{
    ClipArtifact, Event, JobOutput, PipelineStatus, ProgressPercent, ViralityScore, WebhookPayload,
};
pub use request::{ClippingJobRequest, RequestLimits};
pub use time::Timestamp;

/// Something that can check the rules serde alone cannot express (one field
/// against another, or against the event it travels with).
///
/// [`parse_json`] calls it after deserialisation, so a value that came out of
/// `parse_json` has passed it.
pub trait Validate {
    /// Returns the first broken rule, naming the field by its JSON path.
    fn validate(&self) -> Result<(), ParseError>;
}

/// Parses untrusted JSON bytes into `T` and checks its cross-field rules.
///
/// The error says whether the bytes were not JSON at all
/// ([`ParseErrorKind::Syntax`], an HTTP 400) or were JSON of the wrong shape
/// or out of range ([`ParseErrorKind::Invalid`], an HTTP 422), and names the
/// field by its path (`output.clips[1].end_time_ms`).
pub fn parse_json<T>(bytes: &[u8]) -> Result<T, ParseError>
where
    T: serde::de::DeserializeOwned + Validate,
{
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| ParseError::from_serde(e, is_json(bytes)))?;
    // Trailing garbage after the value is malformed JSON, not a valid body.
    de.end().map_err(|e| ParseError::syntax(e.to_string()))?;
    value.validate()?;
    Ok(value)
}

/// Whether `bytes` are one JSON value and nothing else, whatever its shape.
///
/// serde_json's own error categories cannot say this: asked for an enum, it
/// calls a number or `null` "expected value", a syntax error, although the
/// body is perfectly good JSON with a field of the wrong type. Only asked
/// after typed parsing failed, so a good body is read once.
fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}
