//! The OpenAPI document: committed, served, valid, complete, and its
//! examples real.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use webhook_types::{Event, WebhookPayload};

use crate::helpers::{Receiver, StoreKind, job, spawn_app};

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Compares a generated file with its committed copy; with
/// `UPDATE_OPENAPI=1` (what `scripts/openapi` sets) writes it instead.
pub fn check_committed(relative: &str, generated: &str) {
    let path = root().join(relative);
    if std::env::var("UPDATE_OPENAPI").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{relative} is not what the code generates; run scripts/openapi to regenerate it \
         and commit the result"
    );
}

#[test]
fn committed_documents_are_what_the_code_generates() {
    check_committed("docs/openapi/worker.json", worker::openapi::document_json());
    let mut schema =
        serde_json::to_string_pretty(&webhook_types::schema::webhook_payload_json_schema())
            .unwrap();
    schema.push('\n');
    check_committed("docs/webhook-payload.schema.json", &schema);
}

/// The interpreter of the test environment, with `openapi-spec-validator`,
/// or `None` after announcing the skip (`REQUIRE_OPENAPI=1`, set by
/// scripts/test, makes a missing one a failure).
pub fn validator_python() -> Option<PathBuf> {
    match std::env::var_os("OPENAPI_PYTHON") {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            assert!(
                std::env::var("REQUIRE_OPENAPI").as_deref() != Ok("1"),
                "REQUIRE_OPENAPI=1 but OPENAPI_PYTHON is not set; point it at a python with \
                 openapi-spec-validator installed (as scripts/test sets up)"
            );
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED OpenAPI validation: OPENAPI_PYTHON is not set"
            );
            None
        }
    }
}

/// Validates a document with the independent `openapi-spec-validator`.
pub fn validate_with_python(python: &Path, document: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, document).unwrap();
    let output = Command::new(python)
        .args([
            "-c",
            "import sys, json\n\
             from openapi_spec_validator import validate\n\
             from openapi_spec_validator.readers import read_from_filename\n\
             spec, _ = read_from_filename(sys.argv[1])\n\
             assert spec['openapi'].startswith('3.1'), spec['openapi']\n\
             validate(spec)\n\
             print('valid')",
        ])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the document: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_served_document_is_the_committed_one_and_valid() {
    let app = spawn_app(StoreKind::Sqlite, |_| {}).await;
    let r = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let served = r.text().await.unwrap();
    assert_eq!(served, worker::openapi::document_json());
    let committed = std::fs::read_to_string(root().join("docs/openapi/worker.json")).unwrap();
    assert_eq!(served, committed, "run scripts/openapi");
    let document: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    if let Some(python) = validator_python() {
        validate_with_python(&python, &served);
    }
    app.stop().await;
}

#[tokio::test]
async fn the_docs_page_is_bundled_and_reads_the_document() {
    let app = spawn_app(StoreKind::Sqlite, |_| {}).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str| client.get(format!("{}{path}", app.address)).send();

    let r = get("/docs").await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "docs/");

    let r = get("/docs/").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = r.text().await.unwrap();
    assert!(page.contains("swagger-ui"), "{page}");
    // Nothing is loaded from outside: every script and style is relative.
    for attribute in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(
            !page.contains(attribute),
            "the page loads {attribute}…: {page}"
        );
    }

    let r = get("/docs/swagger-initializer.js").await.unwrap();
    assert_eq!(r.status(), 200);
    let init = r.text().await.unwrap();
    assert!(init.contains("\"../openapi.json\""), "{init}");
    assert!(init.contains("\"validatorUrl\": \"none\""), "{init}");

    for file in ["swagger-ui-bundle.js", "swagger-ui.css"] {
        let r = get(&format!("/docs/{file}")).await.unwrap();
        assert_eq!(r.status(), 200, "{file}");
        assert!(
            r.bytes().await.unwrap().len() > 10_000,
            "{file} is the real file"
        );
    }
    let r = get("/docs/no-such-file.js").await.unwrap();
    assert_eq!(r.status(), 404);
    app.stop().await;
}

/// Every operation of the document, with its path parameters filled from a
/// real job, answers as a route of the service (not the fallback). Together
/// with `routes!` registering each route with its description, this is the
/// walk both ways: no route without a description, no description without a
/// route.
#[tokio::test]
async fn every_documented_operation_is_served_and_nothing_else_is_routed() {
    let mut receiver = Receiver::ok().await;
    let app = spawn_app(StoreKind::Sqlite, |_| {}).await;
    let job_id = app
        .submit_ok(job("sim://demo", &receiver.url("/hook"), 1))
        .await;
    receiver
        .until_terminal(&job_id, Duration::from_secs(20))
        .await;
    let ledger = app.webhooks(&job_id).await;
    let delivery_id = ledger["deliveries"][0]["delivery_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let media_key = "clips/openapi/clip_00.mp4";
    let clip = app.data_dir.join("clip.mp4");
    std::fs::write(&clip, b"not really a video").unwrap();
    app.media
        .put_file(media_key, &clip, "video/mp4")
        .await
        .unwrap();

    let document: Value = serde_json::from_str(worker::openapi::document_json()).unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut walked = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, _operation) in item.as_object().unwrap() {
            let url = path
                .replace("{job_id}", &job_id)
                .replace("{delivery_id}", &delivery_id)
                .replace("{key}", media_key)
                .replace("{file}", "swagger-ui.css");
            assert!(!url.contains('{'), "no sample value for {path}");
            let request = match method.as_str() {
                "get" => client.get(format!("{}{url}", app.address)),
                "post" if path == "/ai-clipping/jobs" => client
                    .post(format!("{}{url}", app.address))
                    .json(&job("sim://walk", &receiver.url("/hook"), 1)),
                "post" => client.post(format!("{}{url}", app.address)),
                other => panic!("{other} {path}: a method the walk does not know"),
            };
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            assert!(
                (200..400).contains(&status),
                "{method} {path} answered {status}: {}",
                r.text().await.unwrap_or_default()
            );
            walked.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    assert_eq!(
        walked,
        [
            "GET /ai-clipping/jobs/{job_id}",
            "GET /ai-clipping/jobs/{job_id}/webhooks",
            "GET /docs",
            "GET /docs/",
            "GET /docs/{file}",
            "GET /healthz",
            "GET /media/{key}",
            "GET /metrics",
            "GET /openapi.json",
            "GET /readyz",
            "POST /ai-clipping/jobs",
            "POST /ai-clipping/webhooks/{delivery_id}/redeliver",
        ]
        .map(String::from)
        .into_iter()
        .collect::<BTreeSet<_>>()
    );

    // The router has no other door: every route goes through `routes!`,
    // which cannot register a handler without its description, and the one
    // route described by hand is the media directory.
    let http = include_str!("../../src/http.rs");
    let http = http.split("#[cfg(test)]").next().unwrap();
    for call in [".route(", ".route_service(", ".nest(", ".nest_service("] {
        assert!(
            !http.contains(call),
            "http.rs registers a route with {call}: use `.routes(routes!(handler))` so that \
             it is described in the OpenAPI document"
        );
    }
    let storage = include_str!("../../src/storage.rs");
    assert_eq!(storage.matches(".nest_service(").count(), 1);
    assert!(storage.contains(".nest_service(\"/media\""));
    assert_eq!(storage.matches(".route(").count(), 0);
    app.stop().await;
}

#[test]
fn the_webhooks_section_describes_every_event_with_examples_that_parse() {
    let document: Value = serde_json::from_str(worker::openapi::document_json()).unwrap();
    let webhooks = document["webhooks"].as_object().unwrap();
    let names: BTreeSet<&str> = webhooks.keys().map(String::as_str).collect();
    assert_eq!(names, Event::ALL.map(Event::as_str).into_iter().collect());
    let mut examples = 0;
    for (name, item) in webhooks {
        let operation = &item["post"];
        let headers: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["required"] == true)
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            headers,
            BTreeSet::from(["webhook-id", "webhook-signature", "webhook-timestamp"])
        );
        let responses = operation["responses"].as_object().unwrap();
        assert!(responses.contains_key("2XX") && responses.contains_key("410"));
        assert!(responses["default"]["headers"]["Retry-After"].is_object());
        let body = &operation["requestBody"]["content"]["application/json"];
        assert_eq!(
            body["schema"]["allOf"][0]["$ref"],
            "#/components/schemas/WebhookPayload"
        );
        for (example, value) in body["examples"].as_object().unwrap() {
            let text = value["value"].to_string();
            let payload: WebhookPayload = webhook_types::parse_json(text.as_bytes())
                .unwrap_or_else(|e| panic!("{name} example {example}: {e}"));
            assert_eq!(payload.event.as_str(), name);
            assert!(payload.sequence.is_some(), "{name} example {example}");
            examples += 1;
        }
    }
    assert_eq!(examples, webhook_types::original_plan::EXAMPLES.len());
    let payload = &document["components"]["schemas"]["WebhookPayload"];
    assert!(payload["properties"]["sequence"].is_object());
}
