//! The sender's side: computing signatures and the headers that carry them.

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use rand::Rng as _;
use rand::distr::Alphanumeric;
use sha2::Sha256;

use crate::secret::{BASE64, Secret, SecretSet};
use crate::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SIGNATURE_VERSION};

/// Length of the random part of [`new_message_id`], as in the ids used by the
/// specification's examples.
const MESSAGE_ID_RANDOM_LEN: usize = 27;

/// Computes the raw HMAC-SHA256 of `"{msg_id}.{timestamp}.{body}"`.
///
/// The parts are fed to the MAC one after another instead of being joined
/// into one buffer, so signing a large body does not copy it. Verification
/// calls this too, so both sides agree byte for byte on the signed content.
pub(crate) fn mac(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.key()).expect("HMAC accepts keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Signs one message with one secret and returns the `v1,<base64>` entry.
///
/// The body is taken as bytes and signed exactly as given: the receiver must
/// verify the bytes it received, before any JSON parsing, or re-serialisation
/// would change them.
pub fn sign(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = mac(secret, msg_id, timestamp, body);
    format!("{SIGNATURE_VERSION},{}", BASE64.encode(mac))
}

/// Makes a new message id: `msg_` followed by 27 random letters and digits.
///
/// Ids only need to be unique per endpoint so receivers can de-duplicate
/// retries; 27 alphanumerics carry about 160 bits, so random ids never collide
/// in practice and need no coordination between workers.
pub fn new_message_id() -> String {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(MESSAGE_ID_RANDOM_LEN)
        .map(char::from)
        .collect();
    format!("msg_{random}")
}

/// The values of the three Standard Webhooks headers for one delivery.
///
/// It is plain strings so that whichever HTTP client sends the request can
/// copy them in; [`WebhookHeaders::pairs`] gives them with their names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookHeaders {
    /// Value for [`HEADER_ID`].
    pub id: String,
    /// Value for [`HEADER_TIMESTAMP`], integer Unix seconds.
    pub timestamp: String,
    /// Value for [`HEADER_SIGNATURE`], one `v1,` entry per secret.
    pub signature: String,
}

impl WebhookHeaders {
    /// The headers as `(name, value)` pairs, ready to be added to a request.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            (HEADER_ID, &self.id),
            (HEADER_TIMESTAMP, &self.timestamp),
            (HEADER_SIGNATURE, &self.signature),
        ]
    }

    /// Looks a header value up by name, the shape
    /// [`Verifier::verify_with`](crate::Verifier::verify_with) expects.
    ///
    /// Names compare ASCII case-insensitively, as HTTP header names do.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs()
            .into_iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }
}

impl SecretSet {
    /// Signs one message with every secret in the set and returns the
    /// space-separated `webhook-signature` value.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        self.secrets()
            .iter()
            .map(|secret| sign(secret, msg_id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Computes all three headers for one delivery.
    ///
    /// The caller chooses the id and time: a retry must reuse the message's
    /// id, while the timestamp should be the time of this attempt so that the
    /// receiver's freshness check passes.
    pub fn headers(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> WebhookHeaders {
        WebhookHeaders {
            id: msg_id.to_owned(),
            timestamp: timestamp.to_string(),
            signature: self.sign(msg_id, timestamp, body),
        }
    }
}
