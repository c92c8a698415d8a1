//! Properties over random keys, ids, timestamps and bodies.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use signing::{Secret, SecretSet, Verifier, VerifyError};

/// A secret built from proptest's bytes, so failures shrink and replay.
fn arb_secret() -> impl Strategy<Value = Secret> {
    vec(any::<u8>(), 24..=64)
        .prop_map(|key| Secret::parse(&format!("whsec_{}", STANDARD.encode(key))).unwrap())
}

/// Timestamps over several thousand years either side of the epoch, far
/// enough from the `i64` limits that the tolerance window fits.
fn arb_timestamp() -> impl Strategy<Value = i64> {
    -100_000_000_000i64..100_000_000_000
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn sign_then_verify_passes(
        secret in arb_secret(),
        id in "\\PC{1,40}",
        ts in arb_timestamp(),
        skew in -300i64..=300,
        body in vec(any::<u8>(), 0..512),
    ) {
        let headers = SecretSet::from(secret.clone()).headers(&id, ts, &body);
        prop_assert_eq!(Verifier::new(secret).verify_headers(&headers, &body, ts + skew), Ok(()));
    }

    #[test]
    fn flipping_any_body_byte_fails(
        secret in arb_secret(),
        id in "\\PC{1,40}",
        ts in arb_timestamp(),
        body in vec(any::<u8>(), 1..512),
        at in any::<Index>(),
        mask in 1u8..=255,
    ) {
        let headers = SecretSet::from(secret.clone()).headers(&id, ts, &body);
        let mut tampered = body.clone();
        tampered[at.index(body.len())] ^= mask;
        prop_assert_eq!(
            Verifier::new(secret).verify_headers(&headers, &tampered, ts),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn changing_the_id_fails(
        secret in arb_secret(),
        id in "\\PC{1,40}",
        suffix in "\\PC{1,5}",
        ts in arb_timestamp(),
        body in vec(any::<u8>(), 0..64),
    ) {
        let mut headers = SecretSet::from(secret.clone()).headers(&id, ts, &body);
        headers.id.push_str(&suffix);
        prop_assert_eq!(
            Verifier::new(secret).verify_headers(&headers, &body, ts),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn arbitrary_signature_headers_never_pass_or_panic(
        secret in arb_secret(),
        header in "\\PC{0,200}",
    ) {
        let result = Verifier::new(secret).verify(Some("msg_x"), Some("1"), Some(&header), b"body", 1);
        prop_assert!(matches!(result, Err(VerifyError::NoSignature | VerifyError::NoMatchingSignature)));
    }
}
