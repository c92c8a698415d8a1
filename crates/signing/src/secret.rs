//! Endpoint secrets: parsing, generation and the rotation set.
//!
//! A secret is shown to people and stored in configuration as `whsec_` followed
//! by the base64 of the key bytes, the form every Standard Webhooks library
//! accepts. Keeping the key in its own type means it can only leave the process
//! through [`Secret::expose`]; logging a struct that holds one prints
//! `[redacted]` instead.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rand::Rng as _;
use subtle::ConstantTimeEq as _;

/// The text every serialized secret starts with.
///
/// The prefix makes a leaked secret recognisable to secret scanners and keeps
/// it from being confused with other base64 configuration values.
pub const SECRET_PREFIX: &str = "whsec_";

/// Fewest key bytes accepted.
///
/// 24 bytes (192 bits) is the size of the keys in the specification's own
/// examples; anything shorter is too weak to be worth accepting silently.
pub const MIN_KEY_LEN: usize = 24;

/// Most key bytes accepted.
///
/// HMAC-SHA256 hashes keys longer than its 64-byte block down to 32 bytes, so
/// longer keys add nothing and more likely point at a pasting mistake.
pub const MAX_KEY_LEN: usize = 64;

/// Size of the keys made by [`Secret::generate`], matching SHA-256's output.
const GENERATED_KEY_LEN: usize = 32;

/// Standard-alphabet base64 that encodes with padding but decodes with or
/// without it.
///
/// Other libraries and hand-written configs disagree on padding, and both
/// forms name the same key; trailing bits must still be zero so that each key
/// has exactly one accepted spelling per padding style.
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a `whsec_…` string could not be turned into a [`Secret`].
///
/// No variant carries any part of the input, so an error can be logged
/// without leaking the key it was about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The input was the empty string, usually an unset configuration value.
    #[error("webhook secret is empty")]
    Empty,
    /// The input did not start with `whsec_`.
    ///
    /// Some libraries also accept bare base64; we do not, so that a value from
    /// the wrong configuration field is caught instead of used as a key.
    #[error("webhook secret must start with \"{SECRET_PREFIX}\"")]
    MissingPrefix,
    /// The text after the prefix was not standard base64.
    #[error("webhook secret is not valid base64 after the \"{SECRET_PREFIX}\" prefix")]
    BadBase64,
    /// The decoded key was shorter than [`MIN_KEY_LEN`] or longer than
    /// [`MAX_KEY_LEN`] bytes.
    #[error("webhook secret decodes to {len} bytes, expected {MIN_KEY_LEN} to {MAX_KEY_LEN}")]
    BadLength {
        /// How many bytes the base64 decoded to.
        len: usize,
    },
}

/// An HMAC key shared between us and one webhook endpoint.
///
/// Equality is checked in constant time, and both `Debug` and `Display` print
/// `[redacted]`, because a secret tends to end up inside structs that get
/// logged or compared in request paths.
#[derive(Clone)]
pub struct Secret {
    key: Vec<u8>,
}

impl Secret {
    /// Parses the `whsec_<base64>` form, padded or not.
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        if text.is_empty() {
            return Err(SecretError::Empty);
        }
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = BASE64.decode(encoded).map_err(|_| SecretError::BadBase64)?;
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
            return Err(SecretError::BadLength { len: key.len() });
        }
        Ok(Secret { key })
    }

    /// Makes a fresh 32-byte key for a new endpoint.
    ///
    /// The bytes come from rand's thread-local generator, a CSPRNG seeded from
    /// the operating system, so secrets are unpredictable without a syscall
    /// per call.
    pub fn generate() -> Secret {
        let mut key = [0u8; GENERATED_KEY_LEN];
        rand::rng().fill(&mut key);
        Secret { key: key.to_vec() }
    }

    /// Returns the padded `whsec_<base64>` text of the key.
    ///
    /// This is deliberately the only way to see a secret, so that each place
    /// that reveals one (showing it to an endpoint owner once, a setup script)
    /// is easy to find in review.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(&self.key))
    }

    /// The raw HMAC key, for the signing code in this crate only.
    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }
}

impl FromStr for Secret {
    type Err = SecretError;

    fn from_str(text: &str) -> Result<Secret, SecretError> {
        Secret::parse(text)
    }
}

impl PartialEq for Secret {
    /// Compares keys in constant time so that comparing a submitted secret
    /// against a stored one does not leak how many leading bytes matched.
    fn eq(&self, other: &Secret) -> bool {
        self.key.ct_eq(&other.key).into()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why a list of secrets could not be turned into a [`SecretSet`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretSetError {
    /// There were no secrets at all; a set must hold at least one to sign.
    #[error("no webhook secrets given")]
    Empty,
    /// One entry of the comma-separated list was not a valid secret.
    #[error("webhook secret #{position} in the list is invalid: {reason}")]
    Entry {
        /// 1-based position in the list, as a person counting entries would
        /// say it.
        position: usize,
        /// What was wrong with that entry.
        reason: SecretError,
    },
}

/// The non-empty set of secrets that are valid for one endpoint at once.
///
/// Holding several makes rotation painless: the sender signs with all of them,
/// and a receiver that knows either the old or the new secret accepts the
/// message, so the two sides can switch over at different times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSet(Vec<Secret>);

impl SecretSet {
    /// Builds a set from already parsed secrets, refusing an empty list.
    pub fn new(secrets: Vec<Secret>) -> Result<SecretSet, SecretSetError> {
        if secrets.is_empty() {
            return Err(SecretSetError::Empty);
        }
        Ok(SecretSet(secrets))
    }

    /// Parses a comma-separated list such as `whsec_new, whsec_old`.
    ///
    /// Spaces around entries are trimmed, but an empty entry (a doubled or
    /// trailing comma) is an error rather than skipped: it usually means a
    /// secret went missing from the configuration.
    pub fn parse_list(text: &str) -> Result<SecretSet, SecretSetError> {
        if text.trim().is_empty() {
            return Err(SecretSetError::Empty);
        }
        text.split(',')
            .enumerate()
            .map(|(index, entry)| {
                Secret::parse(entry.trim()).map_err(|reason| SecretSetError::Entry {
                    position: index + 1,
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(SecretSet)
    }

    /// The secrets in the order they were given; never empty.
    pub fn secrets(&self) -> &[Secret] {
        &self.0
    }
}

impl From<Secret> for SecretSet {
    /// A single secret is the usual case outside a rotation window.
    fn from(secret: Secret) -> SecretSet {
        SecretSet(vec![secret])
    }
}

impl FromStr for SecretSet {
    type Err = SecretSetError;

    fn from_str(text: &str) -> Result<SecretSet, SecretSetError> {
        SecretSet::parse_list(text)
    }
}
