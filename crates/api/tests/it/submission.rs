//! Talking to the worker: submission with retries, refusal, and
//! reconciliation of jobs that went quiet.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::*;

async fn attempts(pool: &PgPool, job: Uuid) -> (String, i32, Option<String>) {
    sqlx::query_as("SELECT state, attempts, last_error FROM job_submissions WHERE job_id = $1")
        .bind(job)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn a_job_waits_for_a_worker_that_is_down_then_is_submitted(pool: PgPool) {
    let worker = FakeWorker::down().await;
    let app = TestApp::spawn_full(pool, worker.clone(), |_| {}).await;
    let (user, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;

    wait_until(|| async { attempts(&app.pool, job).await.1 >= 2 }).await;
    let (state, _, error) = attempts(&app.pool, job).await;
    assert_eq!(state, "pending");
    assert!(error.unwrap().contains("unreachable"));
    assert_eq!(app.job_json(&token, job).await["status"], "pending");

    let _up = worker.bring_up().await;
    wait_until(|| async { app.job_json(&token, job).await["status"] == "submitted" }).await;
    let j = app.job_json(&token, job).await;
    assert_eq!(j["workerJobId"], format!("w-{job}"));
    assert_eq!(attempts(&app.pool, job).await.0, "done");
    let subs = worker.submissions();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["external_job_id"], job.to_string());
    assert_eq!(subs[0]["owner_user_id"], user.to_string());
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn a_worker_that_answers_5xx_is_retried(pool: PgPool) {
    let worker = FakeWorker::start().await;
    worker.set_mode(Mode::Unavailable);
    let app = TestApp::spawn_full(pool, worker, |_| {}).await;
    let (_, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;
    wait_until(|| async { app.worker.submissions().len() >= 2 }).await;
    assert_eq!(app.job_json(&token, job).await["status"], "pending");
    app.worker.set_mode(Mode::Accept);
    wait_until(|| async { app.job_json(&token, job).await["status"] == "submitted" }).await;
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn a_job_the_worker_refuses_fails_with_its_reason(pool: PgPool) {
    let worker = FakeWorker::start().await;
    worker.set_mode(Mode::Refuse);
    let app = TestApp::spawn_full(pool, worker, |_| {}).await;
    let (_, token) = app.create_user("a@example.com").await;
    let mut ws = app.ws_as(&token, "").await;
    let job = app.create_job(&token).await;

    let e = next_event(&mut ws, 5).await;
    assert_eq!(e["type"], "clipping.failed");
    assert_eq!(e["jobId"], job.to_string());
    let j = app.job_json(&token, job).await;
    assert_eq!(j["status"], "failed");
    let error = j["error"].as_str().unwrap();
    assert!(
        error.contains("422") && error.contains("video_url cannot be fetched"),
        "{error}"
    );
    assert_eq!(attempts(&app.pool, job).await.0, "failed");
    // A failed submission row is never claimed again. As a barrier, a second
    // job goes through the same submitter: once it is submitted, a retry of
    // the first would have had its turn too.
    app.worker.set_mode(Mode::Accept);
    let second = app.create_job(&token).await;
    wait_until(|| async { app.job_json(&token, second).await["status"] == "submitted" }).await;
    let subs = app.worker.submissions();
    let of_first = subs
        .iter()
        .filter(|s| s["external_job_id"] == job.to_string())
        .count();
    assert_eq!(of_first, 1, "a refusal is not retried");
    assert_eq!(subs.len(), 2);
}

fn view(job: Uuid, status: &str, pct: f64, step: &str) -> Value {
    json!({
        "job_id": format!("w-{job}"),
        "external_job_id": job.to_string(),
        "status": status,
        "progress_percent": pct,
        "current_step": step,
        "clips_completed": 2,
        "total_clips": 5,
        "created_at": "2025-01-15T10:30:00Z",
        "updated_at": "2025-01-15T10:33:00Z",
    })
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn a_quiet_job_is_brought_up_to_date_from_the_worker(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |c| c.stale_after = Duration::from_millis(500)).await;
    let (_, token) = app.create_user("a@example.com").await;
    let mut ws = app.ws_as(&token, "").await;
    let job = app.create_job(&token).await;
    app.worker.set_view(
        &format!("w-{job}"),
        view(job, "rendering", 65.0, "Rendering clip 3/5..."),
    );

    let e = next_event(&mut ws, 10).await;
    assert_eq!(e["type"], "clipping.started");
    assert_eq!(e["progressPercent"], 65);
    assert_eq!(e["status"], "rendering");
    let j = app.job_json(&token, job).await;
    assert_eq!(j["status"], "processing");
    assert_eq!(j["currentStep"], "Rendering clip 3/5...");
    assert_eq!(
        (j["clipsCompleted"].clone(), j["totalClips"].clone()),
        (json!(2), json!(5))
    );

    // Still quiet; the worker has finished meanwhile.
    let mut done = view(job, "completed", 100.0, "Processing complete!");
    done["output"] = completed(job, 9)["output"].clone();
    app.worker.set_view(&format!("w-{job}"), done);
    let e = next_event(&mut ws, 10).await;
    assert_eq!(e["type"], "clipping.completed");
    assert_eq!(e["clipCount"], 2);
    let j = app.job_json(&token, job).await;
    assert_eq!(j["status"], "completed");
    assert_eq!(
        j["clips"][0]["url"],
        format!("https://{CDN}/clips/user_789/abc-123/clip_00.mp4")
    );
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn a_job_unknown_to_the_worker_is_failed(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |c| c.stale_after = Duration::from_millis(500)).await;
    let (_, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;
    wait_until(|| async { app.job_json(&token, job).await["status"] == "failed" }).await;
    let error = app.job_json(&token, job).await["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("does not know"), "{error}");
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn a_job_with_recent_webhooks_is_left_alone(pool: PgPool) {
    // The job stays in the staleness window's reach for several windows:
    // only the webhooks refreshing `last_heard_at` keep the reconciler away.
    let stale_after = Duration::from_millis(1500);
    let app = TestApp::spawn_with(pool, |c| c.stale_after = stale_after).await;
    let (_, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;
    wait_until(|| async { app.job_json(&token, job).await["status"] == "submitted" }).await;
    let began = std::time::Instant::now();
    let mut seq = 1;
    while began.elapsed() < stale_after * 3 {
        app.deliver(&progress(job, seq, seq as f64, "working"))
            .await;
        seq += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // The worker would say 404, but nobody asked it.
    assert_eq!(app.worker.lookups(), Vec::<String>::new());
    assert_eq!(app.job_json(&token, job).await["status"], "processing");

    // And the reconciler was awake all along: once the webhooks stop, it asks.
    wait_until(|| async { !app.worker.lookups().is_empty() }).await;
    assert_eq!(app.worker.lookups()[0], format!("w-{job}"));
}
