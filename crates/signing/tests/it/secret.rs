//! Parsing, printing and generating secrets, and parsing secret lists.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use signing::{MAX_KEY_LEN, MIN_KEY_LEN, Secret, SecretError, SecretSet, SecretSetError, Verifier};

use crate::{SECRET_1, SECRET_2};

/// Writes `len` bytes as a padded `whsec_` secret.
fn secret_of_len(len: usize) -> String {
    format!("whsec_{}", STANDARD.encode(vec![0xA5; len]))
}

#[test]
fn empty_string_is_its_own_error() {
    assert_eq!(Secret::parse(""), Err(SecretError::Empty));
}

#[test]
fn missing_prefix_is_its_own_error() {
    for text in [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec",
        "WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        " whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ] {
        assert_eq!(
            Secret::parse(text),
            Err(SecretError::MissingPrefix),
            "{text:?}"
        );
    }
}

#[test]
fn bad_base64_is_its_own_error() {
    for text in [
        "whsec_!!!!MfKQ9r8GKYqrTwjUPD8ILPZIo2La",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw ",
        "whsec_MfKQ9r8GKYqrTwjUPD8I LPZIo2LaLaSw",
        // URL-safe alphabet is not the standard one.
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2La-_Sw",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
    ] {
        assert_eq!(Secret::parse(text), Err(SecretError::BadBase64), "{text:?}");
    }
}

#[test]
fn key_length_is_bounded() {
    assert_eq!(
        Secret::parse("whsec_"),
        Err(SecretError::BadLength { len: 0 })
    );
    assert_eq!(
        Secret::parse(&secret_of_len(MIN_KEY_LEN - 1)),
        Err(SecretError::BadLength {
            len: MIN_KEY_LEN - 1
        })
    );
    assert_eq!(
        Secret::parse(&secret_of_len(MAX_KEY_LEN + 1)),
        Err(SecretError::BadLength {
            len: MAX_KEY_LEN + 1
        })
    );
    assert_eq!((MIN_KEY_LEN, MAX_KEY_LEN), (24, 64));
    Secret::parse(&secret_of_len(MIN_KEY_LEN)).unwrap();
    Secret::parse(&secret_of_len(MAX_KEY_LEN)).unwrap();
}

#[test]
fn padded_and_unpadded_forms_are_the_same_key() {
    // 32 bytes need one `=` of padding, 25 bytes need two.
    for len in [25, 32, 40] {
        let key = vec![7u8; len];
        let padded = format!("whsec_{}", STANDARD.encode(&key));
        let unpadded = format!("whsec_{}", STANDARD_NO_PAD.encode(&key));
        assert_ne!(padded, unpadded);
        let a = Secret::parse(&padded).unwrap();
        let b = Secret::parse(&unpadded).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            signing::sign(&a, "msg_1", 1, b"x"),
            signing::sign(&b, "msg_1", 1, b"x")
        );
    }
}

#[test]
fn from_str_matches_parse() {
    assert_eq!(
        SECRET_1.parse::<Secret>().unwrap(),
        Secret::parse(SECRET_1).unwrap()
    );
    assert_eq!("nope".parse::<Secret>(), Err(SecretError::MissingPrefix));
}

#[test]
fn equality_compares_keys() {
    assert_eq!(
        Secret::parse(SECRET_1).unwrap(),
        Secret::parse(SECRET_1).unwrap()
    );
    assert_ne!(
        Secret::parse(SECRET_1).unwrap(),
        Secret::parse(SECRET_2).unwrap()
    );
    assert_ne!(
        Secret::parse(&secret_of_len(32)).unwrap(),
        Secret::parse(&secret_of_len(33)).unwrap()
    );
}

#[test]
fn debug_and_display_are_redacted() {
    let s = Secret::parse(SECRET_1).unwrap();
    let encoded = SECRET_1.strip_prefix("whsec_").unwrap();
    assert_eq!(format!("{s:?}"), "[redacted]");
    assert_eq!(format!("{s}"), "[redacted]");
    assert_eq!(format!("{s:#?}"), "[redacted]");

    // Containers that derive Debug must not leak it either.
    let set = SecretSet::parse_list(&format!("{SECRET_1}, {SECRET_2}")).unwrap();
    let verifier = Verifier::new(set.clone());
    for text in [
        format!("{set:?}"),
        format!("{verifier:?}"),
        format!("{verifier:#?}"),
    ] {
        assert!(text.contains("[redacted]"), "{text}");
        assert!(!text.contains(encoded), "{text}");
        assert!(!text.contains("C2FVsBQIhrscChlQIMV"), "{text}");
    }
}

#[test]
fn errors_do_not_echo_the_input() {
    let bad = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2La!!Sw";
    let err = Secret::parse(bad).unwrap_err();
    assert!(!err.to_string().contains("MfKQ9r8"), "{err}");
    assert!(!format!("{err:?}").contains("MfKQ9r8"), "{err:?}");
}

#[test]
fn expose_round_trips() {
    let s = Secret::parse(SECRET_1).unwrap();
    assert_eq!(s.expose(), SECRET_1);
    let generated = Secret::generate();
    assert_eq!(Secret::parse(&generated.expose()).unwrap(), generated);
}

#[test]
fn generate_makes_distinct_32_byte_keys() {
    let a = Secret::generate();
    let b = Secret::generate();
    assert_ne!(a, b);
    let decoded = STANDARD
        .decode(a.expose().strip_prefix("whsec_").unwrap())
        .unwrap();
    assert_eq!(decoded.len(), 32);
    assert_ne!(decoded, vec![0u8; 32]);
}

#[test]
fn list_is_split_on_commas_and_trimmed() {
    let set = SecretSet::parse_list(&format!("  {SECRET_1} ,{SECRET_2}  ")).unwrap();
    assert_eq!(
        set.secrets(),
        &[
            Secret::parse(SECRET_1).unwrap(),
            Secret::parse(SECRET_2).unwrap()
        ]
    );
    assert_eq!(SecretSet::parse_list(SECRET_1).unwrap().secrets().len(), 1);
    assert_eq!(
        format!("{SECRET_1},{SECRET_2}")
            .parse::<SecretSet>()
            .unwrap(),
        set
    );
}

#[test]
fn empty_list_is_an_error() {
    assert_eq!(SecretSet::parse_list(""), Err(SecretSetError::Empty));
    assert_eq!(SecretSet::parse_list("   "), Err(SecretSetError::Empty));
    assert_eq!(SecretSet::new(Vec::new()), Err(SecretSetError::Empty));
}

#[test]
fn empty_entries_are_errors_not_skipped() {
    let empty_at = |position| SecretSetError::Entry {
        position,
        reason: SecretError::Empty,
    };
    assert_eq!(
        SecretSet::parse_list(&format!("{SECRET_1},,{SECRET_2}")),
        Err(empty_at(2))
    );
    assert_eq!(
        SecretSet::parse_list(&format!("{SECRET_1},")),
        Err(empty_at(2))
    );
    assert_eq!(
        SecretSet::parse_list(&format!(", {SECRET_1}")),
        Err(empty_at(1))
    );
    assert_eq!(SecretSet::parse_list(","), Err(empty_at(1)));
}

#[test]
fn bad_entry_reports_its_position_and_reason() {
    let err =
        SecretSet::parse_list(&format!("{SECRET_1}, {SECRET_2}, whsec_c2hvcnQ=")).unwrap_err();
    assert_eq!(
        err,
        SecretSetError::Entry {
            position: 3,
            reason: SecretError::BadLength { len: 5 },
        }
    );
    let message = err.to_string();
    assert!(
        message.contains("#3") && message.contains("5 bytes"),
        "{message}"
    );
}
