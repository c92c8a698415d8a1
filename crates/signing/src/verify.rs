//! The receiver's side: checking the three headers against a body.

use std::time::Duration;

use base64::Engine as _;
use subtle::{Choice, ConstantTimeEq as _};

use crate::secret::{BASE64, SecretSet};
use crate::sign::{WebhookHeaders, mac};
use crate::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SIGNATURE_VERSION};

/// How far the timestamp may be from the receiver's clock, in either
/// direction, when no other tolerance is set.
///
/// Five minutes is the specification's recommendation and what the official
/// libraries enforce: wide enough for ordinary clock skew and queueing, narrow
/// enough that a captured request cannot be replayed for long.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Why a webhook was rejected.
///
/// The variants are distinct so that a receiver can log the precise cause and
/// a sender's test suite can assert it; none of them says which secret was
/// tried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A required header was absent; holds its name.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// The `webhook-id` header was present but empty, so the message cannot
    /// be de-duplicated and its signed content would be ambiguous.
    #[error("header {HEADER_ID} is empty")]
    EmptyId,
    /// The `webhook-timestamp` header was not an integer number of seconds.
    #[error("header {HEADER_TIMESTAMP} is not an integer")]
    BadTimestamp,
    /// The timestamp was further from the receiver's clock than the
    /// tolerance, in the past (a replay or a long delay) or the future (a
    /// skewed sender clock).
    #[error("header {HEADER_TIMESTAMP} is outside the accepted time window")]
    TimestampOutOfTolerance,
    /// The `webhook-signature` header held no well-formed `v1` entry.
    #[error("header {HEADER_SIGNATURE} has no well-formed v1 signature")]
    NoSignature,
    /// There were `v1` entries but none matched the body under any secret.
    #[error("no signature in header {HEADER_SIGNATURE} matches")]
    NoMatchingSignature,
}

/// Checks incoming webhooks against a set of secrets and a time window.
///
/// It is built once per endpoint configuration and reused for every request;
/// the current time is an argument of each check rather than read from the
/// system clock, so that tests can pin it.
#[derive(Debug, Clone)]
pub struct Verifier {
    secrets: SecretSet,
    tolerance: Duration,
}

impl Verifier {
    /// Accepts messages signed with any secret of `secrets`, within
    /// [`DEFAULT_TOLERANCE`] of the receiver's clock.
    pub fn new(secrets: impl Into<SecretSet>) -> Verifier {
        Verifier {
            secrets: secrets.into(),
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Replaces the time window; only whole seconds count, since timestamps
    /// are whole seconds.
    pub fn with_tolerance(self, tolerance: Duration) -> Verifier {
        Verifier { tolerance, ..self }
    }

    /// The time window in use.
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// Verifies one message given its three header values (`None` when a
    /// header was absent), the raw body, and the current Unix time.
    ///
    /// Passes when the timestamp is within the tolerance of `now_unix`, both
    /// ends included, and some `v1` entry of the signature header matches the
    /// body under some secret. Entries of other versions, and `v1` entries that
    /// are not 32 bytes of base64, are skipped rather than fatal, so that one
    /// odd entry from a newer sender cannot hide a good one.
    pub fn verify(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError> {
        let id = id.ok_or(VerifyError::MissingHeader(HEADER_ID))?;
        let timestamp = timestamp.ok_or(VerifyError::MissingHeader(HEADER_TIMESTAMP))?;
        let signature = signature.ok_or(VerifyError::MissingHeader(HEADER_SIGNATURE))?;
        if id.is_empty() {
            return Err(VerifyError::EmptyId);
        }
        let timestamp = parse_timestamp(timestamp)?;
        // The age check comes before any hashing so that stale or replayed
        // requests are turned away cheaply.
        if now_unix.abs_diff(timestamp) > self.tolerance.as_secs() {
            return Err(VerifyError::TimestampOutOfTolerance);
        }

        let expected: Vec<[u8; 32]> = self
            .secrets
            .secrets()
            .iter()
            .map(|secret| mac(secret, id, timestamp, body))
            .collect();

        let mut seen_v1 = false;
        let mut matched = Choice::from(0);
        for candidate in signature.split_ascii_whitespace().filter_map(parse_entry) {
            seen_v1 = true;
            // Every candidate is compared with every secret's MAC and the
            // results are folded without branching, so timing reveals neither
            // which entry nor which secret matched.
            for mac in &expected {
                matched |= mac.ct_eq(&candidate);
            }
        }

        if bool::from(matched) {
            Ok(())
        } else if seen_v1 {
            Err(VerifyError::NoMatchingSignature)
        } else {
            Err(VerifyError::NoSignature)
        }
    }

    /// Verifies one message, fetching the headers through `header`.
    ///
    /// This lets HTTP code pass its own header map (for example
    /// `|name| map.get(name)?.to_str().ok()`) without this crate depending on
    /// an HTTP library. Names are asked for in lowercase, the form HTTP/2
    /// requires and case-insensitive maps accept.
    pub fn verify_with<'a, F>(
        &self,
        mut header: F,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError>
    where
        F: FnMut(&'static str) -> Option<&'a str>,
    {
        let id = header(HEADER_ID);
        let timestamp = header(HEADER_TIMESTAMP);
        let signature = header(HEADER_SIGNATURE);
        self.verify(id, timestamp, signature, body, now_unix)
    }

    /// Verifies a message whose headers are already in a [`WebhookHeaders`],
    /// as when a sender checks its own output.
    pub fn verify_headers(
        &self,
        headers: &WebhookHeaders,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError> {
        self.verify(
            Some(&headers.id),
            Some(&headers.timestamp),
            Some(&headers.signature),
            body,
            now_unix,
        )
    }
}

/// Parses the timestamp header as a plain decimal integer.
///
/// A leading `+` is refused even though Rust's integer parser allows it: the
/// signed content uses the number's canonical spelling, so accepting other
/// spellings would only produce confusing signature mismatches.
fn parse_timestamp(text: &str) -> Result<i64, VerifyError> {
    if text.starts_with('+') {
        return Err(VerifyError::BadTimestamp);
    }
    text.parse().map_err(|_| VerifyError::BadTimestamp)
}

/// Extracts the MAC from one `version,base64` entry, or `None` when the entry
/// is not a well-formed `v1` signature and should be skipped.
fn parse_entry(entry: &str) -> Option<[u8; 32]> {
    let (version, encoded) = entry.split_once(',')?;
    if version != SIGNATURE_VERSION {
        return None;
    }
    BASE64.decode(encoded).ok()?.try_into().ok()
}
