//! `POST /webhooks/clipping`: every answer of the contract's table, and the
//! state machine as seen from outside.

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::*;

async fn events_of(pool: &PgPool, job: Uuid) -> Vec<Value> {
    sqlx::query_scalar::<_, Value>(
        "SELECT message FROM user_events WHERE job_id = $1 ORDER BY event_id",
    )
    .bind(job)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn clip_count(pool: &PgPool, job: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM clips WHERE job_id = $1")
        .bind(job)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn accepted_webhook_moves_the_job_and_answers_received(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;

    let body = app.deliver(&started(job)).await;
    assert_eq!(body, json!({"received": true}));
    let j = app.job_json(&token, job).await;
    assert_eq!(j["status"], "processing");
    assert_eq!(j["pipelineStatus"], "downloading");
    assert_eq!(j["currentStep"], "Starting job processing");
    assert_eq!(j["workerJobId"], format!("w-{job}"));
    let events = events_of(&app.pool, job).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "clipping.started");
    assert_eq!(events[0]["eventId"], 1);
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn a_webhook_moves_a_job_that_is_still_pending(pool: PgPool) {
    // The worker can start before the submitter records its answer.
    let worker = FakeWorker::start().await;
    worker.set_mode(Mode::Unavailable);
    let app = TestApp::spawn_full(pool, worker, |_| {}).await;
    let (_, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;
    assert_eq!(app.job_json(&token, job).await["status"], "pending");

    app.deliver(&started(job)).await;
    let j = app.job_json(&token, job).await;
    assert_eq!(j["status"], "processing");
    assert_eq!(j["workerJobId"], format!("w-{job}"));

    // The submitter's late success must not move it back to submitted.
    app.worker.set_mode(Mode::Accept);
    wait_until(|| async {
        sqlx::query_scalar::<_, String>("SELECT state FROM job_submissions WHERE job_id = $1")
            .bind(job)
            .fetch_one(&app.pool)
            .await
            .unwrap()
            == "done"
    })
    .await;
    assert_eq!(app.job_json(&token, job).await["status"], "processing");
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn the_same_webhook_id_twice_changes_nothing_twice(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;
    let body = serde_json::to_vec(&started(job)).unwrap();

    let first = app.post_webhook_bytes("msg_same", body.clone()).await;
    assert_eq!(
        first.json::<Value>().await.unwrap(),
        json!({"received": true})
    );
    let second = app.post_webhook_bytes("msg_same", body).await;
    assert_eq!(second.status(), 200);
    assert_eq!(
        second.json::<Value>().await.unwrap(),
        json!({"received": true, "duplicate": true})
    );
    assert_eq!(events_of(&app.pool, job).await.len(), 1);
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn unknown_jobs_are_ignored_whatever_the_id_looks_like(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for ext in [
        json!(Uuid::new_v4().to_string()),
        json!("not-a-uuid'; DROP TABLE clipping_jobs; --"),
        json!("💥"),
    ] {
        let mut p = started(Uuid::new_v4());
        p["external_job_id"] = ext;
        p["job_id"] = json!("worker-id-nobody-has");
        let body = app.deliver(&p).await;
        assert_eq!(body, json!({"received": true, "ignored": "unknown job"}));
    }
    // No external id at all, and a worker id nobody has.
    let mut p = started(Uuid::new_v4());
    p.as_object_mut().unwrap().remove("external_job_id");
    assert_eq!(
        app.deliver(&p).await,
        json!({"received": true, "ignored": "unknown job"})
    );
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn a_job_is_found_by_worker_id_when_external_id_is_absent(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;
    wait_until(|| async { app.job_json(&token, job).await["status"] == "submitted" }).await;
    let mut p = started(job);
    p.as_object_mut().unwrap().remove("external_job_id");
    assert_eq!(app.deliver(&p).await, json!({"received": true}));
    assert_eq!(app.job_json(&token, job).await["status"], "processing");
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn bad_signatures_are_refused_with_401(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;
    let body = serde_json::to_vec(&started(job)).unwrap();
    let now = chrono::Utc::now().timestamp();

    // No headers at all.
    let r = app.post_webhook_raw(&[], body.clone()).await;
    assert_eq!(r.status(), 401);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_signature");

    // Signed with another secret.
    let other = signing::SecretSet::from(signing::Secret::generate());
    let h = other.headers("msg_1", now, &body);
    let r = app
        .post_webhook_raw(&h.pairs().map(|(k, v)| (k, v.to_owned())), body.clone())
        .await;
    assert_eq!(r.status(), 401);

    // Right secret, body changed after signing.
    let right = signing::SecretSet::parse_list(SECRET).unwrap();
    let h = right.headers("msg_2", now, &body);
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let r = app
        .post_webhook_raw(&h.pairs().map(|(k, v)| (k, v.to_owned())), tampered)
        .await;
    assert_eq!(r.status(), 401);

    // Right secret, timestamp more than 5 minutes off either way.
    for ts in [now - 301, now + 301] {
        let h = right.headers("msg_3", ts, &body);
        let r = app
            .post_webhook_raw(&h.pairs().map(|(k, v)| (k, v.to_owned())), body.clone())
            .await;
        assert_eq!(r.status(), 401, "timestamp {ts}");
    }
    // Nothing was applied.
    assert_ne!(app.job_json(&token, job).await["status"], "processing");
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn rotated_secrets_both_verify(pool: PgPool) {
    let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let new = signing::Secret::generate().expose();
    let list = format!("{new},{old}");
    let app = TestApp::spawn_with(pool, |c| {
        c.webhook_secrets = Some(signing::SecretSet::parse_list(&list).unwrap())
    })
    .await;
    let (_, token) = app.create_user("a@example.com").await;
    // A sender that still has only the old secret, one that already has only
    // the new one, one that signs with both, and one with neither: each on
    // its own job, so each answer is matched by its own state change.
    let stranger = signing::Secret::generate().expose();
    let senders = [
        (old.to_owned(), 200),
        (new.clone(), 200),
        (format!("{old},{new}"), 200),
        (stranger, 401),
    ];
    for (secrets, expected) in senders {
        let job = app.create_job(&token).await;
        let body = serde_json::to_vec(&started(job)).unwrap();
        let signer = signing::SecretSet::parse_list(&secrets).unwrap();
        let h = signer.headers(
            &signing::new_message_id(),
            chrono::Utc::now().timestamp(),
            &body,
        );
        let r = app
            .post_webhook_raw(&h.pairs().map(|(k, v)| (k, v.to_owned())), body)
            .await;
        assert_eq!(r.status(), expected);
        let status = app.job_json(&token, job).await["status"].clone();
        if expected == 200 {
            assert_eq!(status, "processing");
            assert_eq!(events_of(&app.pool, job).await.len(), 1);
        } else {
            assert_ne!(status, "processing");
            assert!(events_of(&app.pool, job).await.is_empty());
        }
    }
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn malformed_json_is_400_and_bad_fields_are_422(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;

    for bad in [
        &b"{not json"[..],
        b"",
        b"{\"event\": \"job.started\"",
        b"{\"event\": 1,}",
    ] {
        let r = app
            .post_webhook_bytes(&signing::new_message_id(), bad.to_vec())
            .await;
        assert_eq!(r.status(), 400, "{}", String::from_utf8_lossy(bad));
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "malformed_json");
    }

    // Wrong types are 422 naming the field, also where serde_json files the
    // error as a syntax error (an enum given a number, null or an array).
    let wrong_type = |field: &'static str, v: Value| {
        let mut p = progress(job, 2, 10.0, "x");
        p[field] = v;
        (p, field)
    };
    let mut cases: Vec<(Value, &str)> = vec![
        wrong_type("event", json!(5)),
        wrong_type("event", json!(null)),
        wrong_type("status", json!(7)),
        wrong_type("status", json!(["rendering"])),
    ];
    cases.extend([
        (
            {
                let mut p = progress(job, 2, 10.0, "x");
                p["progress_percent"] = json!("ten");
                p
            },
            "progress_percent",
        ),
        (
            {
                let mut p = progress(job, 2, 10.0, "x");
                p["progress_percent"] = json!(101);
                p
            },
            "progress_percent",
        ),
        (
            {
                let mut p = progress(job, 2, 10.0, "x");
                p["status"] = json!("exploding");
                p
            },
            "status",
        ),
        (
            {
                // Fits u64, not the database's bigint.
                let mut p = progress(job, 2, 10.0, "x");
                p["sequence"] = json!(9223372036854775808u64);
                p
            },
            "sequence",
        ),
        (
            {
                let mut p = progress(job, 2, 10.0, "x");
                p["total_clips"] = json!(4_000_000_000u64);
                p
            },
            "total_clips",
        ),
        (
            {
                let mut p = progress(job, 2, 10.0, "x");
                p["clips_completed"] = json!(-1);
                p
            },
            "clips_completed",
        ),
        (
            {
                let mut p = completed(job, 9);
                p["output"]["clips"][0]["virality_score"] = json!(7);
                p
            },
            "output.clips[0].virality_score",
        ),
        (
            {
                let mut p = completed(job, 9);
                p.as_object_mut().unwrap().remove("output");
                p
            },
            "output",
        ),
        (
            {
                let mut p = progress(job, 2, 10.0, "x");
                p.as_object_mut().unwrap().remove("job_id");
                p
            },
            "job_id",
        ),
    ]);
    for (p, field) in cases {
        let r = app.post_webhook(&p).await;
        assert_eq!(r.status(), 422, "{p}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "invalid_field");
        assert_eq!(e["error"]["field"], field, "{e}");
    }
    // Above u64: a wrong type for the field.
    let body = serde_json::to_string(&progress(job, 2, 10.0, "x"))
        .unwrap()
        .replace("\"sequence\":2", "\"sequence\":18446744073709551616");
    let r = app
        .post_webhook_bytes(&signing::new_message_id(), body.into_bytes())
        .await;
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["field"], "sequence");
    // Numbers too large for any float are a 4xx, never a 500.
    let body = br#"{"event":"job.progress","timestamp":"2025-01-15T10:30:00Z","job_id":"w","status":"transcribing","progress_percent":1e400,"current_step":"x"}"#;
    let r = app
        .post_webhook_bytes(&signing::new_message_id(), body.to_vec())
        .await;
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_ne!(app.job_json(&token, job).await["status"], "processing");
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn bodies_over_one_mebibyte_are_413(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut p = progress(Uuid::new_v4(), 2, 10.0, "x");
    p["current_step"] = json!("a".repeat(1024 * 1024));
    let r = app.post_webhook(&p).await;
    assert_eq!(r.status(), 413);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "payload_too_large");
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn hostile_text_is_stored_verbatim(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;
    let steps = [
        "'; DROP TABLE clipping_jobs; --",
        "Robert'); DELETE FROM users WHERE ('a'='a",
        "$1 $$ \\x00 %s %n {{}} \" \\",
        "Rendering clip 3/5… 🎬 — ünïcödé 字幕 עברית",
    ];
    for (i, step) in steps.iter().enumerate() {
        app.deliver(&progress(job, i as u64 + 2, i as f64, step))
            .await;
        assert_eq!(app.job_json(&token, job).await["currentStep"], *step);
    }
    // NUL cannot be stored by PostgreSQL: it becomes U+FFFD, not a 500.
    app.deliver(&progress(job, 20, 50.0, "a\u{0}b")).await;
    assert_eq!(app.job_json(&token, job).await["currentStep"], "a\u{FFFD}b");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(users, 1);
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn out_of_order_sequences_are_recorded_but_do_not_move_the_job(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;
    app.deliver(&started(job)).await;
    app.deliver(&progress(job, 3, 40.0, "newer")).await;
    // Sequence 2 arrives late: answered 200, recorded, ignored.
    assert_eq!(
        app.deliver(&progress(job, 2, 20.0, "older")).await,
        json!({"received": true})
    );
    let j = app.job_json(&token, job).await;
    assert_eq!(j["currentStep"], "newer");
    assert_eq!(j["progressPercent"], 40);
    let outcome: String = sqlx::query_scalar(
        "SELECT outcome FROM webhook_receipts WHERE job_id = $1 AND sequence = 2",
    )
    .bind(job)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(outcome, "stale");
    // Started + one progress push; the stale one pushed nothing.
    assert_eq!(events_of(&app.pool, job).await.len(), 2);
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn legacy_events_without_sequence_apply_in_arrival_order(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;
    let strip = |mut p: Value| {
        p.as_object_mut().unwrap().remove("sequence");
        p
    };
    app.deliver(&strip(started(job))).await;
    app.deliver(&strip(progress(job, 0, 30.0, "thirty"))).await;
    app.deliver(&strip(progress(job, 0, 20.0, "late"))).await;
    let j = app.job_json(&token, job).await;
    assert_eq!(j["currentStep"], "late");
    assert_eq!(j["progressPercent"], 30, "progress never goes back");
    app.deliver(&strip(completed(job, 0))).await;
    app.deliver(&strip(progress(job, 0, 50.0, "after the end")))
        .await;
    assert_eq!(app.job_json(&token, job).await["status"], "completed");
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn terminal_states_are_final(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("a@example.com").await;
    let a = app.create_job(&token).await;
    app.deliver(&started(a)).await;
    app.deliver(&failed(a, 2, 15.0, "Video is unavailable"))
        .await;
    app.deliver(&progress(a, 3, 50.0, "zombie")).await;
    app.deliver(&completed(a, 4)).await;
    let j = app.job_json(&token, a).await;
    assert_eq!(j["status"], "failed");
    assert_eq!(j["error"], "Video is unavailable");
    assert_eq!(j["progressPercent"], 15);
    assert!(j["failedAt"].is_string());
    assert!(j["completedAt"].is_null());
    assert_eq!(clip_count(&app.pool, a).await, 0);
    let types: Vec<_> = events_of(&app.pool, a)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["clipping.started", "clipping.failed"]);
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn completion_delivered_twice_writes_one_set_of_clips(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;
    app.deliver(&started(job)).await;
    let body = serde_json::to_vec(&completed(job, 5)).unwrap();
    // Same webhook-id twice, then the same event under new ids (a worker
    // that re-sent it as a new delivery).
    for id in ["msg_done", "msg_done", "msg_other", "msg_third"] {
        let r = app.post_webhook_bytes(id, body.clone()).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(clip_count(&app.pool, job).await, 2);
    let j = app.job_json(&token, job).await;
    assert_eq!(j["status"], "completed");
    assert_eq!(j["progressPercent"], 100);
    assert_eq!(j["sourceVideoTitle"], "My Amazing Video");
    assert_eq!(j["sourceVideoDurationSeconds"], 1847.5);
    assert_eq!(j["processingTimeSeconds"], 482.5);
    assert_eq!(j["clipsCompleted"], 2);
    assert_eq!(j["totalClips"], 2);
    assert_eq!(j["clips"].as_array().unwrap().len(), 2);
    let completions = events_of(&app.pool, job)
        .await
        .into_iter()
        .filter(|e| e["type"] == "clipping.completed")
        .count();
    assert_eq!(completions, 1);
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn clip_urls_are_rewritten_for_the_cdn_in_both_s3_forms(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;
    app.deliver(&completed(job, 2)).await;
    let j = app.job_json(&token, job).await;
    let clips = j["clips"].as_array().unwrap();
    assert_eq!(
        clips[0],
        json!({
            "clipIndex": 0,
            "url": format!("https://{CDN}/clips/user_789/abc-123/clip_00.mp4"),
            "durationMs": 45000, "startTimeMs": 134200, "endTimeMs": 179200,
            "viralityScore": 0.92, "layoutType": "screen_share",
            "summary": "Key insight", "tags": ["business", "pricing"]
        })
    );
    assert_eq!(
        clips[1]["url"],
        format!("https://{CDN}/clips/user_789/abc-123/clip_01.mp4")
    );
    assert!(clips[1]["summary"].is_null());
    assert_eq!(clips[1]["tags"], json!([]));
    let done = events_of(&app.pool, job).await.pop().unwrap();
    assert_eq!(done["type"], "clipping.completed");
    assert_eq!(done["clipCount"], 2);
    assert_eq!(done["clips"][0]["url"], clips[0]["url"]);
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn progress_without_clip_counts_keeps_the_stored_ones(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;
    let mut p = payload(
        job,
        "job.progress",
        2,
        "rendering",
        65.0,
        "Rendering clip 3/5...",
    );
    p["clips_completed"] = json!(2);
    p["total_clips"] = json!(5);
    app.deliver(&p).await;
    app.deliver(&payload(
        job,
        "job.progress",
        3,
        "rendering",
        70.0,
        "Rendering clip 4/5...",
    ))
    .await;
    let j = app.job_json(&token, job).await;
    assert_eq!(
        (j["clipsCompleted"].clone(), j["totalClips"].clone()),
        (json!(2), json!(5))
    );
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn database_unavailable_is_503(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let job = Uuid::new_v4();
    app.pool.close().await;
    let r = app.post_webhook(&started(job)).await;
    assert_eq!(r.status(), 503);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "unavailable");
    assert_eq!(app.get("/readyz").await.status(), 503);
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn unsigned_webhooks_pass_only_when_explicitly_allowed(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |c| c.webhook_secrets = None).await;
    let (_, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;
    let r = app
        .post_webhook_raw(&[], serde_json::to_vec(&started(job)).unwrap())
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.job_json(&token, job).await["status"], "processing");
}

/// Many deliveries at once, duplicates and stale ones among them, across
/// users and jobs: with group commit on and off, every job ends at its last
/// sequence, each user's event ids are gap-free, every duplicate is answered
/// as one.
async fn concurrent_deliveries(pool: PgPool, batch: usize) {
    let app = TestApp::spawn_with(pool, |c| c.tuning.commit_batch = batch).await;
    let mut jobs = Vec::new();
    for u in 0..3 {
        let (_, token) = app.create_user(&format!("u{u}@example.com")).await;
        for _ in 0..4 {
            jobs.push((token.clone(), app.create_job(&token).await));
        }
    }
    let mut sends = Vec::new();
    for (_, job) in &jobs {
        for seq in 2..=11u64 {
            let body =
                serde_json::to_vec(&progress(*job, seq, seq as f64 * 5.0, &format!("s{seq}")))
                    .unwrap();
            // Every delivery twice under the same id.
            let id = format!("msg_{job}_{seq}");
            sends.push((id.clone(), body.clone()));
            sends.push((id, body));
        }
    }
    let app = &app;
    let results = futures_util::future::join_all(sends.into_iter().map(|(id, body)| async move {
        app.post_webhook_bytes(&id, body)
            .await
            .json::<Value>()
            .await
            .unwrap()
    }))
    .await;
    let duplicates = results.iter().filter(|r| r["duplicate"] == true).count();
    assert_eq!(duplicates, jobs.len() * 10);
    for (token, job) in &jobs {
        let j = app.job_json(token, *job).await;
        assert_eq!(j["currentStep"], "s11", "{j}");
        assert_eq!(j["progressPercent"], 55);
    }
    let ids: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT user_id, event_id FROM user_events ORDER BY user_id, event_id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let mut expected = 0;
    let mut user = None;
    for (u, id) in ids {
        if user != Some(u) {
            user = Some(u);
            expected = 0;
        }
        expected += 1;
        assert_eq!(id, expected, "event ids of a user are gap-free");
    }
    let counters: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT u.last_event_id, (SELECT count(*) FROM user_events e WHERE e.user_id = u.id) FROM users u",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    for (last, count) in counters {
        assert_eq!(last, count);
    }
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn concurrent_deliveries_with_group_commit(pool: PgPool) {
    concurrent_deliveries(pool, 64).await;
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn concurrent_deliveries_one_transaction_each(pool: PgPool) {
    concurrent_deliveries(pool, 1).await;
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn a_failed_batch_answers_each_delivery_on_its_own(pool: PgPool) {
    // Concurrent deliveries meet a closed pool: the batch fails, each one is
    // retried alone and answered 503, none is lost or left hanging.
    let app = TestApp::spawn(pool).await;
    app.pool.close().await;
    let app = &app;
    let answers = futures_util::future::join_all((0..40).map(|i| async move {
        app.post_webhook(&progress(Uuid::new_v4(), 2, i as f64, "x"))
            .await
            .status()
    }))
    .await;
    assert!(answers.iter().all(|s| *s == 503), "{answers:?}");
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn one_poisoned_delivery_does_not_fail_its_batch_neighbours(pool: PgPool) {
    // One lane, so every delivery meets the same batches.
    let app = TestApp::spawn_with(pool, |c| c.tuning.commit_lanes = 1).await;
    let (_, token) = app.create_user("a@example.com").await;
    let (blocker, a, poisoned, c) = (
        app.create_job(&token).await,
        app.create_job(&token).await,
        app.create_job(&token).await,
        app.create_job(&token).await,
    );
    // The poison: the database refuses this one update, as a constraint or
    // a bug tripped by one delivery would.
    sqlx::query(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.current_step = 'poison' THEN RAISE EXCEPTION 'poisoned delivery'; END IF; \
         RETURN NEW; END $$",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_poison BEFORE UPDATE ON clipping_jobs \
         FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
    )
    .execute(&app.pool)
    .await
    .unwrap();

    // Hold the lane: its first delivery waits for a row this test locks.
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM clipping_jobs WHERE id = $1 FOR UPDATE")
        .bind(blocker)
        .execute(&mut *lock)
        .await
        .unwrap();
    let post = |job: Uuid, step: &'static str| {
        let app = &app;
        async move {
            app.post_webhook(&progress(job, 2, 10.0, step))
                .await
                .status()
        }
    };
    let first = post(blocker, "first");
    let rest = async {
        // The lane has taken the first delivery and waits on the lock.
        wait_until(|| async {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock')",
            )
            .fetch_one(&app.pool)
            .await
            .unwrap()
        })
        .await;
        // Queued behind the held batch, the three go in one batch together.
        let three = futures_util::future::join3(
            post(a, "neighbour"),
            post(poisoned, "poison"),
            post(c, "neighbour"),
        );
        let release = async {
            wait_until(|| async { app.state.committer.queued() == 3 }).await;
            lock.commit().await.unwrap();
        };
        futures_util::future::join(three, release).await.0
    };
    let (first, (ra, rp, rc)) = futures_util::future::join(first, rest).await;

    assert_eq!(first, 200);
    assert_eq!(ra, 200, "a neighbour is committed");
    assert_eq!(rc, 200, "a neighbour is committed");
    assert_eq!(rp, 500, "the poisoned one gets its own answer");
    assert!(
        app.state.committer.largest_batch() >= 3,
        "the three shared a batch: largest was {}",
        app.state.committer.largest_batch()
    );
    for job in [a, c] {
        let j = app.job_json(&token, job).await;
        assert_eq!(j["currentStep"], "neighbour");
        assert_eq!(events_of(&app.pool, job).await.len(), 1);
    }
    assert_ne!(
        app.job_json(&token, poisoned).await["currentStep"],
        "poison"
    );
    assert!(events_of(&app.pool, poisoned).await.is_empty());
}
