//! The specification's published vectors and the cases exercised by the
//! official libraries' test suites (Python `test_webhooks.py`, JavaScript
//! `webhook.test.ts`, Go `webhook_test.go`, Rust `lib.rs`), restated against
//! this crate's API and error variants.

use signing::{
    HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, Secret, SecretError, VerifyError, sign,
};

use crate::{
    BODY_1, BODY_2, ID_1, ID_2, SECRET_1, SECRET_2, SIG_1, SIG_2, TS_1, TS_2, secret, verifier,
};

/// Unrelated but well-formed MACs that the official suites put around the
/// valid entry in their multi-signature cases.
const DECOY_A: &str = "Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
const DECOY_B: &str = "tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ=";
const DECOY_C: &str = "Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q=";
const DECOY_D: &str = "9DfC1c3eeOrXB6w/5dIDydLNQaEyww5KalE5jLBZucE=";

/// Verifies vector 1's id and body at its own timestamp with the given
/// signature header.
fn check_1(signature: &str) -> Result<(), VerifyError> {
    verifier(SECRET_1).verify(
        Some(ID_1),
        Some(&TS_1.to_string()),
        Some(signature),
        BODY_1,
        TS_1,
    )
}

#[test]
fn sign_matches_published_vector_1() {
    assert_eq!(sign(&secret(SECRET_1), ID_1, TS_1, BODY_1), SIG_1);
}

#[test]
fn sign_matches_published_vector_2() {
    assert_eq!(sign(&secret(SECRET_2), ID_2, TS_2, BODY_2), SIG_2);
}

#[test]
fn published_vectors_verify() {
    check_1(SIG_1).unwrap();
    verifier(SECRET_2)
        .verify(
            Some(ID_2),
            Some(&TS_2.to_string()),
            Some(SIG_2),
            BODY_2,
            TS_2,
        )
        .unwrap();
}

#[test]
fn vector_does_not_verify_under_the_other_secret() {
    let result = verifier(SECRET_2).verify(
        Some(ID_1),
        Some(&TS_1.to_string()),
        Some(SIG_1),
        BODY_1,
        TS_1,
    );
    assert_eq!(result, Err(VerifyError::NoMatchingSignature));
}

#[test]
fn missing_headers_are_named() {
    let ts = TS_1.to_string();
    let v = verifier(SECRET_1);
    assert_eq!(
        v.verify(None, Some(&ts), Some(SIG_1), BODY_1, TS_1),
        Err(VerifyError::MissingHeader(HEADER_ID))
    );
    assert_eq!(
        v.verify(Some(ID_1), None, Some(SIG_1), BODY_1, TS_1),
        Err(VerifyError::MissingHeader(HEADER_TIMESTAMP))
    );
    assert_eq!(
        v.verify(Some(ID_1), Some(&ts), None, BODY_1, TS_1),
        Err(VerifyError::MissingHeader(HEADER_SIGNATURE))
    );
}

#[test]
fn empty_id_is_rejected() {
    let v = verifier(SECRET_1);
    let ts = TS_1.to_string();
    // Sign over the empty id so only the emptiness rule can reject it.
    let sig = sign(&secret(SECRET_1), "", TS_1, BODY_1);
    assert_eq!(
        v.verify(Some(""), Some(&ts), Some(&sig), BODY_1, TS_1),
        Err(VerifyError::EmptyId)
    );
}

#[test]
fn non_integer_timestamps_are_rejected() {
    let v = verifier(SECRET_1);
    for ts in [
        "hello",
        "",
        " 1614265330",
        "1614265330 ",
        "+1614265330",
        "1614265330.0",
        "1e9",
        "99999999999999999999",
    ] {
        assert_eq!(
            v.verify(Some(ID_1), Some(ts), Some(SIG_1), BODY_1, TS_1),
            Err(VerifyError::BadTimestamp),
            "timestamp {ts:?}"
        );
    }
}

#[test]
fn invalid_signature_is_rejected() {
    // The published MAC with its last significant character changed.
    assert_eq!(
        check_1("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="),
        Err(VerifyError::NoMatchingSignature)
    );
    assert_eq!(
        check_1(&format!("v1,{DECOY_A}")),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn malformed_or_partial_signature_is_rejected() {
    // Too short to be a MAC, a truncated header, an empty MAC, nothing at all.
    for header in [
        "v1,dawfeoifkpqwoekfpqoekf",
        &SIG_1[..8],
        "v1,",
        "",
        "   ",
        "v1",
        "nonsense",
    ] {
        assert_eq!(
            check_1(header),
            Err(VerifyError::NoSignature),
            "header {header:?}"
        );
    }
}

#[test]
fn valid_signature_among_decoys_passes() {
    check_1(&format!("v1,{DECOY_A} v2,{DECOY_A} {SIG_1} v1,{DECOY_A}")).unwrap();
    check_1(&format!("v1,{DECOY_B} v1,{DECOY_C} {SIG_1} v1,{DECOY_D}")).unwrap();
    check_1(&format!("v1,{DECOY_B} {SIG_1}")).unwrap();
    check_1(&format!("v2,{DECOY_A} {SIG_1}")).unwrap();
}

#[test]
fn only_decoys_do_not_pass() {
    assert_eq!(
        check_1(&format!("v1,{DECOY_B} v1,{DECOY_C} v1,{DECOY_D}")),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn correct_mac_under_another_version_is_ignored() {
    let mac = SIG_1.strip_prefix("v1,").unwrap();
    for version in ["v2", "v1a", "V1", "v10", ""] {
        assert_eq!(
            check_1(&format!("{version},{mac}")),
            Err(VerifyError::NoSignature),
            "version {version:?}"
        );
    }
    check_1(&format!("v2,{mac} {SIG_1}")).unwrap();
}

#[test]
fn malformed_entries_do_not_hide_a_good_one() {
    check_1(&format!("garbage v1 v1,!!!! v1,{DECOY_A}== {SIG_1}")).unwrap();
    check_1(&format!("  {SIG_1}  ")).unwrap();
}

#[test]
fn unpadded_mac_is_accepted() {
    check_1(SIG_1.trim_end_matches('=')).unwrap();
}

#[test]
fn secret_must_carry_the_prefix() {
    // The official libraries accept the bare base64 as well; this crate
    // refuses it on purpose so a value from the wrong setting is caught.
    let bare = SECRET_1.strip_prefix("whsec_").unwrap();
    assert_eq!(Secret::parse(bare), Err(SecretError::MissingPrefix));
    check_1(SIG_1).unwrap();
}

#[test]
fn timestamp_tolerance_is_inclusive_both_ways() {
    let v = verifier(SECRET_1);
    let s = secret(SECRET_1);
    let now = TS_1;
    for offset in [-300, -299, -1, 0, 1, 299, 300] {
        let ts = now + offset;
        let sig = sign(&s, ID_1, ts, BODY_1);
        assert_eq!(
            v.verify(Some(ID_1), Some(&ts.to_string()), Some(&sig), BODY_1, now),
            Ok(()),
            "offset {offset}"
        );
    }
    for offset in [-301, 301, -100_000, 100_000, i64::from(i32::MIN)] {
        let ts = now + offset;
        let sig = sign(&s, ID_1, ts, BODY_1);
        assert_eq!(
            v.verify(Some(ID_1), Some(&ts.to_string()), Some(&sig), BODY_1, now),
            Err(VerifyError::TimestampOutOfTolerance),
            "offset {offset}"
        );
    }
}

#[test]
fn extreme_timestamps_do_not_overflow() {
    let v = verifier(SECRET_1);
    for (ts, now) in [(i64::MIN, i64::MAX), (i64::MAX, i64::MIN), (i64::MAX, 0)] {
        assert_eq!(
            v.verify(Some(ID_1), Some(&ts.to_string()), Some(SIG_1), BODY_1, now),
            Err(VerifyError::TimestampOutOfTolerance)
        );
    }
}

#[test]
fn timestamp_header_is_signed() {
    // The MAC for TS_1 must not pass when sent with a different timestamp.
    let ts = (TS_1 + 1).to_string();
    assert_eq!(
        verifier(SECRET_1).verify(Some(ID_1), Some(&ts), Some(SIG_1), BODY_1, TS_1),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn wrong_body_is_rejected() {
    let ts = TS_1.to_string();
    let v = verifier(SECRET_1);
    for body in [
        &br#"{"test": 2432232315}"#[..],
        br#"{"test":2432232314}"#,
        b"",
        br#"{"test": 2432232314} "#,
    ] {
        assert_eq!(
            v.verify(Some(ID_1), Some(&ts), Some(SIG_1), body, TS_1),
            Err(VerifyError::NoMatchingSignature)
        );
    }
}

#[test]
fn wrong_id_is_rejected() {
    let ts = TS_1.to_string();
    assert_eq!(
        verifier(SECRET_1).verify(Some(ID_2), Some(&ts), Some(SIG_1), BODY_1, TS_1),
        Err(VerifyError::NoMatchingSignature)
    );
}
