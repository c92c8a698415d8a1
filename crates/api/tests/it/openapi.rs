//! The OpenAPI document: committed, served, valid and complete.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use api::messages::ServerMessage;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::*;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn committed_document_is_what_the_code_generates() {
    let generated = api::openapi::document_json();
    let path = root().join("docs/openapi/api.json");
    if std::env::var("UPDATE_OPENAPI").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi/api.json is not what the code generates; run scripts/openapi to \
         regenerate it and commit the result"
    );
}

/// Validates a document with the independent `openapi-spec-validator`
/// (`OPENAPI_PYTHON`; skipped when unset unless `REQUIRE_OPENAPI=1`).
fn validate_with_python(document: &str) {
    let python = match std::env::var_os("OPENAPI_PYTHON") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => {
            assert!(
                std::env::var("REQUIRE_OPENAPI").as_deref() != Ok("1"),
                "REQUIRE_OPENAPI=1 but OPENAPI_PYTHON is not set; point it at a python with \
                 openapi-spec-validator installed (as scripts/test sets up)"
            );
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED OpenAPI validation: OPENAPI_PYTHON is not set"
            );
            return;
        }
    };
    let dir = std::env::temp_dir().join(format!("api-openapi-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("openapi.json");
    std::fs::write(&file, document).unwrap();
    let output = Command::new(&python)
        .args([
            "-c",
            "import sys\n\
             from openapi_spec_validator import validate\n\
             from openapi_spec_validator.readers import read_from_filename\n\
             spec, _ = read_from_filename(sys.argv[1])\n\
             assert spec['openapi'].startswith('3.1'), spec['openapi']\n\
             validate(spec)",
        ])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the document: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn the_served_document_is_the_committed_one_and_valid(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let served = r.text().await.unwrap();
    assert_eq!(served, api::openapi::document_json());
    let committed = std::fs::read_to_string(root().join("docs/openapi/api.json")).unwrap();
    assert_eq!(served, committed, "run scripts/openapi");
    validate_with_python(&served);

    let document: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    // The WebSocket's messages are named schemas, referenced from /ws.
    let schemas = &document["components"]["schemas"];
    for name in [
        "ServerMessage",
        "ClippingStarted",
        "ClippingProgress",
        "ClippingCompleted",
        "ClippingFailed",
    ] {
        assert!(schemas[name].is_object(), "{name} is not a schema");
    }
    let ws = &document["paths"]["/ws"]["get"];
    assert_eq!(
        ws["responses"]["101"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ServerMessage"
    );
    // Bearer authentication on the REST endpoints.
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        document["paths"]["/api/clipping-jobs"]["post"]["security"],
        json!([{"bearer": []}])
    );
    // The receiver's table, every answer.
    let answers: BTreeSet<&str> = document["paths"]["/webhooks/clipping"]["post"]["responses"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        answers,
        BTreeSet::from(["200", "400", "401", "413", "422", "503"])
    );
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn the_receivers_examples_are_accepted_as_documented(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let document: Value = serde_json::from_str(api::openapi::document_json()).unwrap();
    let body = &document["paths"]["/webhooks/clipping"]["post"]["requestBody"]["content"]["application/json"];
    assert_eq!(
        body["schema"]["$ref"],
        "#/components/schemas/WebhookPayload"
    );
    let examples = body["examples"].as_object().unwrap();
    assert_eq!(examples.len(), webhook_types::original_plan::EXAMPLES.len());
    for (name, example) in examples {
        let text = example["value"].to_string();
        let payload: webhook_types::WebhookPayload = webhook_types::parse_json(text.as_bytes())
            .unwrap_or_else(|e| panic!("example {name}: {e}"));
        assert!(payload.sequence.is_some(), "{name}");
        // Signed and delivered, each is answered as the document says: no
        // job of ours has these ids, so `ignored`.
        let answer = app.deliver(&example["value"]).await;
        assert_eq!(
            answer,
            json!({"received": true, "ignored": "unknown job"}),
            "{name}"
        );
        let _: api::openapi::ReceiverAnswer = serde_json::from_value(answer).unwrap();
    }
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn the_docs_page_is_bundled(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .get(format!("{}/docs", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "docs/");
    // Followed, as a browser would.
    let r = app.get("/docs").await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("swagger-ui"), "{page}");
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
    let init = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("\"../openapi.json\""), "{init}");
}

/// Every operation of the document answers as a route of the service, with
/// its path parameters filled from real objects; `routes!` registers each
/// route with its description, so nothing is routed that is not described.
#[sqlx::test(migrations = "../../migrations/api")]
async fn every_documented_operation_is_served_and_nothing_else_is_routed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("walk@example.com").await;
    let job = app.create_job(&token).await;
    let document: Value = serde_json::from_str(api::openapi::document_json()).unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut walked = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            let url = format!(
                "{}{}",
                app.address,
                path.replace("{id}", &job.to_string())
                    .replace("{file}", "swagger-ui.css")
            );
            assert!(!url.contains('{'), "no sample value for {path}");
            let status = match (method.as_str(), path.as_str()) {
                ("get", "/ws") => {
                    // A real upgrade, then one real message of the document's
                    // kind.
                    // (The walk's webhook may have come first: this one is
                    // news in any order.)
                    let mut ws = app.ws_as(&token, &format!("?job={job}")).await;
                    app.deliver(&progress(job, 3, 50.0, "Rendering")).await;
                    let (message, _) = next_message(&mut ws, 10).await;
                    assert!(matches!(message, ServerMessage::Progress(_)), "{message:?}");
                    assert_eq!(message.job_id(), job);
                    101
                }
                ("post", "/webhooks/clipping") => app
                    .post_webhook(&progress(job, 2, 20.0, "Transcribing"))
                    .await
                    .status()
                    .as_u16(),
                ("post", "/api/clipping-jobs") => client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"videoUrl": "https://example.com/v.mp4"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
                ("get", _) => client
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
                ("post", _) => client
                    .post(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
                (other, _) => panic!("{other} {path}: a method the walk does not know"),
            };
            assert!(
                (100..400).contains(&status),
                "{method} {path} answered {status}"
            );
            walked.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    assert_eq!(
        walked,
        [
            "GET /",
            "GET /api/clipping-jobs",
            "GET /api/clipping-jobs/{id}",
            "GET /docs",
            "GET /docs/",
            "GET /docs/{file}",
            "GET /healthz",
            "GET /metrics",
            "GET /openapi.json",
            "GET /readyz",
            "GET /ws",
            "POST /api/clipping-jobs",
            "POST /api/ws-ticket",
            "POST /webhooks/clipping",
        ]
        .map(String::from)
        .into_iter()
        .collect::<BTreeSet<_>>()
    );
    // The router has no other door than `routes!`.
    let http = include_str!("../../src/http.rs");
    for call in [
        ".route(",
        ".route_service(",
        ".nest(",
        ".nest_service(",
        ".merge(",
    ] {
        assert!(
            !http.contains(call),
            "http.rs registers a route with {call}: use `.routes(routes!(handler))` so that \
             it is described in the OpenAPI document"
        );
    }
}
