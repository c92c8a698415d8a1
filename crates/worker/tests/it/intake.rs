//! Job submission: validation, the callback policy, authentication and
//! idempotency, each answered in the contract's error shape.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Receiver, StoreKind, TestStore, job, spawn_app, spawn_app_on};

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("errors are JSON");
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    (status, body["error"].clone())
}

async fn every_invalid_field_is_a_422_naming_it(kind: StoreKind) {
    let app = spawn_app(kind, |_| {}).await;
    let ok = "https://youtube.com/watch?v=1";
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "video_url"),
        (json!({"video_url": 5}), "video_url"),
        (json!({"video_url": "not a url"}), "video_url"),
        (json!({"video_url": "ftp://host/v.mp4"}), "video_url"),
        (json!({"video_url": "file:///tmp/v.mp4"}), "video_url"),
        (json!({"video_url": "sim://v?fail_at=nowhere"}), "video_url"),
        (json!({"video_url": ok, "max_clips": 0}), "max_clips"),
        (json!({"video_url": ok, "max_clips": 21}), "max_clips"),
        (json!({"video_url": ok, "max_clips": "five"}), "max_clips"),
        (json!({"video_url": ok, "max_clips": -1}), "max_clips"),
        (
            json!({"video_url": ok, "min_clip_duration_seconds": 4}),
            "min_clip_duration_seconds",
        ),
        (
            json!({"video_url": ok, "max_clip_duration_seconds": 601}),
            "max_clip_duration_seconds",
        ),
        (
            json!({"video_url": ok, "min_clip_duration_seconds": 100, "max_clip_duration_seconds": 50}),
            "min_clip_duration_seconds",
        ),
        (
            json!({"video_url": ok, "callback_url": "ftp://example.com/x"}),
            "callback_url",
        ),
        (
            json!({"video_url": ok, "callback_url": "not a url"}),
            "callback_url",
        ),
        (
            json!({"video_url": ok, "include_captions": "yes"}),
            "include_captions",
        ),
        (
            json!({"video_url": ok, "external_job_id": ""}),
            "external_job_id",
        ),
    ];
    for (body, field) in cases {
        let (status, err) = error_of(app.submit(body.clone()).await).await;
        assert_eq!(status, 422, "{body} -> {err}");
        assert_eq!(err["field"], field, "{body} -> {err}");
    }
    app.stop().await;
}

async fn malformed_json_is_400_and_an_oversized_body_413(kind: StoreKind) {
    let app = spawn_app(kind, |_| {}).await;
    let url = format!("{}/ai-clipping/jobs", app.address);
    for body in [
        "{",
        "{\"video_url\": }",
        "{\"video_url\": \"https://x.io\"",
        "{\"video_url\": \"https://x.io/v\"} trailing",
        "",
    ] {
        let r = app
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(r).await;
        assert_eq!(status, 400, "{body:?}");
        assert_eq!(err["code"], "malformed_json");
    }
    let big = format!(
        "{{\"video_url\": \"https://x.io/v\", \"pad\": \"{}\"}}",
        "a".repeat(1024 * 1024)
    );
    let r = app
        .client
        .post(&url)
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let (status, err) = error_of(r).await;
    assert_eq!(status, 413);
    assert_eq!(err["code"], "payload_too_large");
    // Without a Content-Length (chunked), the read limit catches it.
    let status_line = post_chunked(&app.address, big.as_bytes()).await;
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    app.stop().await;
}

/// Sends `body` with chunked encoding on a raw socket and returns the
/// answer's status line.
async fn post_chunked(address: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = address.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /ai-clipping/jobs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(64 * 1024) {
        // The server may answer and stop reading before the end.
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
            || s.write_all(chunk).await.is_err()
            || s.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut answer = vec![0u8; 1024];
    let n = s.read(&mut answer).await.unwrap_or(0);
    String::from_utf8_lossy(&answer[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn unknown_things_are_json_404s_and_wrong_methods_405(kind: StoreKind) {
    let app = spawn_app(kind, |_| {}).await;
    let (status, err) = error_of(app.get_job("no-such-job").await).await;
    assert_eq!((status, err["code"].as_str()), (404, Some("not_found")));
    let r = app
        .client
        .get(format!("{}/ai-clipping/jobs/nope/webhooks", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 404);
    let r = app
        .client
        .get(format!("{}/elsewhere", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 404);
    let r = app
        .client
        .delete(format!("{}/ai-clipping/jobs", app.address))
        .send()
        .await
        .unwrap();
    let (status, err) = error_of(r).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    app.stop().await;
}

async fn with_an_api_token_submission_needs_the_bearer_token(kind: StoreKind) {
    let app = spawn_app(kind, |c| {
        c.api_token = Some("s3cret-token".parse().unwrap())
    })
    .await;
    let url = format!("{}/ai-clipping/jobs", app.address);
    let body = json!({"video_url": "https://youtube.com/watch?v=t"});
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("s3cret-token"),
        Some("Basic s3cret-token"),
    ] {
        let mut req = app.client.post(&url).json(&body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let (status, err) = error_of(r).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (401, Some("unauthorized")),
            "{auth:?}"
        );
    }
    let r = app
        .client
        .post(&url)
        .bearer_auth("s3cret-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "queued");
    assert_eq!(
        location,
        format!("/ai-clipping/jobs/{}", v["job_id"].as_str().unwrap())
    );
    app.stop().await;
}

async fn the_same_external_job_id_returns_the_first_job_even_after_a_restart(kind: StoreKind) {
    let store = TestStore::new(kind).await;
    let body = json!({"video_url": "https://youtube.com/watch?v=i", "external_job_id": "ext-42"});
    let app = spawn_app_on(&store, |_| {}).await;
    let first = app.submit_ok(body.clone()).await;
    let again = app.submit_ok(body.clone()).await;
    assert_eq!(first, again);
    let other = app
        .submit_ok(
            json!({"video_url": "https://youtube.com/watch?v=i", "external_job_id": "ext-43"}),
        )
        .await;
    assert_ne!(first, other);
    app.stop().await;

    let app = spawn_app_on(&store, |_| {}).await;
    let after_restart = app.submit_ok(body).await;
    assert_eq!(first, after_restart);
    app.stop().await;
}

/// Submits a job with `callback` and returns the status and error field.
async fn try_callback(app: &crate::helpers::TestApp, callback: &str) -> (u16, Value) {
    let r = app
        .submit(job("https://youtube.com/watch?v=p", callback, 1))
        .await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn the_callback_policy_refuses_internal_addresses_at_submission(kind: StoreKind) {
    let strict = spawn_app(kind, |c| c.allow_private_callbacks = false).await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost:9/x",
        "http://10.0.0.1/x",
        "http://172.16.5.5/x",
        "http://192.168.1.1/x",
        "http://[::1]/x",
        "http://[fc00::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://169.254.169.254/latest/meta-data",
        "http://169.254.1.1/x",
        "http://[fe80::1]/x",
        "http://224.0.0.1/x",
        "http://[ff02::1]/x",
        "http://0.0.0.0/x",
        "http://[::]/x",
        // IPv6 spellings of loopback: compatible, translated, 6to4, NAT64.
        "http://[::127.0.0.1]/x",
        "http://[::ffff:0:7f00:1]/x",
        "http://[2002:7f00:1::]/x",
        "http://[64:ff9b::7f00:1]/x",
        // Special-purpose ranges.
        "http://192.0.0.8/x",
        "http://198.18.0.1/x",
        "http://192.0.2.1/x",
        "http://198.51.100.1/x",
        "http://203.0.113.1/x",
        "http://240.0.0.1/x",
        "http://100.64.0.1/x",
        "http://[2001:db8::1]/x",
    ] {
        let (status, body) = try_callback(&strict, url).await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["error"]["field"], "callback_url", "{url}");
        assert_eq!(body["error"]["code"], "callback_not_allowed", "{url}");
    }
    strict.stop().await;

    // --allow-private-callbacks lifts loopback and private, never the rest.
    let open = spawn_app(kind, |c| c.allow_private_callbacks = true).await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost:9/x",
        "http://10.0.0.1/x",
    ] {
        assert_eq!(try_callback(&open, url).await.0, 202, "{url}");
    }
    for url in [
        "http://169.254.169.254/x",
        "http://[fe80::1]/x",
        "http://224.0.0.1/x",
        "http://0.0.0.0/x",
    ] {
        assert_eq!(try_callback(&open, url).await.0, 422, "{url}");
    }
    open.stop().await;

    // --callback-allow lifts only what it names.
    let listed = spawn_app(kind, |c| {
        c.allow_private_callbacks = false;
        c.callback_allow = vec!["localhost".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
    })
    .await;
    for url in ["http://localhost:9/x", "http://10.1.2.3/x"] {
        assert_eq!(try_callback(&listed, url).await.0, 202, "{url}");
    }
    for url in [
        "http://127.0.0.1:9/x",
        "http://192.168.1.1/x",
        "http://169.254.169.254/x",
    ] {
        assert_eq!(try_callback(&listed, url).await.0, 422, "{url}");
    }
    listed.stop().await;
}

async fn the_policy_is_checked_again_before_every_attempt(kind: StoreKind) {
    // Accepted by a permissive worker, the jobs' deliveries are then resumed
    // by a strict one on the same store: they must not reach the receiver,
    // whether the callback is an address literal (checked by the sender) or
    // a name (checked by the client's resolver).
    // The receiver fails everything while the permissive worker runs, so the
    // deliveries stay pending.
    let mut rx = Receiver::start(|_| crate::helpers::Reply::status(500)).await;
    let store = TestStore::new(kind).await;
    let port = rx.addr.port();
    let schedule = "0,10s,10s,10s,10s,10s";
    let permissive = spawn_app_on(&store, |c| c.retry_schedule = schedule.parse().unwrap()).await;
    let literal = permissive
        .submit_ok(job(
            "https://youtube.com/watch?v=l",
            &format!("http://127.0.0.1:{port}/l"),
            1,
        ))
        .await;
    let named = permissive
        .submit_ok(job(
            "https://youtube.com/watch?v=n",
            &format!("http://localhost:{port}/n"),
            1,
        ))
        .await;
    for id in [&literal, &named] {
        permissive
            .wait_for_job(id, Duration::from_secs(10), |v| v.status.is_terminal())
            .await;
    }
    permissive.stop().await;
    rx.set_script(|_| crate::helpers::Reply::status(200));
    // The permissive worker has stopped: whatever it sent is in already.
    let _ = rx.drain_now();

    let strict = spawn_app_on(&store, |c| {
        c.allow_private_callbacks = false;
        c.retry_schedule = schedule.parse().unwrap();
    })
    .await;
    for (job_id, why) in [
        (&literal, "refused by the callback policy"),
        (&named, "localhost resolves to 127.0.0.1"),
    ] {
        let has = move |l: &[Value]| {
            l[0]["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["error"].as_str().is_some_and(|e| e.contains(why)))
        };
        let ledger = strict
            .wait_for_ledger(job_id, Duration::from_secs(10), has)
            .await;
        assert_eq!(
            ledger[0]["status"], "pending",
            "refusals are retried like errors"
        );
    }
    // The policy refuses before connecting, and both jobs' first deliveries
    // show a refusal (their later events wait behind them): had anything
    // been let through, it would be in already.
    let got = rx.drain_now();
    assert!(got.is_empty(), "nothing reached the receiver: {got:?}");
    strict.stop().await;
}

async fn an_allowed_host_name_is_resolved_checked_and_delivered_to(kind: StoreKind) {
    // The delivery goes through the policy's resolver (a name, not an
    // address literal) and reaches the receiver on the checked address.
    let mut rx = Receiver::ok().await;
    let app = spawn_app(kind, |c| {
        c.allow_private_callbacks = false;
        c.callback_allow = vec!["localhost".parse().unwrap()];
    })
    .await;
    let callback = format!("http://localhost:{}/named", rx.addr.port());
    let job_id = app
        .submit_ok(job("https://youtube.com/watch?v=n", &callback, 1))
        .await;
    let got = rx.until_terminal(&job_id, Duration::from_secs(10)).await;
    assert!(got.iter().all(|r| r.path == "/named" && r.verified));
    app.stop().await;
}

on_both_stores!(
    every_invalid_field_is_a_422_naming_it,
    malformed_json_is_400_and_an_oversized_body_413,
    unknown_things_are_json_404s_and_wrong_methods_405,
    with_an_api_token_submission_needs_the_bearer_token,
    the_same_external_job_id_returns_the_first_job_even_after_a_restart,
    the_callback_policy_refuses_internal_addresses_at_submission,
    the_policy_is_checked_again_before_every_attempt,
    an_allowed_host_name_is_resolved_checked_and_delivered_to,
);
