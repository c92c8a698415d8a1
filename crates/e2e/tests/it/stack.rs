//! The whole stack as real processes: a fresh PostgreSQL database, the
//! `clipping-worker` and `viewcreator-api` binaries, and a demo user.
//!
//! Processes rather than in-process servers because these tests are about
//! what a person meets: the binaries, their flags and environment, and a
//! restart of one of them in the middle of a job.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};
use tokio::process::{Child, Command};

/// A secret both services share.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Where cargo put the binaries: beside this test's `deps/` directory.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>")
        .to_path_buf()
}

/// The newest modification time of the files under `dir`.
fn newest_under(dir: &std::path::Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_under(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(t);
    }
    newest
}

/// Both binaries, fresh. `cargo test --workspace` has built them for the
/// worker's and the API's own tests, so they are used as they are when they
/// are newer than every source they are made from; only then does a
/// `cargo build` run (as with `cargo test -p e2e` alone). Building anyway
/// would rebuild half the tree: a build of two packages unifies crate
/// features differently from a build of the whole workspace.
pub fn binaries() -> &'static (PathBuf, PathBuf) {
    static BINS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BINS.get_or_init(|| {
        let dir = bin_dir();
        let bins = (dir.join("clipping-worker"), dir.join("viewcreator-api"));
        let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        // What each binary is made from: a change to the worker alone leaves
        // the API's binary as fresh as it was.
        let shared = [
            "crates/service/src",
            "crates/webhook-types/src",
            "crates/signing/src",
            "migrations",
            "Cargo.lock",
        ];
        let newest_source = |own: [&str; 1]| {
            own.iter()
                .chain(shared.iter())
                .filter_map(|p| {
                    let p = root.join(p);
                    if p.is_dir() {
                        newest_under(&p)
                    } else {
                        p.metadata().and_then(|m| m.modified()).ok()
                    }
                })
                .max()
        };
        let built = |p: &PathBuf| p.metadata().and_then(|m| m.modified()).ok();
        let is_fresh = |bin: &PathBuf, own: [&str; 1]| match (built(bin), newest_source(own)) {
            (Some(b), Some(src)) => b >= src,
            _ => false,
        };
        let fresh =
            is_fresh(&bins.0, ["crates/worker/src"]) && is_fresh(&bins.1, ["crates/api/src"]);
        if !fresh {
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "--bins", "-p", "worker", "-p", "api"])
                .current_dir(&root)
                .status()
                .expect("failed to run cargo build");
            assert!(status.success(), "building the binaries failed");
        }
        bins
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh database on the server `DATABASE_URL` names, dropped with the
/// stack.
pub async fn fresh_database() -> (String, String) {
    let admin = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must name a PostgreSQL server (scripts/test sets it)");
    let name = format!("e2e_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin)
        .await
        .expect("connect to DATABASE_URL");
    // The name is ours (a uuid), so building the statement is safe.
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create the test database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    (admin.clone(), format!("{base}/{name}"))
}

/// Both services and the database they share.
pub struct Stack {
    pub api_url: String,
    pub api_port: u16,
    pub worker_url: String,
    pub database_url: String,
    admin_url: String,
    pub token: String,
    pub http: reqwest::Client,
    api: Option<Child>,
    worker: Child,
    _data: tempfile::TempDir,
}

/// How the worker of a [`Stack`] runs.
pub struct WorkerOptions {
    /// The simulated engine's time per stage.
    pub stage_ms: u64,
    /// `--retry-schedule`; `None` keeps the contract's default schedule.
    pub retry_schedule: Option<&'static str>,
    /// `--max-concurrent-jobs`.
    pub max_concurrent_jobs: u32,
}

/// Retries that come quickly, so that a restarted API catches up in seconds
/// whatever the worker's recovery probing does.
pub const FAST_RETRIES: &str = "0,200ms,400ms,800ms,1s,1s,1s,1s,1s,1s,1s,1s";

impl Stack {
    /// Starts the worker (simulated engine, `stage_ms` per stage, fast
    /// retries) and the API, and creates a user.
    pub async fn start(stage_ms: u64) -> Stack {
        Stack::start_with(WorkerOptions {
            stage_ms,
            retry_schedule: Some(FAST_RETRIES),
            max_concurrent_jobs: 2,
        })
        .await
    }

    /// Starts the worker as `options` say and the API, and creates a user.
    pub async fn start_with(options: WorkerOptions) -> Stack {
        let (worker_bin, api_bin) = binaries();
        let (admin_url, database_url) = fresh_database().await;
        let data = tempfile::tempdir().unwrap();
        let worker_port = free_port();
        let worker_url = format!("http://127.0.0.1:{worker_port}");
        let mut worker = Command::new(worker_bin);
        worker.arg("serve");
        if let Some(schedule) = options.retry_schedule {
            worker.env("WORKER_RETRY_SCHEDULE", schedule);
        }
        let worker = worker
            .env("WORKER_LISTEN", format!("127.0.0.1:{worker_port}"))
            .env("WORKER_DATA_DIR", data.path())
            .env("WEBHOOK_SECRET", SECRET)
            .env("WORKER_ENGINE", "simulated")
            .env("WORKER_SIM_STAGE_MS", options.stage_ms.to_string())
            .env(
                "WORKER_MAX_CONCURRENT_JOBS",
                options.max_concurrent_jobs.to_string(),
            )
            .env("WORKER_PROGRESS_INTERVAL_MS", "0")
            .env("WORKER_ALLOW_PRIVATE_CALLBACKS", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start clipping-worker");

        let out = std::process::Command::new(api_bin)
            .args([
                "users",
                "create",
                "--email",
                "e2e@example.com",
                "--name",
                "E2E",
            ])
            .env("DATABASE_URL", &database_url)
            .output()
            .expect("run viewcreator-api users create");
        // `users create` needs the schema: it migrates first or fails clearly.
        assert!(
            out.status.success(),
            "users create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let user: Value = serde_json::from_slice(&out.stdout).expect("users create prints JSON");
        let token = user["token"].as_str().expect("a token").to_owned();

        let api_port = free_port();
        let mut stack = Stack {
            api_url: format!("http://127.0.0.1:{api_port}"),
            api_port,
            worker_url,
            database_url,
            admin_url,
            token,
            http: reqwest::Client::new(),
            api: None,
            worker,
            _data: data,
        };
        wait_ready(&stack.http, &format!("{}/readyz", stack.worker_url)).await;
        stack.start_api().await;
        stack
    }

    /// Starts (or restarts) the API on its port.
    pub async fn start_api(&mut self) {
        let (_, api_bin) = binaries();
        let child = Command::new(api_bin)
            .arg("serve")
            .env("API_LISTEN", format!("127.0.0.1:{}", self.api_port))
            .env("DATABASE_URL", &self.database_url)
            .env("WEBHOOK_SECRET", SECRET)
            .env("CLIPPING_WORKER_URL", &self.worker_url)
            .env("API_BASE_URL", &self.api_url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start viewcreator-api");
        self.api = Some(child);
        wait_ready(&self.http, &format!("{}/readyz", self.api_url)).await;
    }

    /// Kills the API process outright, as a crash or a deploy would.
    pub async fn kill_api(&mut self) {
        if let Some(mut child) = self.api.take() {
            child.kill().await.expect("kill the API");
        }
    }

    /// An authenticated REST call.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api_url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("API reachable");
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    /// Submits a job through the API's REST endpoint and returns its id.
    pub async fn submit(&self, video_url: &str, max_clips: u32) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/api/clipping-jobs",
                Some(json!({"videoUrl": video_url, "maxClips": max_clips})),
            )
            .await;
        v["job"]["id"].as_str().expect("a job id").to_owned()
    }

    /// Drops the test database (best effort: the server may be gone).
    pub async fn cleanup(mut self) {
        self.kill_api().await;
        let _ = self.worker.kill().await;
        if let Ok(mut conn) = PgConnection::connect(&self.admin_url).await {
            let name = self
                .database_url
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            let _ = conn
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await;
        }
    }
}

/// Waits until `url` answers 200, for at most 30 s.
pub async fn wait_ready(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
