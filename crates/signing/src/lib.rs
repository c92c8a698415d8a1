//! Standard Webhooks v1 signing and verification over raw bytes.
//!
//! Every webhook we send carries three headers defined by the Standard
//! Webhooks specification (<https://www.standardwebhooks.com>): a message id,
//! a Unix timestamp and one or more `v1,<base64>` signatures. A signature is
//! HMAC-SHA256, keyed with the endpoint's secret, over the exact text
//! `"{webhook-id}.{webhook-timestamp}.{body}"`. Receivers written with any of
//! the official libraries can therefore check our deliveries, and we can check
//! theirs, without sharing code.
//!
//! The crate works on bytes and strings only. It performs no I/O and depends
//! on no HTTP or async crate, so the sender (the worker) and the receiver side
//! (the API and tests) can both use it and it stays cheap to test. The current
//! time is always passed in by the caller, which keeps verification
//! deterministic under test.
//!
//! ```
//! use signing::{SecretSet, Verifier, new_message_id};
//!
//! let secrets = SecretSet::parse_list("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
//! let body = br#"{"event":"ping"}"#;
//! let now = 1_700_000_000;
//!
//! // Sender side: compute the three headers for one delivery.
//! let headers = secrets.headers(&new_message_id(), now, body);
//!
//! // Receiver side: look the headers up by name and check them.
//! let verifier = Verifier::new(secrets);
//! verifier.verify_headers(&headers, body, now).unwrap();
//! assert!(verifier.verify_headers(&headers, b"tampered", now).is_err());
//! ```

mod secret;
mod sign;
mod verify;

pub use secret::{
    MAX_KEY_LEN, MIN_KEY_LEN, SECRET_PREFIX, Secret, SecretError, SecretSet, SecretSetError,
};
pub use sign::{WebhookHeaders, new_message_id, sign};
pub use verify::{DEFAULT_TOLERANCE, Verifier, VerifyError};

/// Name of the header carrying the message id.
///
/// The id is stable across retries of the same message, which is what lets
/// receivers de-duplicate deliveries.
pub const HEADER_ID: &str = "webhook-id";

/// Name of the header carrying the send time as integer Unix seconds.
///
/// The timestamp is part of the signed content, so a receiver that bounds its
/// age also bounds how long a captured request can be replayed.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";

/// Name of the header carrying the space-separated `v1,<base64>` signatures.
///
/// It holds one entry per active secret so that a receiver keeps working
/// while an endpoint's secret is being rotated.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// The only signature scheme this crate produces and accepts.
///
/// The specification also reserves `v1a` (Ed25519) and leaves room for future
/// schemes; entries with any other version are skipped, not rejected, so that
/// a sender can add a new scheme without breaking older receivers.
const SIGNATURE_VERSION: &str = "v1";
