//! Both real services, no browser: a job submitted through REST is followed
//! over the WebSocket from `clipping.started` to `clipping.completed`, and its
//! clips are then found through REST.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::stack::Stack;

#[tokio::test]
async fn a_job_flows_from_rest_through_webhooks_to_the_websocket_and_back() {
    let stack = Stack::start(60).await;

    let ticket = stack
        .call(reqwest::Method::POST, "/api/ws-ticket", None)
        .await["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    let ws_url = format!("ws://127.0.0.1:{}/ws?ticket={ticket}", stack.api_port);
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("WebSocket opens");

    let job_id = stack.submit("https://videos.example/talk.mp4", 3).await;

    let mut events: Vec<Value> = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(msg) = ws.next().await {
            let Message::Text(text) = msg.expect("a frame") else {
                continue;
            };
            let v: Value = serde_json::from_str(&text).expect("JSON frames");
            assert_eq!(v["jobId"], job_id.as_str(), "only this user's job exists");
            let kind = v["type"].as_str().unwrap().to_owned();
            events.push(v);
            if kind == "clipping.completed" || kind == "clipping.failed" {
                return kind;
            }
        }
        panic!("the socket closed before the job ended");
    })
    .await
    .expect("the job ends within a minute");
    assert_eq!(outcome, "clipping.completed");

    // The order a browser relies on.
    assert_eq!(events[0]["type"], "clipping.started", "{events:#?}");
    let ids: Vec<i64> = events
        .iter()
        .map(|e| e["eventId"].as_i64().unwrap())
        .collect();
    for pair in ids.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "eventIds are gap-free: {ids:?}");
    }
    let mut last = -1.0;
    for e in events.iter().filter(|e| e["type"] == "clipping.progress") {
        let p = e["progressPercent"].as_f64().unwrap();
        assert!(p >= last, "progress never goes back: {events:#?}");
        last = p;
    }
    let done = events.last().unwrap();
    assert_eq!(done["clipCount"], 3);
    assert_eq!(done["clips"].as_array().map(Vec::len), Some(3));

    let job = stack
        .call(
            reqwest::Method::GET,
            &format!("/api/clipping-jobs/{job_id}"),
            None,
        )
        .await["job"]
        .clone();
    assert_eq!(job["status"], "completed");
    assert_eq!(job["progressPercent"], 100);
    assert!(job["workerJobId"].is_string(), "{job}");
    let clips = job["clips"].as_array().expect("clips inside the job");
    let indexes: Vec<i64> = clips
        .iter()
        .map(|c| c["clipIndex"].as_i64().unwrap())
        .collect();
    assert_eq!(indexes, vec![0, 1, 2]);
    for c in clips {
        assert!(c["url"].as_str().unwrap().starts_with("https://"), "{c}");
        assert!(c["durationMs"].as_i64().unwrap() > 0);
    }

    // The job is in the caller's list, and the worker agrees.
    let list = stack
        .call(reqwest::Method::GET, "/api/clipping-jobs", None)
        .await;
    assert_eq!(list["jobs"][0]["id"], job_id.as_str());
    let worker_job: Value = stack
        .http
        .get(format!(
            "{}/ai-clipping/jobs/{}",
            stack.worker_url,
            job["workerJobId"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(worker_job["status"], "completed");
    assert_eq!(worker_job["external_job_id"], job_id.as_str());

    stack.cleanup().await;
}
