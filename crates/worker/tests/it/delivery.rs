//! The sender against receivers that fail, hang, ask to wait or say gone.

use std::time::Duration;

use tokio::time::Instant;
use webhook_types::Event;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::helpers::{
    Received, Receiver, Reply, StoreKind, TestStore, job, long_schedule, spawn_app, spawn_app_on,
};

const T: Duration = Duration::from_secs(10);

async fn a_retry_keeps_the_webhook_id_with_a_fresh_timestamp_and_honours_retry_after(
    kind: StoreKind,
) {
    // The first attempt of job.started is told to come back in 1 s; the
    // schedule alone would retry within 20 ms.
    let mut rx = Receiver::start(|r| {
        if r.payload().event == Event::Started && r.attempt == 1 {
            Reply {
                status: 503,
                retry_after: Some("1".into()),
                hang: None,
            }
        } else {
            Reply::status(200)
        }
    })
    .await;
    let app = spawn_app(kind, |_| {}).await;
    let job_id = app
        .submit_ok(job("https://youtube.com/watch?v=r", &rx.url("/r"), 1))
        .await;
    let got = rx.until_terminal(&job_id, T).await;
    let started: Vec<&Received> = got
        .iter()
        .filter(|r| r.payload().event == Event::Started)
        .collect();
    assert_eq!(started.len(), 2, "one failure, one success");
    let (first, second) = (started[0], started[1]);
    assert_eq!(first.answered, 503);
    assert!(second.ok());
    assert_eq!(
        first.webhook_id(),
        second.webhook_id(),
        "same webhook-id on retry"
    );
    assert_eq!(first.body, second.body, "same bytes on retry");
    let t1: i64 = first.header("webhook-timestamp").parse().unwrap();
    let t2: i64 = second.header("webhook-timestamp").parse().unwrap();
    assert!(t2 > t1, "a fresh timestamp per attempt ({t1} then {t2})");
    assert!(first.verified && second.verified);
    let gap = second.at - first.at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured (retried after {gap:?})"
    );
    // Nothing of the job arrived before job.started was delivered.
    assert!(got[0].payload().event == Event::Started && got[1].payload().event == Event::Started);
    app.stop().await;
}

async fn gone_stops_the_retries_and_exhausted_retries_fail(kind: StoreKind) {
    let mut rx = Receiver::start(|r| match r.payload().event {
        Event::Started => Reply::status(410),
        Event::Completed => Reply::status(500),
        _ => Reply::status(200),
    })
    .await;
    let app = spawn_app(kind, |c| c.retry_schedule = "0,20ms,20ms".parse().unwrap()).await;
    let job_id = app
        .submit_ok(job("https://youtube.com/watch?v=g", &rx.url("/g"), 1))
        .await;
    let ledger = app
        .wait_for_ledger(&job_id, T, |l| {
            l.last()
                .is_some_and(|d| d["event"] == "job.completed" && d["status"] == "failed")
                && l.iter().all(|d| d["status"] != "pending")
        })
        .await;
    let started = &ledger[0];
    assert_eq!(started["event"], "job.started");
    assert_eq!(started["status"], "failed");
    assert_eq!(started["attempt_count"], 1, "410 is not retried");
    assert_eq!(started["attempts"][0]["status_code"], 410);
    let completed = ledger.last().unwrap();
    assert_eq!(
        completed["attempt_count"], 3,
        "the whole schedule, then failed"
    );
    assert_eq!(completed["attempts"].as_array().unwrap().len(), 3);
    assert_eq!(completed["last_error"], "HTTP 500");
    // The receiver saw job.started once and job.completed three times: with
    // nothing pending in the ledger, every request there will be is in.
    let got = rx.drain_now();
    let count = |e: Event| got.iter().filter(|r| r.payload().event == e).count();
    assert_eq!(count(Event::Started), 1);
    assert_eq!(count(Event::Completed), 3);
    app.stop().await;
}

async fn a_hanging_receiver_does_not_hold_up_other_jobs(kind: StoreKind) {
    let mut rx = Receiver::start(|r| {
        if r.path == "/hang" {
            Reply {
                status: 200,
                retry_after: None,
                hang: Some(Duration::from_secs(30)),
            }
        } else {
            Reply::status(200)
        }
    })
    .await;
    // The stuck job's first event times out and is retried for longer than
    // the test lasts: had the healthy job to wait behind it, it would never
    // finish within `T`.
    let app = spawn_app(kind, |c| {
        c.webhook_timeout_ms = 300;
        c.retry_schedule = long_schedule("50ms", 100);
    })
    .await;
    let stuck = app
        .submit_ok(job("https://youtube.com/watch?v=h", &rx.url("/hang"), 2))
        .await;
    // The stuck job's first attempt is hanging.
    let first = rx.next(T).await;
    assert_eq!(first.path, "/hang");
    let healthy = app
        .submit_ok(job("https://youtube.com/watch?v=f", &rx.url("/fine"), 2))
        .await;
    let got = rx.until_terminal(&healthy, T).await;
    assert!(got.iter().all(|r| r.path == "/fine"));
    // The stuck job is still on its first event, timing out.
    let ledger = app
        .wait_for_ledger(&stuck, T, |l| {
            l[0]["attempts"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    assert_eq!(ledger[0]["event"], "job.started");
    assert_eq!(ledger[0]["status"], "pending");
    assert_eq!(ledger[0]["attempts"][0]["error"], "timed out after 300 ms");
    assert!(
        ledger[1..]
            .iter()
            .all(|d| d["attempts"].as_array().unwrap().is_empty()),
        "later events of the stuck job wait their turn"
    );
    app.stop().await;
}

/// A receiver that refuses the first `n` attempts of `job.started`, each
/// after 100 ms, so the refusals take a known minimum time whatever the
/// jitter draws.
async fn refusing_started(n: u32) -> Receiver {
    Receiver::start(move |r| {
        if r.payload().event == Event::Started && r.attempt <= n {
            Reply {
                status: 500,
                retry_after: None,
                hang: Some(Duration::from_millis(100)),
            }
        } else {
            Reply::status(200)
        }
    })
    .await
}

async fn later_events_wait_while_an_earlier_one_is_retried(kind: StoreKind) {
    let mut rx = refusing_started(3).await;
    // A pipeline of about 420 ms, so events are emitted while job.started is
    // refused (300 ms or more) and after.
    let app = spawn_app(kind, |c| c.sim_stage_ms = 60).await;
    let job_id = app
        .submit_ok(job("https://youtube.com/watch?v=o", &rx.url("/o"), 2))
        .await;
    let got = rx.until_terminal(&job_id, T).await;
    let first_ok = got.iter().position(|r| r.ok()).unwrap();
    assert_eq!(first_ok, 3, "three refusals, then success");
    for r in &got[..=first_ok] {
        assert_eq!(
            r.payload().event,
            Event::Started,
            "nothing overtakes job.started while it is retried"
        );
    }
    let mut last = 0;
    for r in got.iter().filter(|r| r.ok()) {
        let s = r.payload().sequence.unwrap();
        assert!(s > last, "delivered in sequence order");
        last = s;
    }
    app.stop().await;
}

async fn overtaken_progress_is_superseded_but_started_and_terminal_never_are(kind: StoreKind) {
    // job.started is refused until the test has seen the job end, so every
    // progress event is overtaken while it waits, however slow the machine.
    let open = Arc::new(AtomicBool::new(false));
    let mut rx = Receiver::start({
        let open = open.clone();
        move |r| {
            if r.payload().event == Event::Started && !open.load(Ordering::SeqCst) {
                Reply {
                    status: 503,
                    retry_after: Some("1".into()),
                    hang: None,
                }
            } else {
                Reply::status(200)
            }
        }
    })
    .await;
    let app = spawn_app(kind, |c| c.retry_schedule = long_schedule("1s", 60)).await;
    let job_id = app
        .submit_ok(job("https://youtube.com/watch?v=s", &rx.url("/s"), 2))
        .await;
    app.wait_for_job(&job_id, T, |v| v.status.is_terminal())
        .await;
    open.store(true, Ordering::SeqCst);
    let got = rx.until_terminal(&job_id, T).await;
    let ledger = app
        .wait_for_ledger(&job_id, T, |l| l.iter().all(|d| d["status"] != "pending"))
        .await;
    let superseded: Vec<u64> = ledger
        .iter()
        .filter(|d| d["status"] == "superseded")
        .map(|d| d["sequence"].as_u64().unwrap())
        .collect();
    let progress = ledger
        .iter()
        .filter(|d| d["event"] == "job.progress")
        .count();
    assert!(progress >= 5);
    assert_eq!(
        superseded.len(),
        progress,
        "every overtaken progress event was superseded"
    );
    for d in &ledger {
        if d["status"] == "superseded" {
            assert_eq!(d["event"], "job.progress");
            assert!(d["attempts"].as_array().unwrap().is_empty(), "never sent");
        } else {
            assert_eq!(d["status"], "delivered");
        }
    }
    // The receiver never saw a superseded event, and saw both ends.
    for r in &got {
        assert!(!superseded.contains(&r.payload().sequence.unwrap()));
    }
    let events: Vec<Event> = got
        .iter()
        .filter(|r| r.ok())
        .map(|r| r.payload().event)
        .collect();
    assert_eq!(events.first(), Some(&Event::Started));
    assert_eq!(events.last(), Some(&Event::Completed));
    app.stop().await;
}

async fn a_delivery_can_be_redelivered_with_the_same_webhook_id(kind: StoreKind) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app(kind, |_| {}).await;
    let job_id = app
        .submit_ok(job("https://youtube.com/watch?v=d", &rx.url("/d"), 1))
        .await;
    let got = rx.until_terminal(&job_id, T).await;
    let completed = got.last().unwrap().clone();
    // Settled: a progress event overtaken while queued ends `superseded`,
    // never `delivered`, so "nothing pending" is the state to wait for.
    app.wait_for_ledger(&job_id, T, |l| l.iter().all(|d| d["status"] != "pending"))
        .await;

    let r = app.redeliver(completed.webhook_id()).await;
    assert_eq!(r.status(), 202);
    let again = rx.next(T).await;
    assert_eq!(again.webhook_id(), completed.webhook_id());
    assert_eq!(again.body, completed.body);
    assert_eq!(again.attempt, 2);
    assert!(again.verified);

    let r = app.redeliver("msg_doesnotexist").await;
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    app.stop().await;
}

async fn shutdown_bounds_in_flight_attempts_and_keeps_the_rest_for_the_next_start(kind: StoreKind) {
    // A receiver that hangs: the attempt in flight at shutdown cannot finish.
    let mut rx = Receiver::start(|_| Reply {
        status: 200,
        retry_after: None,
        hang: Some(Duration::from_secs(30)),
    })
    .await;
    let store = TestStore::new(kind).await;
    let app = spawn_app_on(&store, |c| c.shutdown_grace_ms = 200).await;
    let job_id = app
        .submit_ok(job("https://youtube.com/watch?v=z", &rx.url("/z"), 1))
        .await;
    app.wait_for_job(&job_id, T, |v| v.status.is_terminal())
        .await;
    let first = rx.next(T).await;
    assert_eq!(first.payload().event, Event::Started);
    let began = Instant::now();
    app.stop().await;
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        began.elapsed()
    );

    // Everything is still there for the next start, which sends it at once.
    rx.set_script(|_| Reply::status(200));
    let app = spawn_app_on(&store, |_| {}).await;
    let got = rx.until_terminal(&job_id, T).await;
    let delivered: Vec<Event> = got
        .iter()
        .filter(|r| r.ok())
        .map(|r| r.payload().event)
        .collect();
    assert_eq!(delivered.first(), Some(&Event::Started));
    assert_eq!(delivered.last(), Some(&Event::Completed));
    let ledger = app
        .wait_for_ledger(&job_id, T, |l| l.iter().all(|d| d["status"] != "pending"))
        .await;
    let aborted = ledger[0]["attempts"][0]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(aborted.contains("shut down"), "{aborted}");
    app.stop().await;
}

async fn deliveries_converge_seconds_after_a_down_callback_answers_again(kind: StoreKind) {
    // The callback refuses connections while five jobs run, on a schedule
    // whose next retry is up to an hour away (full jitter: anywhere in the
    // hour, so the chance that one of them falls in the 10 s below is about
    // 1 %): only the origin's own probe can bring them in within seconds of
    // it coming back.
    let port = crate::helpers::free_port();
    let app = spawn_app(kind, |c| c.retry_schedule = "0,1h,1h,1h".parse().unwrap()).await;
    let url = format!("http://127.0.0.1:{port}/hook");
    let mut jobs = Vec::new();
    for i in 0..5 {
        let video = format!("https://youtube.com/watch?v=c{i}");
        jobs.push(app.submit_ok(job(&video, &url, 1)).await);
    }
    for id in &jobs {
        app.wait_for_ledger(id, T, |l| {
            l.first()
                .and_then(|d| d["attempts"].as_array())
                .is_some_and(|a| !a.is_empty())
        })
        .await;
    }

    let mut rx = Receiver::start_on(port, |_| Reply::status(200)).await;
    let back = Instant::now();
    let mut delivered: std::collections::HashMap<String, Vec<u64>> = Default::default();
    let mut done = std::collections::HashSet::new();
    while done.len() < jobs.len() {
        let left = Duration::from_secs(10).saturating_sub(back.elapsed());
        let r = rx.next(left).await;
        assert!(r.ok());
        let p = r.payload();
        delivered
            .entry(p.job_id.clone())
            .or_default()
            .push(p.sequence.unwrap());
        if p.event.is_terminal() {
            done.insert(p.job_id.clone());
        }
    }
    eprintln!(
        "every job terminal {:?} after the callback came back",
        back.elapsed()
    );
    for id in &jobs {
        let seqs = &delivered[id];
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{id}: out of order {seqs:?}"
        );
        assert_eq!(seqs[0], 1, "{id}: job.started first");
    }
    app.stop().await;
}

on_both_stores!(
    a_retry_keeps_the_webhook_id_with_a_fresh_timestamp_and_honours_retry_after,
    gone_stops_the_retries_and_exhausted_retries_fail,
    a_hanging_receiver_does_not_hold_up_other_jobs,
    later_events_wait_while_an_earlier_one_is_retried,
    overtaken_progress_is_superseded_but_started_and_terminal_never_are,
    a_delivery_can_be_redelivered_with_the_same_webhook_id,
    shutdown_bounds_in_flight_attempts_and_keeps_the_rest_for_the_next_start,
    deliveries_converge_seconds_after_a_down_callback_answers_again,
);
