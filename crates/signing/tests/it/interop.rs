//! Interoperability with the official Python `standardwebhooks` package.
//!
//! The test runs only when `STANDARDWEBHOOKS_PYTHON` names an interpreter with
//! the package installed; otherwise it says it was skipped. CI sets
//! `REQUIRE_INTEROP=1`, which turns a missing interpreter into a failure so
//! the check cannot silently stop running.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use signing::{
    HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, Secret, SecretSet, Verifier, VerifyError,
    new_message_id,
};

use crate::{BODY_1, ID_1, SECRET_1, SIG_1, TS_1};

/// The reference version `scripts/test` installs; the test checks it is the
/// one it talks to, so an upgrade is a deliberate change of both.
const PINNED_VERSION: &str = "1.1.0";

/// The helper script, committed next to the tests.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop.py");

/// A body with JSON punctuation and non-ASCII text, since the signed content
/// must agree byte for byte on both sides.
const BODY: &str =
    r#"{"type":"invoice.paid","note":"Grüße, naïve café ✓","amount":1299,"tags":["a b","c.d"]}"#;

/// The interpreter to use, or `None` after announcing the skip.
fn python() -> Option<PathBuf> {
    match std::env::var_os("STANDARDWEBHOOKS_PYTHON") {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            assert!(
                std::env::var("REQUIRE_INTEROP").as_deref() != Ok("1"),
                "REQUIRE_INTEROP=1 but STANDARDWEBHOOKS_PYTHON is not set; point it at a python \
                 with `standardwebhooks==1.1.0` installed (as scripts/test sets up)"
            );
            // Written to the real stderr rather than through `eprintln!`, which
            // the test harness captures, so the skip shows in normal output.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED interop_python_standardwebhooks: STANDARDWEBHOOKS_PYTHON is not set"
            );
            None
        }
    }
}

/// Sends one request to the script and returns its reply.
fn run(python: &PathBuf, request: &Value) -> Value {
    let mut child = Command::new(python)
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {}: {err}", python.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "interop.py failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn python_verifies(
    python: &PathBuf,
    secret: &Secret,
    body: &str,
    pairs: [(&str, &str); 3],
) -> Value {
    let headers: serde_json::Map<String, Value> = pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    run(
        python,
        &json!({"op": "verify", "secret": secret.expose(), "body": body, "headers": headers}),
    )
}

fn python_signs(
    python: &PathBuf,
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &str,
) -> String {
    let reply = run(
        python,
        &json!({"op": "sign", "secret": secret, "msg_id": msg_id, "timestamp": timestamp, "body": body}),
    );
    reply["signature"].as_str().unwrap().to_owned()
}

#[test]
fn interop_python_standardwebhooks() {
    let Some(python) = python() else { return };

    // Python checks the timestamp against its own clock, so sign with ours.
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let secret = Secret::generate();
    let id = new_message_id();

    // (a) Rust signs, Python verifies.
    let headers = SecretSet::from(secret.clone()).headers(&id, now, BODY.as_bytes());
    let reply = python_verifies(&python, &secret, BODY, headers.pairs());
    assert_eq!(
        reply["ok"],
        json!(true),
        "python rejected a Rust signature: {reply}"
    );
    assert_eq!(
        reply["version"], PINNED_VERSION,
        "the python standardwebhooks found is not the pinned one"
    );
    let _ = writeln!(
        std::io::stderr(),
        "interop: checked against python standardwebhooks {PINNED_VERSION}"
    );

    let tampered = BODY.replace("1299", "1300");
    let reply = python_verifies(&python, &secret, &tampered, headers.pairs());
    assert_eq!(
        reply["ok"],
        json!(false),
        "python accepted a tampered body: {reply}"
    );

    // A rotation header, where the secret Python knows signed second.
    let rotating = SecretSet::new(vec![Secret::generate(), secret.clone()]).unwrap();
    let headers = rotating.headers(&id, now, BODY.as_bytes());
    assert_eq!(headers.signature.split(' ').count(), 2);
    let reply = python_verifies(&python, &secret, BODY, headers.pairs());
    assert_eq!(
        reply["ok"],
        json!(true),
        "python rejected a rotation header: {reply}"
    );

    // (b) Python signs, Rust verifies, including Python's padded key text.
    let signature = python_signs(&python, &secret.expose(), &id, now, BODY);
    let ts = now.to_string();
    let verifier = Verifier::new(secret.clone());
    verifier
        .verify(Some(&id), Some(&ts), Some(&signature), BODY.as_bytes(), now)
        .unwrap();
    assert_eq!(signature, signing::sign(&secret, &id, now, BODY.as_bytes()));
    assert_eq!(
        verifier.verify(
            Some(&id),
            Some(&ts),
            Some(&signature),
            tampered.as_bytes(),
            now
        ),
        Err(VerifyError::NoMatchingSignature)
    );
    let lookup = |name: &str| match name {
        HEADER_ID => Some(id.as_str()),
        HEADER_TIMESTAMP => Some(ts.as_str()),
        HEADER_SIGNATURE => Some(signature.as_str()),
        _ => None,
    };
    verifier.verify_with(lookup, BODY.as_bytes(), now).unwrap();

    // Python agrees with the published vector too, so the two sides cannot
    // merely share a mistake.
    let body_1 = std::str::from_utf8(BODY_1).unwrap();
    assert_eq!(python_signs(&python, SECRET_1, ID_1, TS_1, body_1), SIG_1);
}
