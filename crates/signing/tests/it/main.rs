//! Integration tests for the `signing` crate, built as one test binary.
//!
//! Each module covers one concern: the specification's published vectors and
//! the official libraries' cases, secret parsing, key rotation, properties
//! over random inputs, the header-facing API, and interoperability with the
//! official Python package.

mod api;
mod interop;
mod props;
mod rotation;
mod secret;
mod vectors;

use signing::{Secret, SecretSet, Verifier};

/// First published vector (used by the Python, JavaScript and Go libraries).
pub const SECRET_1: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const ID_1: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
pub const TS_1: i64 = 1614265330;
pub const BODY_1: &[u8] = br#"{"test": 2432232314}"#;
pub const SIG_1: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

/// Second published vector (used by the Rust library).
pub const SECRET_2: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
pub const ID_2: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
pub const TS_2: i64 = 1649367553;
pub const BODY_2: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
pub const SIG_2: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

/// Parses a secret that the test itself wrote, so failure is a test bug.
pub fn secret(text: &str) -> Secret {
    Secret::parse(text).unwrap()
}

/// A verifier holding just `text`, with the default tolerance.
pub fn verifier(text: &str) -> Verifier {
    Verifier::new(SecretSet::from(secret(text)))
}
