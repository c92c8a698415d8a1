//! The test harness: a real API on port 0 over a fresh database, a fake
//! worker on port 0, signed webhook and WebSocket helpers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::config::{Config, DatabaseUrl, Tuning};
use api::messages::ServerMessage;
use api::{AppState, Application};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use signing::SecretSet;
use sqlx::PgPool;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The secret tests sign with.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The CDN domain tests configure.
pub const CDN: &str = "cdn.test.example";

/// A client-side WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Tuning that makes background loops quick enough for tests.
pub fn fast_tuning() -> Tuning {
    Tuning {
        submit_poll: Duration::from_millis(100),
        submit_backoff_base: Duration::from_millis(100),
        submit_backoff_max: Duration::from_millis(400),
        worker_timeout: Duration::from_secs(2),
        reconcile_interval: Duration::from_millis(100),
        hub_poll: Duration::from_millis(300),
        ..Tuning::default()
    }
}

/// A configuration for a test instance.
pub fn test_config(worker_url: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: "postgres://unused".parse::<DatabaseUrl>().unwrap(),
        webhook_secrets: Some(SecretSet::parse_list(SECRET).unwrap()),
        worker_url: worker_url.parse().unwrap(),
        public_url: None,
        media_cdn_domain: Some(CDN.into()),
        allowed_origins: vec![],
        stale_after: Duration::from_secs(300),
        tuning: fast_tuning(),
    }
}

/// A running API.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The port.
    pub port: u16,
    /// Its database.
    pub pool: PgPool,
    /// Its state.
    pub state: AppState,
    /// A plain client.
    pub client: reqwest::Client,
    /// The fake worker it submits to (when spawned with one).
    pub worker: FakeWorker,
    secrets: SecretSet,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// An API with a fake worker that accepts every job.
    pub async fn spawn(pool: PgPool) -> TestApp {
        Self::spawn_with(pool, |_| {}).await
    }

    /// An API with a configuration adjusted by `adjust`.
    pub async fn spawn_with(pool: PgPool, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let worker = FakeWorker::start().await;
        Self::spawn_full(pool, worker, adjust).await
    }

    /// An API on a given fake worker.
    pub async fn spawn_full(
        pool: PgPool,
        worker: FakeWorker,
        adjust: impl FnOnce(&mut Config),
    ) -> TestApp {
        let mut config = test_config(&worker.url());
        adjust(&mut config);
        let secrets = config
            .webhook_secrets
            .clone()
            .unwrap_or_else(|| SecretSet::parse_list(SECRET).unwrap());
        let app = Application::build_with_pool(config, pool.clone())
            .await
            .expect("failed to build the app");
        let port = app.port();
        let state = app.state().clone();
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            port,
            pool,
            state,
            client: reqwest::Client::new(),
            worker,
            secrets,
            shutdown,
        }
    }

    /// Stops the service (as Ctrl-C would).
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// A user and their token, straight through the store.
    pub async fn create_user(&self, email: &str) -> (Uuid, String) {
        api::store::create_user(&self.pool, email, Some("Test"))
            .await
            .unwrap()
    }

    /// `POST /api/clipping-jobs`.
    pub async fn post_job(&self, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/api/clipping-jobs", self.address))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a job through the API and returns its id.
    pub async fn create_job(&self, token: &str) -> Uuid {
        let r = self
            .post_job(
                token,
                &json!({"videoUrl": "https://www.youtube.com/watch?v=dQw4w9WgXcQ", "maxClips": 3}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        body["job"]["id"].as_str().unwrap().parse().unwrap()
    }

    /// `GET /api/clipping-jobs`.
    pub async fn list_jobs(&self, token: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/api/clipping-jobs", self.address))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `GET /api/clipping-jobs/{id}`.
    pub async fn get_job(&self, token: &str, id: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/api/clipping-jobs/{id}", self.address))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// The job's JSON, asserting 200.
    pub async fn job_json(&self, token: &str, id: Uuid) -> Value {
        let r = self.get_job(token, &id.to_string()).await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["job"].clone()
    }

    /// `POST /api/ws-ticket`.
    pub async fn ws_ticket(&self, token: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/api/ws-ticket", self.address))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `GET` of any path.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap()
    }

    /// Posts a webhook body signed now with a fresh `webhook-id`.
    pub async fn post_webhook(&self, payload: &Value) -> reqwest::Response {
        let body = serde_json::to_vec(payload).unwrap();
        self.post_webhook_bytes(&signing::new_message_id(), body)
            .await
    }

    /// Posts raw bytes signed now under `id`.
    pub async fn post_webhook_bytes(&self, id: &str, body: Vec<u8>) -> reqwest::Response {
        let now = chrono::Utc::now().timestamp();
        let h = self.secrets.headers(id, now, &body);
        self.post_webhook_raw(&h.pairs().map(|(k, v)| (k, v.to_owned())), body)
            .await
    }

    /// Posts raw bytes with exactly these headers.
    pub async fn post_webhook_raw(
        &self,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/webhooks/clipping", self.address))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req.send().await.unwrap()
    }

    /// Posts a webhook and asserts the answer.
    pub async fn deliver(&self, payload: &Value) -> Value {
        let r = self.post_webhook(payload).await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Opens `/ws` with a query, an optional bearer token and Origin.
    pub async fn ws(
        &self,
        query: &str,
        token: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Ws, tungstenite::Error> {
        let url = format!("ws://127.0.0.1:{}/ws{query}", self.port);
        let mut req = url.into_client_request().unwrap();
        if let Some(t) = token {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        tokio_tungstenite::connect_async(req).await.map(|(s, _)| s)
    }

    /// Opens `/ws` as a token holder and waits until the hub has it.
    pub async fn ws_as(&self, token: &str, query: &str) -> Ws {
        let before = self.state.hub.connections();
        let ws = self.ws(query, Some(token), None).await.unwrap();
        wait_until(|| async { self.state.hub.connections() > before }).await;
        ws
    }
}

/// Polls `cond` every 20 ms for up to 10 s.
pub async fn wait_until<F, Fut>(mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next text frame as JSON, within `secs` seconds; pongs and pings are
/// skipped. Panics on close or timeout, and on a frame that is not exactly a
/// [`ServerMessage`] (read into it and written back, it must be the same
/// JSON), so that every frame any test reads is checked against the
/// documented messages.
pub async fn next_event(ws: &mut Ws, secs: u64) -> Value {
    let (_, value) = next_message(ws, secs).await;
    value
}

/// As [`next_event`], the message typed as well.
pub async fn next_message(ws: &mut Ws, secs: u64) -> (ServerMessage, Value) {
    let deadline = Duration::from_secs(secs);
    loop {
        let frame = tokio::time::timeout(deadline, ws.next())
            .await
            .expect("no WebSocket frame in time")
            .expect("WebSocket ended")
            .expect("WebSocket error");
        match frame {
            Message::Text(t) => {
                let value: Value = serde_json::from_str(&t).unwrap();
                let message: ServerMessage = serde_json::from_str(&t)
                    .unwrap_or_else(|e| panic!("not a ServerMessage ({e}): {t}"));
                assert_eq!(serde_json::to_value(&message).unwrap(), value);
                return (message, value);
            }
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

/// Reads until a close frame; returns its code and the number of text frames
/// read before it.
pub async fn read_until_close(ws: &mut Ws, secs: u64) -> (Option<CloseCode>, usize) {
    let mut texts = 0;
    let r = tokio::time::timeout(Duration::from_secs(secs), async {
        while let Some(frame) = ws.next().await {
            match frame {
                Ok(Message::Text(_)) => texts += 1,
                Ok(Message::Close(c)) => return c.map(|c| c.code),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("no close in time");
    (r, texts)
}

/// Closes a client socket politely.
pub async fn close(mut ws: Ws) {
    let _ = ws.send(Message::Close(None)).await;
}

// ------------------------------------------------------------ payloads

/// A webhook for the job `ext` (our id), with worker id `w-{ext}`.
pub fn payload(ext: Uuid, event: &str, seq: u64, status: &str, pct: f64, step: &str) -> Value {
    json!({
        "event": event,
        "timestamp": "2025-01-15T10:30:00Z",
        "job_id": format!("w-{ext}"),
        "external_job_id": ext.to_string(),
        "owner_user_id": "user_789",
        "status": status,
        "progress_percent": pct,
        "current_step": step,
        "sequence": seq,
    })
}

/// `job.started`, sequence 1.
pub fn started(ext: Uuid) -> Value {
    payload(
        ext,
        "job.started",
        1,
        "downloading",
        0.0,
        "Starting job processing",
    )
}

/// `job.progress`.
pub fn progress(ext: Uuid, seq: u64, pct: f64, step: &str) -> Value {
    payload(ext, "job.progress", seq, "transcribing", pct, step)
}

/// `job.completed` with two clips, one in each S3 URL form.
pub fn completed(ext: Uuid, seq: u64) -> Value {
    let mut p = payload(
        ext,
        "job.completed",
        seq,
        "completed",
        100.0,
        "Processing complete!",
    );
    p["clips_completed"] = json!(2);
    p["total_clips"] = json!(2);
    p["output"] = json!({
        "job_id": format!("w-{ext}"),
        "source_video_url": "https://youtube.com/watch?v=x",
        "source_video_title": "My Amazing Video",
        "source_video_duration_seconds": 1847.5,
        "total_clips": 2,
        "clips": [
            {
                "clip_index": 0,
                "s3_url": "https://viewcreator-media.s3.amazonaws.com/clips/user_789/abc-123/clip_00.mp4",
                "duration_ms": 45000, "start_time_ms": 134200, "end_time_ms": 179200,
                "virality_score": 0.92, "layout_type": "screen_share",
                "summary": "Key insight", "tags": ["business", "pricing"]
            },
            {
                "clip_index": 1,
                "s3_url": "https://viewcreator-media.s3.us-west-2.amazonaws.com/clips/user_789/abc-123/clip_01.mp4",
                "duration_ms": 38000, "start_time_ms": 445000, "end_time_ms": 483000,
                "virality_score": 0.87, "layout_type": "talking_head"
            }
        ],
        "processing_time_seconds": 482.5,
        "created_at": "2025-01-15T10:38:00Z"
    });
    p
}

/// `job.failed`.
pub fn failed(ext: Uuid, seq: u64, pct: f64, error: &str) -> Value {
    let mut p = payload(ext, "job.failed", seq, "failed", pct, "Processing failed");
    p["error"] = json!(error);
    p
}

// ------------------------------------------------------------ fake worker

/// How the fake worker answers submissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 202 with `w-{external_job_id}`.
    Accept,
    /// 422 with an error body.
    Refuse,
    /// 503.
    Unavailable,
}

#[derive(Default)]
struct WorkerState {
    mode: Option<Mode>,
    submissions: Vec<Value>,
    views: HashMap<String, Value>,
    /// Worker job ids asked about with `GET /ai-clipping/jobs/{id}`.
    lookups: Vec<String>,
}

/// An in-process stand-in for the clipping worker on port 0.
#[derive(Clone)]
pub struct FakeWorker {
    /// Its address.
    pub addr: SocketAddr,
    state: Arc<Mutex<WorkerState>>,
}

impl FakeWorker {
    /// Starts one that accepts every job.
    pub async fn start() -> FakeWorker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, Arc::default())
    }

    /// A worker that is down: its port refuses connections until
    /// [`FakeWorker::bring_up`].
    pub async fn down() -> FakeWorker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        FakeWorker {
            addr,
            state: Arc::default(),
        }
    }

    /// Starts serving on the down worker's port.
    pub async fn bring_up(&self) -> FakeWorker {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        Self::serve(listener, self.state.clone())
    }

    fn serve(listener: TcpListener, state: Arc<Mutex<WorkerState>>) -> FakeWorker {
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new()
            .route("/ai-clipping/jobs", post(submit))
            .route("/ai-clipping/jobs/{id}", get(view))
            .with_state(state.clone());
        // Lives as long as the test process; each test has its own port.
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        FakeWorker { addr, state }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes how it answers submissions.
    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    /// Every submission received so far.
    pub fn submissions(&self) -> Vec<Value> {
        self.state.lock().unwrap().submissions.clone()
    }

    /// Every `GET /ai-clipping/jobs/{id}` received so far, by worker job id.
    pub fn lookups(&self) -> Vec<String> {
        self.state.lock().unwrap().lookups.clone()
    }

    /// Sets what `GET /ai-clipping/jobs/{id}` answers (absent: 404).
    pub fn set_view(&self, worker_job_id: &str, view: Value) {
        self.state
            .lock()
            .unwrap()
            .views
            .insert(worker_job_id.to_owned(), view);
    }
}

async fn submit(
    State(state): State<Arc<Mutex<WorkerState>>>,
    Json(body): Json<Value>,
) -> axum::response::Response {
    let mut s = state.lock().unwrap();
    s.submissions.push(body.clone());
    match s.mode.unwrap_or(Mode::Accept) {
        Mode::Accept => {
            let id = format!("w-{}", body["external_job_id"].as_str().unwrap_or("x"));
            (
                StatusCode::ACCEPTED,
                Json(json!({"job_id": id, "status": "queued"})),
            )
                .into_response()
        }
        Mode::Refuse => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": {"code": "invalid_field", "message": "video_url cannot be fetched", "field": "video_url"}})),
        )
            .into_response(),
        Mode::Unavailable => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn view(
    State(state): State<Arc<Mutex<WorkerState>>>,
    Path(id): Path<String>,
) -> axum::response::Response {
    let mut state = state.lock().unwrap();
    state.lookups.push(id.clone());
    match state.views.get(&id) {
        Some(v) => Json(v.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "not_found", "message": "no such job"}})),
        )
            .into_response(),
    }
}
