//! A job's events as a receiver sees them: order, fields, headers, failure
//! at each stage, throttling and the concurrency bound.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use webhook_types::{ClippingJobRequest, Event, JobState, JobView, PipelineStatus};
use worker::reporter::{self, Draft, Reporter, StepReport};
use worker::store::Inserted;

use crate::helpers::{Received, Receiver, StoreKind, job, spawn_app};

const T: Duration = Duration::from_secs(10);

/// Checks the per-job rules of contract §2 on the deliveries a receiver
/// accepted, and returns their payload sequences.
fn check_rules(got: &[Received]) -> Vec<u64> {
    let ok: Vec<&Received> = got.iter().filter(|r| r.ok()).collect();
    let first = ok[0].payload();
    assert_eq!(first.event, Event::Started);
    assert_eq!(first.status, PipelineStatus::Downloading);
    assert_eq!(first.progress_percent.get(), 0.0);
    assert_eq!(first.sequence, Some(1));
    let mut last_seq = 0;
    let mut last_progress = 0.0;
    for (i, r) in ok.iter().enumerate() {
        let p = r.payload();
        let seq = p.sequence.expect("sequence is always set");
        assert!(
            seq > last_seq,
            "sequence must increase: {seq} after {last_seq}"
        );
        assert!(
            p.progress_percent.get() >= last_progress,
            "progress went down at {seq}"
        );
        last_seq = seq;
        last_progress = p.progress_percent.get();
        assert_eq!(
            p.event.is_terminal(),
            i == ok.len() - 1,
            "exactly one terminal event, last"
        );
        // Headers of contract §2.
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(
            r.header("user-agent"),
            concat!("clipping-worker/", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(r.header("x-webhook-event"), p.event.as_str());
        assert!(r.webhook_id().starts_with("msg_"), "{}", r.webhook_id());
        assert!(r.header("webhook-timestamp").parse::<i64>().is_ok());
        assert!(r.header("webhook-signature").starts_with("v1,"));
        assert!(r.verified, "every delivery verifies");
        let text = std::str::from_utf8(&r.body).unwrap();
        assert!(!text.contains("null"), "no nulls on the wire: {text}");
        assert!(p.timestamp.to_string().ends_with('Z'));
    }
    ok.iter().map(|r| r.payload().sequence.unwrap()).collect()
}

async fn a_job_reports_every_stage_in_order_and_ends_completed(kind: StoreKind) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app(kind, |_| {}).await;
    let job_id = app
        .submit_ok(job("https://youtube.com/watch?v=1", &rx.url("/hook"), 3))
        .await;

    let got = rx.until_terminal(&job_id, T).await;
    let seqs = check_rules(&got);
    // Without a throttle and with a healthy receiver nothing is dropped.
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());

    let statuses: Vec<PipelineStatus> = got.iter().map(|r| r.payload().status).collect();
    let every_stage_then_completed = PipelineStatus::ALL
        .into_iter()
        .filter(|s| *s != PipelineStatus::Failed);
    for s in every_stage_then_completed {
        assert!(statuses.contains(&s), "{s} missing from {statuses:?}");
    }
    let rendering: Vec<_> = got
        .iter()
        .map(|r| r.payload())
        .filter(|p| p.status == PipelineStatus::Rendering)
        .collect();
    assert_eq!(rendering.len(), 3);
    for (i, p) in rendering.iter().enumerate() {
        assert_eq!(p.current_step, format!("Rendering clip {}/3...", i + 1));
        assert_eq!(p.clips_completed, Some(i as u32));
        assert_eq!(p.total_clips, Some(3));
    }

    let done = got.last().unwrap().payload();
    assert_eq!(done.event, Event::Completed);
    assert_eq!(done.status, PipelineStatus::Completed);
    assert_eq!(done.progress_percent.get(), 100.0);
    assert_eq!(done.clips_completed, Some(3));
    assert_eq!(done.total_clips, Some(3));
    assert_eq!(done.owner_user_id.as_deref(), Some("user_789"));
    let out = done.output.as_ref().expect("job.completed carries output");
    assert_eq!(out.total_clips, 3);
    assert_eq!(out.clips.len(), 3);
    assert_eq!(
        out.clips[1].s3_url,
        format!("https://viewcreator-media.s3.amazonaws.com/clips/user_789/{job_id}/clip_01.mp4")
    );

    // The polling fallback agrees.
    let view: JobView = app.get_job(&job_id).await.json().await.unwrap();
    assert_eq!(view.status, JobState::Completed);
    assert_eq!(view.progress_percent.get(), 100.0);
    assert_eq!(view.output.as_ref(), Some(out));
    // So does the ledger.
    let ledger = app
        .wait_for_ledger(&job_id, T, |l| l.iter().all(|d| d["status"] == "delivered"))
        .await;
    assert_eq!(ledger.len(), seqs.len());
    assert_eq!(ledger[0]["attempts"][0]["status_code"], 200);
    app.stop().await;
}

async fn a_failing_stage_ends_the_job_with_that_stages_error(kind: StoreKind) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app(kind, |_| {}).await;
    let download = app
        .submit_ok(job("sim://video?fail_at=downloading", &rx.url("/a"), 2))
        .await;
    let got = rx.until_terminal(&download, T).await;
    check_rules(&got);
    let failed = got.last().unwrap().payload();
    assert_eq!(failed.event, Event::Failed);
    assert_eq!(failed.status, PipelineStatus::Failed);
    assert_eq!(
        failed.error.as_deref(),
        Some("Failed to download video: Video is unavailable or private")
    );
    // The progress reached: the downloading stage's 5 %.
    assert_eq!(failed.progress_percent.get(), 5.0);
    assert!(failed.output.is_none());

    let render = app
        .submit_ok(job("sim://video?fail_at=rendering", &rx.url("/b"), 2))
        .await;
    let got = rx.until_terminal(&render, T).await;
    check_rules(&got);
    let failed = got.last().unwrap().payload();
    assert_eq!(
        failed.error.as_deref(),
        Some("Failed to render clip 1/2: encoder error")
    );
    assert!(failed.progress_percent.get() >= 50.0);
    let view: JobView = app.get_job(&render).await.json().await.unwrap();
    assert_eq!(view.status, JobState::Failed);
    assert_eq!(view.error, failed.error);
    app.stop().await;
}

async fn the_throttle_sends_at_most_one_progress_per_interval_but_every_status_change(
    kind: StoreKind,
) {
    let mut rx = Receiver::ok().await;
    // An interval longer than the whole job: the rule then gives exactly one
    // progress event per status (the one that changed it), whatever the
    // machine's speed. 10 clips rendered 20 ms apart: one rendering report of
    // ten goes out, the nine held ones are overtaken by uploading.
    let app = spawn_app(kind, |c| {
        c.progress_interval_ms = 600_000;
        c.sim_stage_ms = 20;
    })
    .await;
    let job_id = app
        .submit_ok(job("https://youtube.com/watch?v=2", &rx.url("/t"), 10))
        .await;
    let got = rx.until_terminal(&job_id, T).await;
    check_rules(&got);
    let progress: Vec<(PipelineStatus, String)> = got
        .iter()
        .map(|r| r.payload())
        .filter(|p| p.event == Event::Progress)
        .map(|p| (p.status, p.current_step.clone()))
        .collect();
    let expected = [
        (PipelineStatus::Downloading, "Downloading video..."),
        (
            PipelineStatus::Transcribing,
            "Transcribing audio with Whisper...",
        ),
        (PipelineStatus::Planning, "Planning clips with AI..."),
        (PipelineStatus::Detecting, "Detecting faces and layouts..."),
        (PipelineStatus::Rendering, "Rendering clip 1/10..."),
        (PipelineStatus::Uploading, "Uploading clips..."),
    ]
    .map(|(s, t)| (s, t.to_owned()));
    assert_eq!(progress, expected);
    app.stop().await;
}

async fn the_trailing_progress_is_sent_when_the_interval_ends(kind: StoreKind) {
    // The test plays the pipeline through the reporter's own handle, so each
    // report is made when the test says, never after a sleep it must guess.
    let mut rx = Receiver::ok().await;
    let app = spawn_app(kind, |_| {}).await;
    let request: ClippingJobRequest =
        serde_json::from_value(job("https://youtube.com/watch?v=3", &rx.url("/t"), 3)).unwrap();
    let row = match app
        .state
        .store
        .insert_held_job("job_trailing", &request, "test", i64::MAX)
        .await
    {
        Ok(Inserted::Created(row)) => row,
        other => panic!("{other:?}"),
    };
    let mut reporter = Reporter::for_job(app.state.store.clone(), app.state.outbox.clone(), &row);
    reporter.emit(Draft::Started).await.unwrap();
    let (handle, driver) = reporter::channel(reporter, Duration::from_millis(300));
    let driving = tokio::spawn(reporter::drive(driver, CancellationToken::new()));
    let clip = |i: u32| {
        StepReport::new(
            PipelineStatus::Rendering,
            50.0 + f64::from(i),
            format!("Rendering clip {i}/3..."),
        )
        .with_clips(i - 1, 3)
    };
    let mut next_step = async || rx.next(T).await.payload().current_step.clone();
    assert_eq!(next_step().await, "Starting job processing");

    // A status change goes out at once; the report right behind it falls
    // inside the interval and is held, and must go out when it ends.
    handle.report(clip(1));
    handle.report(clip(2));
    assert_eq!(next_step().await, "Rendering clip 1/3...");
    assert_eq!(next_step().await, "Rendering clip 2/3...");
    // Held (or sent, if the interval already ended): either way it goes out
    // before the status change that follows it is reported.
    handle.report(clip(3));
    assert_eq!(next_step().await, "Rendering clip 3/3...");
    handle.report(StepReport::new(
        PipelineStatus::Uploading,
        95.0,
        "Uploading clips...",
    ));
    assert_eq!(next_step().await, "Uploading clips...");
    drop(handle);
    driving.await.unwrap();
    app.stop().await;
}

async fn at_most_max_concurrent_jobs_run_and_the_rest_wait_queued(kind: StoreKind) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app(kind, |c| {
        c.max_concurrent_jobs = 1;
        c.sim_stage_ms = 15;
    })
    .await;
    // a takes six stages of 300 ms: b is still waiting
    // when the test looks, however slowly it gets there.
    let a = app
        .submit_ok(job("sim://video?stage_ms=300", &rx.url("/q"), 1))
        .await;
    let b = app
        .submit_ok(job("https://youtube.com/watch?v=b", &rx.url("/q"), 1))
        .await;
    let view: JobView = app.get_job(&b).await.json().await.unwrap();
    assert_eq!(view.status, JobState::Queued, "b waits while a runs");
    assert_eq!(view.current_step, "Queued");

    let mut all = Vec::new();
    while all
        .iter()
        .filter(|r: &&Received| r.payload().event.is_terminal())
        .count()
        < 2
    {
        all.push(rx.next(T).await);
    }
    let when = |job: &str, pred: fn(Event) -> bool| {
        all.iter()
            .map(|r| r.payload())
            .find(|p| p.job_id == job && pred(p.event))
            .unwrap()
            .timestamp
    };
    // b was started only after a had finished.
    assert!(when(&b, |e| e == Event::Started) >= when(&a, Event::is_terminal));
    app.stop().await;
}

async fn without_a_secret_webhooks_go_unsigned_but_keep_id_and_timestamp(kind: StoreKind) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app(kind, |c| c.webhook_secret = None).await;
    let job_id = app
        .submit_ok(job("https://youtube.com/watch?v=u", &rx.url("/u"), 1))
        .await;
    let got = rx.until_terminal(&job_id, T).await;
    for r in &got {
        assert!(r.headers.get("webhook-signature").is_none());
        assert!(!r.verified);
        assert!(r.webhook_id().starts_with("msg_"));
        assert!(r.header("webhook-timestamp").parse::<i64>().is_ok());
    }
    app.stop().await;
}

on_both_stores!(
    a_job_reports_every_stage_in_order_and_ends_completed,
    a_failing_stage_ends_the_job_with_that_stages_error,
    the_throttle_sends_at_most_one_progress_per_interval_but_every_status_change,
    the_trailing_progress_is_sent_when_the_interval_ends,
    at_most_max_concurrent_jobs_run_and_the_rest_wait_queued,
    without_a_secret_webhooks_go_unsigned_but_keep_id_and_timestamp,
);
