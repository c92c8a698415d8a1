//! The header-facing API: names, the lookup closure, tolerance settings and
//! message ids.

use std::collections::HashSet;
use std::time::Duration;

use signing::{
    DEFAULT_TOLERANCE, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SecretSet, VerifyError,
    new_message_id,
};

use crate::{BODY_1, ID_1, SECRET_1, SIG_1, TS_1, secret, verifier};

#[test]
fn header_names_are_the_specified_lowercase_names() {
    assert_eq!(HEADER_ID, "webhook-id");
    assert_eq!(HEADER_TIMESTAMP, "webhook-timestamp");
    assert_eq!(HEADER_SIGNATURE, "webhook-signature");
}

#[test]
fn headers_match_the_published_vector() {
    let headers = SecretSet::from(secret(SECRET_1)).headers(ID_1, TS_1, BODY_1);
    assert_eq!(
        headers.pairs(),
        [
            (HEADER_ID, ID_1),
            (HEADER_TIMESTAMP, "1614265330"),
            (HEADER_SIGNATURE, SIG_1)
        ]
    );
    assert_eq!(headers.get("Webhook-Signature"), Some(SIG_1));
    assert_eq!(headers.get("webhook-other"), None);
}

#[test]
fn verify_with_reads_a_foreign_header_map() {
    // Stands in for an HTTP header map: mixed-case keys, looked up
    // case-insensitively, values borrowed from the map.
    let map: Vec<(String, String)> = vec![
        ("Webhook-Id".into(), ID_1.into()),
        ("Webhook-Timestamp".into(), TS_1.to_string()),
        ("Webhook-Signature".into(), SIG_1.into()),
        ("Content-Type".into(), "application/json".into()),
    ];
    let lookup = |name: &str| {
        map.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    let v = verifier(SECRET_1);
    v.verify_with(lookup, BODY_1, TS_1).unwrap();

    let mut asked = Vec::new();
    let result = v.verify_with(
        |name| {
            asked.push(name);
            (name != HEADER_TIMESTAMP).then(|| lookup(name)).flatten()
        },
        BODY_1,
        TS_1,
    );
    assert_eq!(result, Err(VerifyError::MissingHeader(HEADER_TIMESTAMP)));
    assert_eq!(asked, [HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE]);
}

#[test]
fn verify_with_accepts_webhook_headers_lookup() {
    let headers = SecretSet::from(secret(SECRET_1)).headers(ID_1, TS_1, BODY_1);
    verifier(SECRET_1)
        .verify_with(|name| headers.get(name), BODY_1, TS_1)
        .unwrap();
}

#[test]
fn default_tolerance_is_five_minutes() {
    assert_eq!(DEFAULT_TOLERANCE, Duration::from_secs(300));
    assert_eq!(verifier(SECRET_1).tolerance(), DEFAULT_TOLERANCE);
}

#[test]
fn custom_tolerance_is_applied() {
    let v = verifier(SECRET_1).with_tolerance(Duration::from_secs(10));
    assert_eq!(v.tolerance(), Duration::from_secs(10));
    let s = SecretSet::from(secret(SECRET_1));
    for (offset, ok) in [(10, true), (-10, true), (11, false), (-11, false)] {
        let headers = s.headers(ID_1, TS_1 + offset, BODY_1);
        let result = v.verify_headers(&headers, BODY_1, TS_1);
        let expected = if ok {
            Ok(())
        } else {
            Err(VerifyError::TimestampOutOfTolerance)
        };
        assert_eq!(result, expected, "offset {offset}");
    }
    // Fractions of a second are ignored since timestamps are whole seconds.
    let v = verifier(SECRET_1).with_tolerance(Duration::from_millis(1999));
    assert!(
        v.verify_headers(&s.headers(ID_1, TS_1 + 1, BODY_1), BODY_1, TS_1)
            .is_ok()
    );
    assert!(
        v.verify_headers(&s.headers(ID_1, TS_1 + 2, BODY_1), BODY_1, TS_1)
            .is_err()
    );
}

#[test]
fn zero_tolerance_needs_the_exact_second() {
    let v = verifier(SECRET_1).with_tolerance(Duration::ZERO);
    let headers = SecretSet::from(secret(SECRET_1)).headers(ID_1, TS_1, BODY_1);
    v.verify_headers(&headers, BODY_1, TS_1).unwrap();
    assert_eq!(
        v.verify_headers(&headers, BODY_1, TS_1 + 1),
        Err(VerifyError::TimestampOutOfTolerance)
    );
}

#[test]
fn error_messages_name_the_header() {
    assert_eq!(
        VerifyError::MissingHeader(HEADER_ID).to_string(),
        "missing header webhook-id"
    );
    assert!(
        VerifyError::BadTimestamp
            .to_string()
            .contains(HEADER_TIMESTAMP)
    );
    assert!(
        VerifyError::NoSignature
            .to_string()
            .contains(HEADER_SIGNATURE)
    );
}

#[test]
fn message_ids_have_the_documented_shape() {
    let ids: HashSet<String> = (0..200).map(|_| new_message_id()).collect();
    assert_eq!(ids.len(), 200, "ids must not repeat");
    for id in &ids {
        let random = id.strip_prefix("msg_").unwrap();
        assert_eq!(random.len(), 27, "{id}");
        assert!(random.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
    }
}
