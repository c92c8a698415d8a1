//! REST endpoints: authentication, jobs, tickets, health.

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::*;

#[sqlx::test(migrations = "../../migrations/api")]
async fn every_api_call_needs_a_valid_token(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for r in [
        app.client
            .get(format!("{}/api/clipping-jobs", app.address))
            .send()
            .await
            .unwrap(),
        app.list_jobs("vct_not-a-token").await,
        app.client
            .get(format!("{}/api/clipping-jobs", app.address))
            .header("authorization", "Basic abc")
            .send()
            .await
            .unwrap(),
        app.ws_ticket("").await,
    ] {
        assert_eq!(r.status(), 401);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "unauthorized");
    }
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn jobs_are_created_listed_and_private(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (alice, a) = app.create_user("alice@example.com").await;
    let (_, b) = app.create_user("bob@example.com").await;

    let r = app
        .post_job(
            &a,
            &json!({"videoUrl": "https://example.com/v.mp4", "maxClips": 2, "targetPlatform": "youtube_shorts",
                    "minClipDurationSeconds": 10, "maxClipDurationSeconds": 60, "includeCaptions": false,
                    "durationRanges": ["15-30"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let job = &created["job"];
    assert_eq!(job["status"], "pending");
    assert_eq!(job["videoUrl"], "https://example.com/v.mp4");
    assert_eq!(job["progressPercent"], 0);
    for key in [
        "id",
        "status",
        "workerJobId",
        "videoUrl",
        "progressPercent",
        "currentStep",
        "pipelineStatus",
        "clipsCompleted",
        "totalClips",
        "error",
        "sourceVideoTitle",
        "sourceVideoDurationSeconds",
        "processingTimeSeconds",
        "createdAt",
        "updatedAt",
        "completedAt",
        "failedAt",
    ] {
        assert!(job.get(key).is_some(), "missing {key}");
    }
    let first: Uuid = job["id"].as_str().unwrap().parse().unwrap();
    let second = app.create_job(&a).await;

    let list: Value = app.list_jobs(&a).await.json().await.unwrap();
    let ids: Vec<_> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, [second.to_string(), first.to_string()], "newest first");
    let list: Value = app.list_jobs(&b).await.json().await.unwrap();
    assert_eq!(list, json!({"jobs": []}));

    assert_eq!(app.get_job(&b, &first.to_string()).await.status(), 404);
    assert_eq!(
        app.get_job(&a, &Uuid::new_v4().to_string()).await.status(),
        404
    );
    assert_eq!(app.get_job(&a, "not-a-uuid").await.status(), 404);
    let mine = app.job_json(&a, first).await;
    assert_eq!(mine["clips"], json!([]));

    // The worker received what the original plan sends, with our ids and callback.
    wait_until(|| async { app.worker.submissions().len() == 2 }).await;
    let sub = app
        .worker
        .submissions()
        .into_iter()
        .find(|s| s["external_job_id"] == first.to_string())
        .unwrap();
    assert_eq!(sub["video_url"], "https://example.com/v.mp4");
    assert_eq!(sub["owner_user_id"], alice.to_string());
    assert_eq!(
        sub["callback_url"],
        format!("{}/webhooks/clipping", app.address)
    );
    assert_eq!(sub["max_clips"], 2);
    assert_eq!(sub["target_platform"], "youtube_shorts");
    assert_eq!(sub["include_captions"], false);
    assert_eq!(sub["duration_ranges"], json!(["15-30"]));
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn bad_job_requests_name_the_camel_case_field(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, a) = app.create_user("alice@example.com").await;
    for (body, field) in [
        (json!({"videoUrl": "ftp://x/y"}), "videoUrl"),
        (
            json!({"videoUrl": "https://x/y", "maxClips": 0}),
            "maxClips",
        ),
        (
            json!({"videoUrl": "https://x/y", "maxClips": "five"}),
            "maxClips",
        ),
        (
            json!({"videoUrl": "https://x/y", "minClipDurationSeconds": 100, "maxClipDurationSeconds": 50}),
            "minClipDurationSeconds",
        ),
        (json!({}), "videoUrl"),
    ] {
        let r = app.post_job(&a, &body).await;
        assert_eq!(r.status(), 422, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["field"], field, "{e}");
    }
    let r = app
        .client
        .post(format!("{}/api/clipping-jobs", app.address))
        .bearer_auth(&a)
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// The value of one series in Prometheus text; 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn health_metrics_and_page(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<html"));
    // The counters this test's own traffic moves. The recorder is shared by
    // every test in this process, so others may move them too: at least
    // our own share must show.
    let before = app.get("/metrics").await;
    assert_eq!(before.status(), 200);
    let before = before.text().await.unwrap();
    let (_, token) = app.create_user("m@example.com").await;
    let job = app.create_job(&token).await;
    app.deliver(&started(job)).await;
    let r = app
        .post_webhook_raw(&[], serde_json::to_vec(&started(job)).unwrap())
        .await;
    assert_eq!(r.status(), 401);
    let after = app.get("/metrics").await.text().await.unwrap();
    for series in [
        "api_jobs_created_total",
        r#"api_webhooks_total{outcome="applied"}"#,
        r#"api_webhooks_total{outcome="bad_signature"}"#,
    ] {
        let moved = sample(&after, series) - sample(&before, series);
        assert!(moved >= 1.0, "{series} moved by {moved}:\n{after}");
    }
    let r = app.get("/no/such/route").await;
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "not_found");
}

fn healthcheck(url: &str) -> api::config::Cli {
    <api::config::Cli as clap::Parser>::try_parse_from([
        "viewcreator-api",
        "healthcheck",
        "--url",
        url,
    ])
    .unwrap()
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn healthcheck_command_follows_readiness(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let ready = format!("{}/readyz", app.address);
    let code = api::cli::run(healthcheck(&ready)).await.unwrap();
    assert_eq!(
        format!("{code:?}"),
        format!("{:?}", std::process::ExitCode::SUCCESS)
    );
    let err = api::cli::run(healthcheck(&format!("{}/nowhere", app.address)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = format!("http://127.0.0.1:{port}/readyz"); // nothing listens there now
    let err = api::cli::run(healthcheck(&closed)).await.unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
}
