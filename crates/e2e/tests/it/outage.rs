//! The API stopped for a minute in the middle of twenty jobs, with the
//! contract's default retry schedule: once the API answers again, every job
//! is terminal and every event is on the owner's socket within 10 s.
//!
//! Without the worker's recovery the jobs would trickle in over minutes:
//! after a minute of refusals most pending deliveries sleep through the
//! schedule's 2-minute step (0 s, 1 s, 5 s, 30 s, 2 min, full jitter), and
//! the API's reconciler only looks at a quiet job after 5 minutes. What
//! brings them in is the first delivery that gets through (a probe of the
//! down origin, or a retry that happens to fall due) releasing every lane
//! waiting on that origin; with that release removed this test sees 3 of 20
//! jobs end in time. That the probe alone finds the way back, with every
//! retry an hour away, is the worker's own test
//! `deliveries_converge_seconds_after_a_down_callback_answers_again`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::stack::{Stack, WorkerOptions};

const JOBS: usize = 20;
const OUTAGE: Duration = Duration::from_secs(60);
/// The bound, from the API answering again.
const CONVERGENCE: Duration = Duration::from_secs(10);

fn terminal(kind: &str) -> bool {
    kind == "clipping.completed" || kind == "clipping.failed"
}

/// A WebSocket of the stack's user, replaying events after `since`.
async fn open_socket(
    stack: &Stack,
    since: i64,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let ticket = stack
        .call(reqwest::Method::POST, "/api/ws-ticket", None)
        .await["ticket"]
        .as_str()
        .expect("a ticket")
        .to_owned();
    let url = format!(
        "ws://127.0.0.1:{}/ws?ticket={ticket}&since={since}",
        stack.api_port
    );
    tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket opens")
        .0
}

#[tokio::test]
async fn after_a_minute_without_the_api_every_job_settles_within_seconds_of_its_return() {
    // 20 jobs of 8 stages of 1.5 s, five at a time: they start, progress and
    // end all through the outage, so deliveries of every kind (started,
    // progress, completed) are pending at every step of the schedule.
    let mut stack = Stack::start_with(WorkerOptions {
        stage_ms: 1500,
        retry_schedule: None,
        max_concurrent_jobs: 5,
    })
    .await;

    let mut socket = open_socket(&stack, 0).await;
    let mut jobs = Vec::new();
    for _ in 0..JOBS {
        jobs.push(stack.submit("https://videos.example/talk.mp4", 3).await);
    }

    // Every job reaches the worker before the API goes (the API's submitter
    // hands them over), and the first ones have started.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = stack
            .call(reqwest::Method::GET, "/api/clipping-jobs", None)
            .await;
        let handed_over = list["jobs"]
            .as_array()
            .expect("a list of jobs")
            .iter()
            .filter(|j| j["workerJobId"].is_string())
            .count();
        if handed_over == JOBS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {handed_over} of {JOBS} jobs reached the worker"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut last_seen = 0;
    while let Some(frame) = socket.next().await {
        if let Message::Text(text) = frame.expect("a frame") {
            let v: Value = serde_json::from_str(&text).expect("JSON frames");
            last_seen = v["eventId"].as_i64().expect("an eventId");
            if v["type"] == "clipping.started" {
                break;
            }
        }
    }
    drop(socket);

    stack.kill_api().await;
    tokio::time::sleep(OUTAGE).await;
    stack.start_api().await; // returns once /readyz answers 200
    let back = Instant::now();

    // Everything after the last event seen before the outage, in order.
    let mut socket = open_socket(&stack, last_seen).await;
    let mut ended: HashSet<String> = HashSet::new();
    let mut per_job: HashMap<String, Vec<Value>> = HashMap::new();
    let mut expected_id = last_seen + 1;
    let waited = tokio::time::timeout(CONVERGENCE.saturating_sub(back.elapsed()), async {
        while ended.len() < JOBS {
            let frame = socket
                .next()
                .await
                .expect("the socket stays open")
                .expect("a frame");
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(&text).expect("JSON frames");
            assert_eq!(v["eventId"], expected_id, "gap-free and in order: {v}");
            expected_id += 1;
            let job = v["jobId"].as_str().expect("a jobId").to_owned();
            if terminal(v["type"].as_str().expect("a type")) {
                assert!(ended.insert(job.clone()), "one terminal event: {v}");
            }
            per_job.entry(job).or_default().push(v);
        }
    })
    .await;
    let took = back.elapsed();
    assert!(
        waited.is_ok(),
        "after {took:?} only {} of {JOBS} jobs had ended on the socket",
        ended.len()
    );
    eprintln!("every job ended on the socket {took:?} after the API came back");

    // Every job is terminal in the API too, and its progress never went back.
    for job in &jobs {
        let j = stack
            .call(
                reqwest::Method::GET,
                &format!("/api/clipping-jobs/{job}"),
                None,
            )
            .await["job"]
            .clone();
        assert_eq!(j["status"], "completed", "{j}");
        let mut last = -1.0;
        for e in per_job.get(job).into_iter().flatten() {
            if let Some(p) = e["progressPercent"].as_f64() {
                assert!(p >= last, "progress never goes back: {e}");
                last = p;
            }
        }
    }

    stack.cleanup().await;
}
