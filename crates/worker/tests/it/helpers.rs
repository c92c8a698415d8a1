//! Test fixtures: a worker on port 0 with its own store (SQLite in a fresh
//! directory, or a fresh PostgreSQL database on `DATABASE_URL`), and a
//! webhook receiver on port 0 that verifies every delivery and hands it to
//! the test through a channel, answering as the test's script says.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::Value;
use signing::{SecretSet, Verifier};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use webhook_types::{JobView, WebhookPayload};
use worker::storage::MediaStore;
use worker::store::StoreUrl;
use worker::{Application, ServeConfig};

/// The secret every test worker signs with.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Which implementation of the store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// A store of a test's own: a fresh data directory and, for PostgreSQL, a
/// fresh database on the server `DATABASE_URL` names, dropped again when
/// this is dropped. Workers started on the same `TestStore` share it (a
/// restart, or a fleet).
pub struct TestStore {
    pub url: StoreUrl,
    dir: tempfile::TempDir,
    /// The database to drop, and the server URL to drop it from.
    database: Option<(String, String)>,
}

impl TestStore {
    pub async fn new(kind: StoreKind) -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        match kind {
            StoreKind::Sqlite => TestStore {
                url: StoreUrl::Sqlite(None),
                dir,
                database: None,
            },
            StoreKind::Postgres => {
                let server = std::env::var("DATABASE_URL").expect(
                    "DATABASE_URL must name a PostgreSQL server the worker tests may create databases on (scripts/test sets it)",
                );
                let name = format!("worker_test_{}", uuid::Uuid::new_v4().simple());
                let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&server)
                    .await
                    .expect("DATABASE_URL answers");
                sqlx::Executor::execute(
                    &mut admin,
                    sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
                )
                .await
                .unwrap();
                let mut url = url::Url::parse(&server).unwrap();
                url.set_path(&format!("/{name}"));
                TestStore {
                    url: url.as_str().parse().unwrap(),
                    dir,
                    database: Some((name, server)),
                }
            }
        }
    }

    /// The directory a worker on this store keeps its media (and, for
    /// SQLite, its store) in.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `--store` value for a worker process.
    #[allow(dead_code)]
    pub fn url_arg(&self) -> String {
        match (&self.url, &self.database) {
            (StoreUrl::Postgres(_), Some((name, server))) => {
                let mut url = url::Url::parse(server).unwrap();
                url.set_path(&format!("/{name}"));
                url.to_string()
            }
            _ => "sqlite".to_owned(),
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let Some((name, server)) = self.database.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot block on
        // itself: a short-lived runtime on its own thread drops the
        // database.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut admin) =
                    <sqlx::PgConnection as sqlx::Connection>::connect(&server).await
                {
                    let _ = sqlx::Executor::execute(
                        &mut admin,
                        sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
                    )
                    .await;
                }
            });
        })
        .join();
    }
}

/// A worker running in this process.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    #[allow(dead_code)]
    pub data_dir: PathBuf,
    /// The worker's own media store (what its engine stores through).
    #[allow(dead_code)]
    pub media: MediaStore,
    /// The worker's shared state, for tests that drive its parts directly.
    pub state: worker::AppState,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The store, when this worker owns it.
    store: Option<TestStore>,
}

/// The configuration tests start from: fast stages, no throttle, a fast
/// retry schedule, signed, private callbacks allowed (the receiver is on
/// loopback).
pub fn test_config(data_dir: &Path) -> ServeConfig {
    let mut c = ServeConfig::with_data_dir(data_dir);
    c.webhook_secret = Some(SecretSet::parse_list(SECRET).unwrap());
    c.sim_stage_ms = 10;
    c.progress_interval_ms = 0;
    c.allow_private_callbacks = true;
    c.retry_schedule = "0,20ms,20ms,20ms,20ms,20ms".parse().unwrap();
    c.max_concurrent_jobs = 4;
    c
}

/// Starts a worker with a fresh store of the given kind, after `f` adjusts
/// the configuration.
pub async fn spawn_app(kind: StoreKind, f: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let store = TestStore::new(kind).await;
    let mut app = spawn_app_on(&store, f).await;
    app.store = Some(store);
    app
}

/// Starts a worker on an existing store (restarts, several workers).
pub async fn spawn_app_on(store: &TestStore, f: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let mut config = test_config(store.data_dir());
    config.store = store.url.clone();
    f(&mut config);
    let data_dir = config.data_dir.clone();
    let app = Application::build(config).await.expect("the worker builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let shutdown = CancellationToken::new();
    let media = app.state().media.clone();
    let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        address,
        client: reqwest::Client::new(),
        data_dir,
        media,
        state,
        shutdown,
        handle,
        store: None,
    }
}

impl TestApp {
    /// POSTs a job request as JSON.
    pub async fn submit(&self, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}/ai-clipping/jobs", self.address))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs a job and returns its id, asserting the 202.
    pub async fn submit_ok(&self, body: Value) -> String {
        let r = self.submit(body).await;
        assert_eq!(r.status(), 202, "{:?}", r.text().await);
        let v: Value = r.json().await.unwrap();
        v["job_id"].as_str().unwrap().to_owned()
    }

    /// GET of a job.
    pub async fn get_job(&self, job_id: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/ai-clipping/jobs/{job_id}", self.address))
            .send()
            .await
            .unwrap()
    }

    /// The job's delivery ledger.
    pub async fn webhooks(&self, job_id: &str) -> Value {
        let r = self
            .client
            .get(format!(
                "{}/ai-clipping/jobs/{job_id}/webhooks",
                self.address
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Asks for a redelivery.
    pub async fn redeliver(&self, delivery_id: &str) -> reqwest::Response {
        self.client
            .post(format!(
                "{}/ai-clipping/webhooks/{delivery_id}/redeliver",
                self.address
            ))
            .send()
            .await
            .unwrap()
    }

    /// Polls the job until `done` holds for it, or panics after `within`.
    pub async fn wait_for_job(
        &self,
        job_id: &str,
        within: Duration,
        done: impl Fn(&JobView) -> bool,
    ) -> JobView {
        let deadline = Instant::now() + within;
        loop {
            let view: JobView = self.get_job(job_id).await.json().await.unwrap();
            if done(&view) {
                return view;
            }
            assert!(Instant::now() < deadline, "job never got there: {view:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the ledger until `done` holds for it, or panics after `within`.
    pub async fn wait_for_ledger(
        &self,
        job_id: &str,
        within: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let v = self.webhooks(job_id).await;
            let list = v["deliveries"].as_array().unwrap().clone();
            if done(&list) {
                return list;
            }
            assert!(
                Instant::now() < deadline,
                "ledger never got there: {list:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the worker and waits for it; hands back its store if it owned
    /// one.
    pub async fn stop(self) -> Option<TestStore> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("the worker stops in time")
            .unwrap()
            .unwrap();
        self.store
    }
}

/// A job request with a callback.
pub fn job(video_url: &str, callback: &str, max_clips: u32) -> Value {
    serde_json::json!({
        "video_url": video_url,
        "callback_url": callback,
        "max_clips": max_clips,
        "owner_user_id": "user_789",
    })
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub payload: Option<WebhookPayload>,
    /// The signature checked out against [`SECRET`].
    pub verified: bool,
    /// 1 for the first time this `webhook-id` arrived, 2 for the second…
    pub attempt: u32,
    /// What the receiver answered.
    pub answered: u16,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn webhook_id(&self) -> &str {
        self.header("webhook-id")
    }

    pub fn payload(&self) -> &WebhookPayload {
        self.payload.as_ref().expect("a webhook payload")
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.answered)
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    /// Wait this long before answering (a hanging receiver).
    pub hang: Option<Duration>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            retry_after: None,
            hang: None,
        }
    }
}

type Script = Arc<dyn Fn(&Received) -> Reply + Send + Sync>;

/// A webhook receiver on loopback port 0.
pub struct Receiver {
    pub addr: SocketAddr,
    pub rx: mpsc::UnboundedReceiver<Received>,
    script: Arc<RwLock<Script>>,
    _task: tokio::task::JoinHandle<()>,
}

struct ReceiverState {
    tx: mpsc::UnboundedSender<Received>,
    script: Arc<RwLock<Script>>,
    counts: Mutex<HashMap<String, u32>>,
    verifier: Verifier,
}

impl Receiver {
    /// A receiver that answers 200 to everything.
    pub async fn ok() -> Receiver {
        Receiver::start(|_| Reply::status(200)).await
    }

    /// A receiver that answers as `script` says.
    pub async fn start(script: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Receiver {
        Receiver::start_on(0, script).await
    }

    /// As [`Receiver::start`], on a given loopback port (a receiver that
    /// comes back where it was).
    pub async fn start_on(
        port: u16,
        script: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        let (tx, rx) = mpsc::unbounded_channel();
        let script: Arc<RwLock<Script>> = Arc::new(RwLock::new(Arc::new(script)));
        let state = Arc::new(ReceiverState {
            tx,
            script: script.clone(),
            counts: Mutex::new(HashMap::new()),
            verifier: Verifier::new(SecretSet::parse_list(SECRET).unwrap()),
        });
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move { handle(state, uri, headers, body).await }
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            addr,
            rx,
            script,
            _task: task,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Changes how later requests are answered.
    pub fn set_script(&self, script: impl Fn(&Received) -> Reply + Send + Sync + 'static) {
        *self.script.write().unwrap() = Arc::new(script);
    }

    /// The next request, or panics after `within`.
    pub async fn next(&mut self, within: Duration) -> Received {
        tokio::time::timeout(within, self.rx.recv())
            .await
            .expect("a webhook arrives in time")
            .expect("the receiver runs")
    }

    /// Every request for `job_id` until one answered 2xx carries a terminal
    /// event (requests for other jobs are dropped).
    pub async fn until_terminal(&mut self, job_id: &str, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self.next(left).await;
            if r.payload.as_ref().is_none_or(|p| p.job_id != job_id) {
                continue;
            }
            let done = r.ok() && r.payload().event.is_terminal();
            got.push(r);
            if done {
                return got;
            }
        }
    }

    /// Everything received so far, without waiting. A request is queued
    /// here before it is answered, so once the sender's ledger records an
    /// attempt, that request is already in this list: call this after the
    /// ledger shows nothing pending to see every request there will be.
    pub fn drain_now(&mut self) -> Vec<Received> {
        let mut got = Vec::new();
        while let Ok(r) = self.rx.try_recv() {
            got.push(r);
        }
        got
    }
}

async fn handle(
    state: Arc<ReceiverState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let now = chrono::Utc::now().timestamp();
    let verified = state
        .verifier
        .verify_with(|name| headers.get(name)?.to_str().ok(), &body, now)
        .is_ok();
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let attempt = {
        let mut counts = state.counts.lock().unwrap();
        let c = counts.entry(id).or_default();
        *c += 1;
        *c
    };
    let mut received = Received {
        path: uri.path().to_owned(),
        headers: headers.clone(),
        payload: webhook_types::parse_json(&body).ok(),
        body,
        verified,
        attempt,
        answered: 0,
        at: Instant::now(),
    };
    let script = state.script.read().unwrap().clone();
    let reply = script(&received);
    received.answered = reply.status;
    let _ = state.tx.send(received);
    if let Some(hang) = reply.hang {
        tokio::time::sleep(hang).await;
    }
    let mut response = StatusCode::from_u16(reply.status).unwrap().into_response();
    if let Some(ra) = reply.retry_after {
        response
            .headers_mut()
            .insert("retry-after", ra.parse().unwrap());
    }
    response
}

/// A retry schedule of `n` attempts, `step` apart: long enough that a
/// delivery refused on purpose keeps being retried for the whole test.
pub fn long_schedule(step: &str, n: usize) -> worker::backoff::RetrySchedule {
    let mut entries = vec!["0"];
    entries.extend(std::iter::repeat_n(step, n - 1));
    entries.join(",").parse().unwrap()
}

/// A free loopback port (for worker processes, which need one up front).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
