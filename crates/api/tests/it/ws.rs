//! `GET /ws`: authentication, isolation, replay, the push rule, slow
//! clients, several instances — over real sockets — and the socket loop
//! itself driven through channels.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use api::hub::{Hub, HubEvent, Subscription};
use api::store::EventRow;
use api::ws::{EventLog, SocketParams, run_socket};
use axum::extract::ws::Message as AxMessage;
use futures_util::{Sink, Stream, StreamExt as _};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::*;

fn http_status(e: tungstenite::Error) -> u16 {
    match e {
        tungstenite::Error::Http(r) => r.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn a_socket_needs_a_token_or_a_ticket(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    assert_eq!(http_status(app.ws("", None, None).await.unwrap_err()), 401);
    assert_eq!(
        http_status(app.ws("", Some("vct_bogus"), None).await.unwrap_err()),
        401
    );
    assert_eq!(
        http_status(app.ws("?ticket=vcw_bogus", None, None).await.unwrap_err()),
        401
    );
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn tickets_are_single_use_and_expire(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("a@example.com").await;
    let r: Value = app.ws_ticket(&token).await.json().await.unwrap();
    let ticket = r["ticket"].as_str().unwrap().to_owned();
    let expires: chrono::DateTime<chrono::Utc> = r["expiresAt"].as_str().unwrap().parse().unwrap();
    let ttl = expires - chrono::Utc::now();
    assert!(ttl > chrono::Duration::seconds(55) && ttl <= chrono::Duration::seconds(60));

    let ws = app
        .ws(&format!("?ticket={ticket}"), None, None)
        .await
        .unwrap();
    close(ws).await;
    assert_eq!(
        http_status(
            app.ws(&format!("?ticket={ticket}"), None, None)
                .await
                .unwrap_err()
        ),
        401,
        "a ticket works once"
    );

    let r: Value = app.ws_ticket(&token).await.json().await.unwrap();
    let ticket = r["ticket"].as_str().unwrap().to_owned();
    sqlx::query("UPDATE ws_tickets SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        http_status(
            app.ws(&format!("?ticket={ticket}"), None, None)
                .await
                .unwrap_err()
        ),
        401,
        "an expired ticket is refused"
    );
    // Stored hashed: the clear ticket appears nowhere.
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM ws_tickets WHERE ticket_hash = $1")
        .bind(ticket.as_bytes())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn a_request_that_is_not_an_upgrade_leaves_the_ticket_unused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("a@example.com").await;
    let r: Value = app.ws_ticket(&token).await.json().await.unwrap();
    let ticket = r["ticket"].as_str().unwrap().to_owned();

    // A plain GET (a link preview, a prefetch, a log replayer) is refused as
    // not a WebSocket, and the ticket survives it.
    let plain = app.get(&format!("/ws?ticket={ticket}")).await;
    assert_eq!(plain.status(), 400);
    let body: Value = plain.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_a_websocket", "{body}");

    let ws = app
        .ws(&format!("?ticket={ticket}"), None, None)
        .await
        .expect("the ticket still opens a socket");
    close(ws).await;
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn foreign_browser_origins_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("a@example.com").await;
    let refused = app
        .ws("", Some(&token), Some("http://evil.example"))
        .await
        .unwrap_err();
    assert_eq!(http_status(refused), 403);
    // The public URL's origin (the default) and no Origin at all pass.
    close(app.ws("", Some(&token), Some(&app.address)).await.unwrap()).await;
    close(app.ws("", Some(&token), None).await.unwrap()).await;
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn each_user_receives_only_their_own_events(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, a) = app.create_user("a@example.com").await;
    let (_, b) = app.create_user("b@example.com").await;
    let job_a = app.create_job(&a).await;
    let job_b = app.create_job(&b).await;
    let mut ws_a = app.ws_as(&a, "").await;
    let mut ws_b = app.ws_as(&b, "").await;

    app.deliver(&started(job_a)).await;
    let e = next_event(&mut ws_a, 5).await;
    assert_eq!(e["type"], "clipping.started");
    assert_eq!(e["jobId"], job_a.to_string());
    assert_eq!(e["eventId"], 1);
    assert_eq!(e["status"], "downloading");
    assert_eq!(e["progressPercent"], 0);
    assert_eq!(e["currentStep"], "Starting job processing");
    assert_eq!(e["message"], "Your video is being processed");
    assert!(e["at"].as_str().unwrap().ends_with('Z'));

    app.deliver(&started(job_b)).await;
    let e = next_event(&mut ws_b, 5).await;
    assert_eq!(e["jobId"], job_b.to_string(), "B's first event is B's own");
    assert_eq!(e["eventId"], 1, "event ids are per user");
    // Barrier: A's next event is A's own second one; had B's event leaked to
    // A's socket, it would have come first.
    app.deliver(&progress(job_a, 2, 50.0, "Transcribing")).await;
    let e = next_event(&mut ws_a, 5).await;
    assert_eq!(
        (e["jobId"].as_str(), e["eventId"].as_i64()),
        (Some(&*job_a.to_string()), Some(2))
    );
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn job_filter_narrows_to_one_job(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, a) = app.create_user("a@example.com").await;
    let one = app.create_job(&a).await;
    let two = app.create_job(&a).await;
    let mut ws = app.ws_as(&a, &format!("?job={two}")).await;
    app.deliver(&started(one)).await;
    app.deliver(&started(two)).await;
    let e = next_event(&mut ws, 5).await;
    assert_eq!(e["jobId"], two.to_string());
    assert_eq!(e["eventId"], 2);
    assert_eq!(
        http_status(app.ws("?job=nope", Some(&a), None).await.unwrap_err()),
        400
    );
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn progress_pushes_follow_the_ten_percent_rule(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, a) = app.create_user("a@example.com").await;
    let one = app.create_job(&a).await;
    let two = app.create_job(&a).await;
    let mut ws = app.ws_as(&a, "").await;

    app.deliver(&started(one)).await;
    app.deliver(&progress(one, 2, 15.0, "Transcribing")).await;
    app.deliver(&progress(one, 3, 25.0, "Transcribing")).await; // 15 → 25: push
    app.deliver(&started(two)).await;
    app.deliver(&progress(two, 2, 21.0, "Transcribing")).await;
    app.deliver(&progress(two, 3, 29.0, "Transcribing")).await; // 21 → 29: none
    app.deliver(&progress(two, 4, 29.5, "Rendering")).await; // step text changed: push
    let mut p = progress(two, 5, 29.6, "Rendering");
    p["status"] = json!("rendering"); // status changed: push
    app.deliver(&p).await;
    app.deliver(&completed(two, 6)).await;

    let mut seen = Vec::new();
    for _ in 0..8 {
        let e = next_event(&mut ws, 5).await;
        seen.push((
            e["jobId"].as_str().unwrap() == one.to_string(),
            e["type"].as_str().unwrap().to_owned(),
            e["progressPercent"].clone(),
        ));
    }
    let expected = vec![
        (true, "clipping.started".to_owned(), json!(0)),
        (true, "clipping.progress".to_owned(), json!(15)),
        (true, "clipping.progress".to_owned(), json!(25)),
        (false, "clipping.started".to_owned(), json!(0)),
        (false, "clipping.progress".to_owned(), json!(21)),
        (false, "clipping.progress".to_owned(), json!(29.5)),
        (false, "clipping.progress".to_owned(), json!(29.6)),
        (false, "clipping.completed".to_owned(), Value::Null),
    ];
    assert_eq!(seen, expected);
    // Barrier: a later push arrives next, so nothing else was pushed between.
    app.deliver(&failed(one, 4, 25.0, "boom")).await;
    let e = next_event(&mut ws, 5).await;
    assert_eq!(
        (e["type"].as_str(), e["eventId"].as_i64()),
        (Some("clipping.failed"), Some(9))
    );
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn since_replays_then_goes_live_without_gap_or_repeat(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, a) = app.create_user("a@example.com").await;
    let job = app.create_job(&a).await;
    app.deliver(&started(job)).await;
    for seq in 2..=10u64 {
        app.deliver(&progress(job, seq, seq as f64, &format!("step {seq}")))
            .await;
    }
    // Events keep arriving while the socket connects and replays.
    let address = app.address.clone();
    let feeder = tokio::spawn({
        let app_pool = app.pool.clone();
        let secret = signing::SecretSet::parse_list(SECRET).unwrap();
        async move {
            let client = reqwest::Client::new();
            for seq in 11..=40u64 {
                let body =
                    serde_json::to_vec(&progress(job, seq, seq as f64, &format!("step {seq}")))
                        .unwrap();
                let h = secret.headers(
                    &signing::new_message_id(),
                    chrono::Utc::now().timestamp(),
                    &body,
                );
                let mut req = client
                    .post(format!("{address}/webhooks/clipping"))
                    .body(body);
                for (k, v) in h.pairs() {
                    req = req.header(k, v);
                }
                assert_eq!(req.send().await.unwrap().status(), 200);
            }
            drop(app_pool);
        }
    });
    let mut ws = app.ws_as(&a, "?since=5").await;
    let mut ids = Vec::new();
    while ids.last() != Some(&40) {
        let e = next_event(&mut ws, 10).await;
        ids.push(e["eventId"].as_i64().unwrap());
    }
    feeder.await.unwrap();
    assert_eq!(ids, (6..=40).collect::<Vec<_>>());
    // Barrier: the next event is 41, so no repeat of any earlier one is
    // still on its way.
    app.deliver(&progress(job, 41, 41.0, "step 41")).await;
    assert_eq!(next_event(&mut ws, 10).await["eventId"], 41);
}

/// Appends `n` large events for `user` straight into the log, as a burst.
async fn burst(pool: &PgPool, user: Uuid, job: Uuid, n: i64, pad: i32) {
    sqlx::query(
        "WITH u AS (UPDATE users SET last_event_id = last_event_id + $2 WHERE id = $1 \
                    RETURNING last_event_id) \
         INSERT INTO user_events (user_id, event_id, job_id, message) \
         SELECT $1, u.last_event_id - $2 + g, $3, \
                jsonb_build_object('type', 'clipping.progress', 'eventId', u.last_event_id - $2 + g, \
                                   'jobId', $3::text, 'pad', repeat('x', $4)) \
         FROM u, generate_series(1, $2) AS g",
    )
    .bind(user)
    .bind(n)
    .bind(job)
    .bind(pad)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("SELECT pg_notify('api_events', $1::text || ':0')")
        .bind(user)
        .execute(pool)
        .await
        .unwrap();
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn a_slow_client_is_closed_with_1013_while_others_keep_receiving(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |c| c.tuning.ws_queue = 32).await;
    let (slow_user, a) = app.create_user("slow@example.com").await;
    let (_, b) = app.create_user("b@example.com").await;
    let job_a = app.create_job(&a).await;
    let job_b = app.create_job(&b).await;
    let mut slow = app.ws_as(&a, "").await;
    let mut other = app.ws_as(&b, "").await;

    // ~24 MiB for a client that reads nothing: more than the kernel buffers
    // and the queue together.
    burst(&app.pool, slow_user, job_a, 3000, 8000).await;
    wait_until(|| async { app.state.hub.connections() == 1 }).await;

    app.deliver(&started(job_b)).await;
    let e = next_event(&mut other, 5).await;
    assert_eq!(e["jobId"], job_b.to_string());

    let (code, texts) = read_until_close(&mut slow, 20).await;
    assert_eq!(code, Some(CloseCode::Again), "after {texts} frames");
    assert!(texts < 3000, "{texts}");
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn a_webhook_received_by_one_instance_reaches_a_socket_on_another(
    opts: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool_one = opts.clone().connect_with(connect.clone()).await.unwrap();
    let pool_two = opts.connect_with(connect).await.unwrap();
    let one = TestApp::spawn(pool_one).await;
    // The second instance polls less often than the test lasts, so only a
    // NOTIFY from the first can wake it.
    let two = TestApp::spawn_with(pool_two, |c| c.tuning.hub_poll = Duration::from_secs(600)).await;
    let (_, a) = one.create_user("a@example.com").await;
    let job = one.create_job(&a).await;
    let mut ws = two.ws_as(&a, "").await;

    one.deliver(&started(job)).await;
    let e = next_event(&mut ws, 10).await;
    assert_eq!(e["jobId"], job.to_string());
    assert_eq!(e["type"], "clipping.started");
    one.deliver(&completed(job, 2)).await;
    let e = next_event(&mut ws, 5).await;
    assert_eq!(e["type"], "clipping.completed");
    assert_eq!(e["clipCount"], 2);
    assert_eq!(e["message"], "Your 2 clips are ready!");
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn too_many_sockets_for_one_user_are_refused(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |c| c.tuning.ws_max_per_user = 2).await;
    let (_, a) = app.create_user("a@example.com").await;
    let _one = app.ws_as(&a, "").await;
    let _two = app.ws_as(&a, "").await;
    assert_eq!(
        http_status(app.ws("", Some(&a), None).await.unwrap_err()),
        429
    );
}

// ------------------------------------------------- the loop over channels

/// A socket made of two channels.
struct ChannelSocket {
    out: mpsc::UnboundedSender<AxMessage>,
    inp: mpsc::UnboundedReceiver<AxMessage>,
    /// When set, sending never completes (a client that stopped reading).
    stalled: bool,
}

impl ChannelSocket {
    /// A socket, the receiver of what the loop sends, and the sender of what
    /// the "client" says.
    fn new(
        stalled: bool,
    ) -> (
        Self,
        mpsc::UnboundedReceiver<AxMessage>,
        mpsc::UnboundedSender<AxMessage>,
    ) {
        let (out, out_rx) = mpsc::unbounded_channel();
        let (in_tx, inp) = mpsc::unbounded_channel();
        (Self { out, inp, stalled }, out_rx, in_tx)
    }
}

impl Sink<AxMessage> for ChannelSocket {
    type Error = ();
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        if self.stalled {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }
    fn start_send(self: Pin<&mut Self>, item: AxMessage) -> Result<(), ()> {
        self.out.send(item).map_err(|_| ())
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Ready(Ok(()))
    }
}

impl Stream for ChannelSocket {
    type Item = Result<AxMessage, ()>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inp.poll_recv(cx).map(|m| m.map(Ok))
    }
}

/// An in-memory event log.
struct MemLog(Mutex<Vec<EventRow>>);

impl EventLog for MemLog {
    async fn after(
        &self,
        user: Uuid,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>, sqlx::Error> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.user_id == user && r.event_id > after)
            .take(limit as usize)
            .cloned()
            .collect())
    }
}

fn row(user: Uuid, job: Uuid, id: i64) -> EventRow {
    EventRow {
        user_id: user,
        event_id: id,
        job_id: job,
        message: json!({"eventId": id, "jobId": job}).to_string(),
    }
}

fn params(user: Uuid, start: i64) -> SocketParams {
    SocketParams {
        user,
        job: None,
        since: None,
        start,
        ping: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(60),
    }
}

fn id_of(m: &AxMessage) -> i64 {
    match m {
        AxMessage::Text(t) => serde_json::from_str::<Value>(t).unwrap()["eventId"]
            .as_i64()
            .unwrap(),
        other => panic!("not text: {other:?}"),
    }
}

fn event(user: Uuid, job: Uuid, id: i64) -> std::sync::Arc<HubEvent> {
    std::sync::Arc::new(HubEvent::from(row(user, job, id)))
}

#[tokio::test]
async fn the_loop_fills_gaps_and_skips_repeats() {
    let user = Uuid::new_v4();
    let job = Uuid::new_v4();
    let log = MemLog(Mutex::new((1..=8).map(|i| row(user, job, i)).collect()));
    // Fed by hand, not by a hub: the hub never repeats an id to one socket,
    // so only this way do repeats and gaps reach the loop's own checks.
    let (sub, feed) = Subscription::detached(16);
    let (socket, mut out, _in_tx) = ChannelSocket::new(false);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_socket(
        socket,
        sub,
        log,
        params(user, 2),
        shutdown.clone(),
    ));

    for id in [
        3, // next in line: sent
        3, // a repeat (a second hub cursor, a replayed page): skipped
        2, // behind where the socket started: skipped
        6, // ahead (a lost wake-up): 4 and 5 are read from the log first
        5, // a late copy of one the gap fill sent: skipped
        7, // the barrier: once it is out, every earlier decision was made
    ] {
        feed.send(event(user, job, id)).await.unwrap();
    }
    let mut got = Vec::new();
    while got.last() != Some(&7) {
        got.push(id_of(&out.recv().await.unwrap()));
    }
    assert_eq!(got, [3, 4, 5, 6, 7]);
    assert!(out.try_recv().is_err(), "nothing else was sent");
    shutdown.cancel();
    assert_eq!(task.await.unwrap(), api::ws::End::Shutdown);
    match out.recv().await.unwrap() {
        AxMessage::Close(Some(f)) => assert_eq!(f.code, 1001),
        other => panic!("expected a close, got {other:?}"),
    }
}

#[tokio::test]
async fn the_loop_replays_since_then_filters_by_job() {
    let user = Uuid::new_v4();
    let (mine, other) = (Uuid::new_v4(), Uuid::new_v4());
    let log = MemLog(Mutex::new(
        (1..=6)
            .map(|i| row(user, if i % 2 == 0 { mine } else { other }, i))
            .collect(),
    ));
    let hub = Hub::new(16, 4);
    let sub = hub.subscribe(user, 6).unwrap();
    let (socket, mut out, in_tx) = ChannelSocket::new(false);
    let mut p = params(user, 6);
    p.since = Some(1);
    p.job = Some(mine);
    let task = tokio::spawn(run_socket(socket, sub, log, p, CancellationToken::new()));
    let got: Vec<i64> = [out.recv().await, out.recv().await, out.recv().await]
        .iter()
        .map(|m| id_of(m.as_ref().unwrap()))
        .collect();
    assert_eq!(got, [2, 4, 6]);
    hub.fan_out(vec![row(user, other, 7), row(user, mine, 8)]);
    assert_eq!(id_of(&out.recv().await.unwrap()), 8);
    // The client closing ends the loop.
    in_tx.send(AxMessage::Close(None)).unwrap();
    assert_eq!(task.await.unwrap(), api::ws::End::ClientGone);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_socket_is_dropped_by_the_hub_and_ends_too_slow() {
    let user = Uuid::new_v4();
    let job = Uuid::new_v4();
    let hub = Hub::new(4, 4);
    let sub = hub.subscribe(user, 0).unwrap();
    let healthy = hub.subscribe(user, 0).unwrap();
    let (socket, _out, _in_tx) = ChannelSocket::new(true);
    let log = MemLog(Mutex::new(Vec::new()));
    let task = tokio::spawn(run_socket(
        socket,
        sub,
        log,
        params(user, 0),
        CancellationToken::new(),
    ));
    for i in 1..=6 {
        hub.fan_out(vec![row(user, job, i)]);
        tokio::task::yield_now().await;
    }
    assert_eq!(task.await.unwrap(), api::ws::End::TooSlow);
    assert_eq!(hub.connections(), 0, "both queues overflowed");
    assert!(healthy.lagged.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_pinged_then_closed() {
    let user = Uuid::new_v4();
    let hub = Hub::new(4, 4);
    let sub = hub.subscribe(user, 0).unwrap();
    let (socket, mut out, _in_tx) = ChannelSocket::new(false);
    let log = MemLog(Mutex::new(Vec::new()));
    let task = tokio::spawn(run_socket(
        socket,
        sub,
        log,
        params(user, 0),
        CancellationToken::new(),
    ));
    assert_eq!(task.await.unwrap(), api::ws::End::IdleTimeout);
    let mut pings = 0;
    while let Ok(m) = out.try_recv() {
        match m {
            AxMessage::Ping(_) => pings += 1,
            AxMessage::Close(Some(f)) => assert_eq!(f.code, 1001),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(pings, 2, "pinged at 20 s and 40 s, closed at 60 s");
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn the_hub_listens_again_after_its_connection_is_killed(pool: PgPool) {
    // A poll so slow that only NOTIFY can deliver within the test.
    let app = TestApp::spawn_with(pool, |c| c.tuning.hub_poll = Duration::from_secs(600)).await;
    let (_, a) = app.create_user("a@example.com").await;
    let job = app.create_job(&a).await;
    let mut ws = app.ws_as(&a, "").await;
    let listeners = || async {
        sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap()
    };
    wait_until(|| async { !listeners().await.is_empty() }).await;
    let old = listeners().await;
    for pid in &old {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&app.pool)
            .await
            .unwrap();
    }
    wait_until(|| async {
        let now = listeners().await;
        !now.is_empty() && now.iter().all(|p| !old.contains(p))
    })
    .await;
    app.deliver(&started(job)).await;
    let e = next_event(&mut ws, 10).await;
    assert_eq!(e["jobId"], job.to_string());
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn sockets_close_with_1001_when_the_service_stops(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, a) = app.create_user("a@example.com").await;
    let mut ws = app.ws_as(&a, "").await;
    app.stop();
    let (code, _) = read_until_close(&mut ws, 5).await;
    assert_eq!(code, Some(CloseCode::Away));
}

async fn watch(app: &TestApp, job: Uuid, token: &str) -> tokio::task::JoinHandle<String> {
    let cli = <api::config::Cli as clap::Parser>::try_parse_from([
        "viewcreator-api",
        "watch",
        &job.to_string(),
        "--token",
        token,
        "--url",
        &app.address,
    ])
    .unwrap();
    tokio::spawn(async move { format!("{:?}", api::cli::run(cli).await.unwrap()) })
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn watch_exits_0_on_completed_and_1_on_failed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, a) = app.create_user("a@example.com").await;
    let ok = app.create_job(&a).await;
    let bad = app.create_job(&a).await;

    let watching = watch(&app, ok, &a).await;
    wait_until(|| async { app.state.hub.connections() == 1 }).await;
    app.deliver(&started(ok)).await;
    app.deliver(&progress(ok, 2, 40.0, "Transcribing")).await;
    app.deliver(&completed(ok, 3)).await;
    let code = tokio::time::timeout(Duration::from_secs(10), watching)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, format!("{:?}", std::process::ExitCode::SUCCESS));

    let watching = watch(&app, bad, &a).await;
    wait_until(|| async { app.state.hub.connections() == 1 }).await;
    app.deliver(&failed(bad, 2, 10.0, "Video is private")).await;
    let code = tokio::time::timeout(Duration::from_secs(10), watching)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, format!("{:?}", std::process::ExitCode::from(1)));

    // A job already finished: answered from its state, at once.
    let code = tokio::time::timeout(Duration::from_secs(10), watch(&app, ok, &a).await)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, format!("{:?}", std::process::ExitCode::SUCCESS));
}

/// `job.completed` for `ext` with `n` clips.
fn completed_with(ext: Uuid, seq: u64, n: usize) -> Value {
    let mut p = completed(ext, seq);
    let clips: Vec<Value> = (0..n)
        .map(|i| {
            // Short values, so that 7,500 clips fit a webhook (1 MiB).
            json!({
                "clip_index": i, "s3_url": format!("https://m.io/{i}"),
                "duration_ms": 9, "start_time_ms": 0, "end_time_ms": 9,
                "virality_score": 1, "layout_type": "t"
            })
        })
        .collect();
    p["clips_completed"] = json!(n);
    p["total_clips"] = json!(n);
    p["output"]["total_clips"] = json!(n);
    p["output"]["clips"] = json!(clips);
    p
}

/// The next text frame, raw, so its size can be checked.
async fn next_text(ws: &mut Ws) -> String {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no WebSocket frame in time")
            .expect("WebSocket ended")
            .expect("WebSocket error");
        match frame {
            tungstenite::Message::Text(t) => return t.to_string(),
            tungstenite::Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

/// Reads the frames of events `from..=to` and checks the big ones.
async fn read_across(ws: &mut Ws, from: i64, to: i64, big: &[i64]) {
    for id in from..=to {
        let text = next_text(ws).await;
        assert!(text.len() <= 256 * 1024, "event {id}: {} bytes", text.len());
        let e: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(e["eventId"], id, "{e}");
        if big.contains(&id) {
            assert_eq!(e["type"], "clipping.completed", "{e}");
            assert_eq!(e["clipCount"], 7_500, "{e}");
            assert_eq!(e["clipsOmitted"], true, "{e}");
            assert!(e.get("clips").is_none(), "{e}");
        }
    }
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn a_completion_too_big_for_a_frame_carries_its_count_and_resume_gets_past_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (user, token) = app.create_user("a@example.com").await;
    let big = app.create_job(&token).await;
    let old = app.create_job(&token).await;
    let later = app.create_job(&token).await;
    let mut live = app.ws_as(&token, "").await;

    // 1: started; 2: the completion with 7,500 clips (a webhook of most of
    // a MiB).
    app.deliver(&started(big)).await;
    let body = serde_json::to_vec(&completed_with(big, 2, 7_500)).unwrap();
    assert!(
        body.len() > 1_000_000 && body.len() < 1024 * 1024,
        "{}",
        body.len()
    );
    app.deliver(&completed_with(big, 2, 7_500)).await;
    // 3: an oversized completion stored before frames were bounded, as the
    // log holds it: checked again on the way out.
    let mut stored = json!({
        "type": "clipping.completed", "jobId": old, "at": "2025-01-15T10:38:00Z",
        "clipCount": 7_500, "message": "Your 7500 clips are ready!",
    });
    stored["clips"] = completed_with(old, 2, 7_500)["output"]["clips"].clone();
    sqlx::query(
        "WITH u AS (UPDATE users SET last_event_id = last_event_id + 1 WHERE id = $1 \
                    RETURNING last_event_id) \
         INSERT INTO user_events (user_id, event_id, job_id, message) \
         SELECT $1, u.last_event_id, $2, jsonb_set($3::jsonb, '{eventId}', to_jsonb(u.last_event_id)) \
         FROM u",
    )
    .bind(user)
    .bind(old)
    .bind(&stored)
    .execute(&app.pool)
    .await
    .unwrap();
    // 4, 5: later events, which a resume must reach.
    app.deliver(&started(later)).await;
    app.deliver(&progress(later, 2, 50.0, "Halfway")).await;

    read_across(&mut live, 1, 5, &[2, 3]).await;
    close(live).await;
    // Resuming from before the big events gets through them to the end,
    // twice (the first resume must not have spent anything).
    // After each pass, a barrier: a new event must come next (after the
    // barriers of earlier passes), so nothing was repeated.
    for barrier in 6..=7 {
        wait_until(|| async { app.state.hub.connections() == 0 }).await;
        let mut resumed = app.ws_as(&token, "?since=1").await;
        read_across(&mut resumed, 2, barrier - 1, &[2, 3]).await;
        app.deliver(&progress(
            later,
            barrier as u64,
            50.0,
            &format!("Barrier {barrier}"),
        ))
        .await;
        read_across(&mut resumed, barrier, barrier, &[]).await;
        close(resumed).await;
    }
    // The clips themselves are one REST call away.
    let job = app.job_json(&token, big).await;
    assert_eq!(job["clips"].as_array().unwrap().len(), 7_500);
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn watch_prints_the_clips_of_a_completion_that_omitted_them(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;
    let watching = tokio::process::Command::new(env!("CARGO_BIN_EXE_viewcreator-api"))
        .args(["watch", &job.to_string(), "--token", &token])
        .args(["--url", &app.address])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_until(|| async { app.state.hub.connections() == 1 }).await;
    app.deliver(&started(job)).await;
    app.deliver(&completed_with(job, 2, 7_500)).await;
    let out = tokio::time::timeout(Duration::from_secs(30), watching.wait_with_output())
        .await
        .expect("watch did not finish")
        .unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let urls: Vec<&str> = stdout.lines().collect();
    assert_eq!(urls.len(), 7_500);
    assert_eq!(urls[7_499], "https://m.io/7499");
}

/// `viewcreator-api watch` as a process with its output piped (not a
/// terminal): exit code, standard output, standard error.
async fn watch_process(app: &TestApp, job: Uuid, token: &str) -> (i32, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_viewcreator-api"))
            .args(["watch", &job.to_string(), "--token", token])
            .args(["--url", &app.address])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("watch did not finish")
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn watch_on_a_finished_job_prints_one_summary_and_the_clip_urls(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("a@example.com").await;
    let ok = app.create_job(&token).await;
    app.deliver(&started(ok)).await;
    app.deliver(&completed(ok, 2)).await;
    let bad = app.create_job(&token).await;
    app.deliver(&failed(bad, 1, 10.0, "Video is private")).await;

    let (code, stdout, stderr) = watch_process(&app, ok, &token).await;
    assert_eq!(code, 0, "{stderr}");
    let urls: Vec<&str> = stdout.lines().collect();
    assert_eq!(urls.len(), 2, "{stdout}");
    assert!(urls.iter().all(|u| u.starts_with("https://")), "{stdout}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("completed: 2 clips"))
            .count(),
        1,
        "{stderr}"
    );

    let (code, stdout, stderr) = watch_process(&app, bad, &token).await;
    assert_eq!(code, 1);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.trim(), "failed: Video is private", "{stderr}");
}
