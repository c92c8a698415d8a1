//! The receivers of the README (`docs/examples/receiver.py` and
//! `receiver.mjs`), each run as a real HTTP server against a real worker's
//! deliveries: they verify them with the official `standardwebhooks`
//! library and validate them against the published JSON Schema, and refuse
//! a tampered or invalid one.
//!
//! The Python one runs when `STANDARDWEBHOOKS_PYTHON` names an interpreter
//! with `standardwebhooks` and `jsonschema` (scripts/test sets it up), and
//! is skipped otherwise unless `REQUIRE_INTEROP=1` makes that a failure.
//! The Node one runs when `RECEIVER_NODE_DIR` names a directory whose
//! `node_modules` has `standardwebhooks` and `ajv` (scripts/test installs
//! them when npm can), and is skipped otherwise unless
//! `REQUIRE_NODE_RECEIVER=1`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use signing::SecretSet;
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::helpers::{SECRET, StoreKind, job, spawn_app};

fn python() -> Option<PathBuf> {
    match std::env::var_os("STANDARDWEBHOOKS_PYTHON") {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            assert!(
                std::env::var("REQUIRE_INTEROP").as_deref() != Ok("1"),
                "REQUIRE_INTEROP=1 but STANDARDWEBHOOKS_PYTHON is not set"
            );
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED the Python receiver example: STANDARDWEBHOOKS_PYTHON is not set"
            );
            None
        }
    }
}

/// The example, started on a free port with the tests' secret.
struct ExampleReceiver {
    url: String,
    lines: Lines<BufReader<ChildStdout>>,
    _child: Child,
}

/// The repository's `docs/`.
fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

impl ExampleReceiver {
    /// Runs `program script 0` (port 0: any free port, which it prints).
    async fn start(program: &Path, script: &Path) -> ExampleReceiver {
        let mut child = Command::new(program)
            .arg(script)
            .arg("0")
            .env("WEBHOOK_SECRET", SECRET)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = next_line(&mut lines).await;
        ExampleReceiver {
            url: first["listening"].as_str().unwrap().to_owned(),
            lines,
            _child: child,
        }
    }

    async fn next(&mut self) -> Value {
        next_line(&mut self.lines).await
    }
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the receiver prints a line in time")
        .unwrap()
        .expect("the receiver is running");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// Posts `body` to the example, signed now under `id` with `secret`.
async fn post_signed(url: &str, secret: &str, id: &str, body: &[u8]) -> (u16, Value) {
    let secrets = SecretSet::parse_list(secret).unwrap();
    let headers = secrets.headers(id, chrono::Utc::now().timestamp(), body);
    post_with(
        url,
        headers.pairs().map(|(k, v)| (k, v.to_owned())).to_vec(),
        body,
    )
    .await
}

async fn post_with(url: &str, headers: Vec<(&str, String)>, body: &[u8]) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn the_python_receiver_example_verifies_and_validates_real_deliveries() {
    let Some(python) = python() else { return };
    let receiver = ExampleReceiver::start(&python, &docs().join("examples/receiver.py")).await;
    exercise(receiver).await;
}

#[tokio::test]
async fn the_node_receiver_example_verifies_and_validates_real_deliveries() {
    let dir = match std::env::var_os("RECEIVER_NODE_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            assert!(
                std::env::var("REQUIRE_NODE_RECEIVER").as_deref() != Ok("1"),
                "REQUIRE_NODE_RECEIVER=1 but RECEIVER_NODE_DIR is not set"
            );
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED the Node receiver example: RECEIVER_NODE_DIR is not set"
            );
            return;
        }
    };
    // The example as a user lays it out (docs/examples/receiver.mjs beside
    // docs/webhook-payload.schema.json), under the directory whose
    // node_modules Node finds by walking up.
    let run = tempfile::tempdir_in(&dir).unwrap();
    std::fs::create_dir_all(run.path().join("docs/examples")).unwrap();
    for file in ["examples/receiver.mjs", "webhook-payload.schema.json"] {
        std::fs::copy(docs().join(file), run.path().join("docs").join(file)).unwrap();
    }
    let receiver = ExampleReceiver::start(
        Path::new("node"),
        &run.path().join("docs/examples/receiver.mjs"),
    )
    .await;
    exercise(receiver).await;
}

/// Real deliveries, a replay, a duplicate, tampered and invalid bodies.
async fn exercise(mut receiver: ExampleReceiver) {
    let app = spawn_app(StoreKind::Sqlite, |_| {}).await;

    // A real job's real deliveries, signed by the worker.
    let job_id = app.submit_ok(job("sim://example", &receiver.url, 2)).await;
    let mut got = Vec::new();
    loop {
        let line = receiver.next().await;
        let done = line["event"] == "job.completed";
        got.push(line);
        if done {
            break;
        }
    }
    // In order, from 1 (a progress event a newer one overtook may have been
    // superseded, never sent: sequences may skip, never go back).
    assert_eq!(got[0]["event"], "job.started");
    assert_eq!(got[0]["sequence"], 1);
    for pair in got.windows(2) {
        assert!(
            pair[0]["sequence"].as_u64() < pair[1]["sequence"].as_u64(),
            "{got:#?}"
        );
    }
    for line in &got {
        assert_eq!(line["job_id"], job_id.as_str());
        assert_eq!(line["stale"], false);
    }
    let ledger = app
        .wait_for_ledger(&job_id, Duration::from_secs(10), |list| {
            list.iter()
                .all(|d| d["status"] == "delivered" || d["status"] == "superseded")
        })
        .await;
    let delivered: Vec<_> = ledger
        .iter()
        .filter(|d| d["status"] == "delivered")
        .collect();
    assert_eq!(delivered.len(), got.len(), "{ledger:#?}");
    for delivery in delivered {
        assert_eq!(delivery["attempts"][0]["status_code"], 200, "{delivery:#}");
    }

    // A body the worker sent, replayed with a fresh id: accepted. The same
    // id again: a duplicate.
    let view = app.get_job(&job_id).await.json::<Value>().await.unwrap();
    let payload = json!({
        "event": "job.progress", "timestamp": "2025-01-15T10:31:00Z", "job_id": job_id,
        "status": "rendering", "progress_percent": 60, "current_step": "Rendering clip 1",
        "sequence": 3
    });
    assert_eq!(view["status"], "completed");
    let body = serde_json::to_vec(&payload).unwrap();
    let (status, answer) = post_signed(&receiver.url, SECRET, "msg_example_1", &body).await;
    assert_eq!((status, &answer), (200, &json!({"received": true})));
    assert_eq!(
        receiver.next().await["stale"],
        true,
        "sequence 3 is old news"
    );
    let (status, answer) = post_signed(&receiver.url, SECRET, "msg_example_1", &body).await;
    assert_eq!(status, 200);
    assert_eq!(answer["duplicate"], true);

    // Tampered: one byte of the body changed after signing.
    let secrets = SecretSet::parse_list(SECRET).unwrap();
    let headers = secrets.headers("msg_example_2", chrono::Utc::now().timestamp(), &body);
    let tampered = String::from_utf8(body.clone()).unwrap().replace("60", "61");
    let (status, _) = post_with(
        &receiver.url,
        headers.pairs().map(|(k, v)| (k, v.to_owned())).to_vec(),
        tampered.as_bytes(),
    )
    .await;
    assert_eq!(status, 401);
    // Signed with another secret.
    let other = "whsec_c2VjcmV0LW9mLXNvbWVvbmUtZWxzZS0xMjM0NQ==";
    let (status, _) = post_signed(&receiver.url, other, "msg_example_3", &body).await;
    assert_eq!(status, 401);

    // Correctly signed, but not what the schema allows.
    for (name, bad) in [
        ("progress over 100", json!({"progress_percent": 150})),
        (
            "completed without output",
            json!({"event": "job.completed", "status": "completed", "progress_percent": 100}),
        ),
        ("no sequence", json!({"sequence": null})),
        (
            "a timestamp not in UTC",
            json!({"timestamp": "2025-01-15T10:31:00+01:00"}),
        ),
    ] {
        let mut payload = payload.clone();
        for (k, v) in bad.as_object().unwrap() {
            if v.is_null() {
                payload.as_object_mut().unwrap().remove(k);
            } else {
                payload[k] = v.clone();
            }
        }
        let body = serde_json::to_vec(&payload).unwrap();
        let id = format!("msg_bad_{}", name.replace(' ', "_"));
        let (status, answer) = post_signed(&receiver.url, SECRET, &id, &body).await;
        assert_eq!(status, 422, "{name}: {answer}");
    }
    app.stop().await;
}
