//! Key rotation: a set signs with every secret, a verifier accepts any.

use signing::{Secret, SecretSet, Verifier, VerifyError, sign};

use crate::{SECRET_1, SECRET_2, secret, verifier};

const ID: &str = "msg_rotation";
const TS: i64 = 1_700_000_000;
const BODY: &[u8] = br#"{"type":"rotation.test"}"#;

fn old_and_new() -> SecretSet {
    SecretSet::parse_list(&format!("{SECRET_1},{SECRET_2}")).unwrap()
}

#[test]
fn set_signs_once_per_secret_in_order() {
    let header = old_and_new().sign(ID, TS, BODY);
    let entries: Vec<&str> = header.split(' ').collect();
    assert_eq!(
        entries,
        [
            sign(&secret(SECRET_1), ID, TS, BODY),
            sign(&secret(SECRET_2), ID, TS, BODY)
        ]
    );
    assert!(entries.iter().all(|e| e.starts_with("v1,")));
}

#[test]
fn headers_carry_every_signature() {
    let headers = old_and_new().headers(ID, TS, BODY);
    assert_eq!(headers.id, ID);
    assert_eq!(headers.timestamp, TS.to_string());
    assert_eq!(headers.signature, old_and_new().sign(ID, TS, BODY));
}

#[test]
fn verifier_with_either_secret_accepts() {
    let headers = old_and_new().headers(ID, TS, BODY);
    verifier(SECRET_1)
        .verify_headers(&headers, BODY, TS)
        .unwrap();
    verifier(SECRET_2)
        .verify_headers(&headers, BODY, TS)
        .unwrap();
    Verifier::new(old_and_new())
        .verify_headers(&headers, BODY, TS)
        .unwrap();
}

#[test]
fn verifier_with_both_secrets_accepts_either_sender() {
    let both = Verifier::new(old_and_new());
    for only in [SECRET_1, SECRET_2] {
        let headers = SecretSet::from(secret(only)).headers(ID, TS, BODY);
        both.verify_headers(&headers, BODY, TS).unwrap();
    }
}

#[test]
fn unrelated_secret_is_rejected() {
    let headers = old_and_new().headers(ID, TS, BODY);
    assert_eq!(
        Verifier::new(Secret::generate()).verify_headers(&headers, BODY, TS),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn rotation_does_not_weaken_the_body_check() {
    let headers = old_and_new().headers(ID, TS, BODY);
    assert_eq!(
        Verifier::new(old_and_new()).verify_headers(&headers, b"{}", TS),
        Err(VerifyError::NoMatchingSignature)
    );
}
