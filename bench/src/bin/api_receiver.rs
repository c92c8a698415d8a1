//! Benchmark of the API's webhook receiver.
//!
//! Measures, against a fresh database on `DATABASE_URL`:
//!
//! 1. signed `job.progress` webhooks per second accepted by one in-process
//!    API instance at 1, 16 and 64 concurrent senders, with p50/p99 latency,
//!    with group commit (the default) and with one transaction per delivery;
//! 2. in the same run, the database's own ceiling for the same writes: the
//!    receiver's transaction (`api::receiver::process`: lock the job, record
//!    the webhook-id, update the job, append the user's event with its
//!    NOTIFY, commit) called in a plain loop at the same concurrency, with no
//!    HTTP, signature or JSON;
//! 3. webhook arrival → frame on a WebSocket, p50/p99, one at a time.
//!
//! Every webhook changes the step text, so every one is pushed: the worst
//! case (an event row, a counter bump and a NOTIFY per delivery).
//!
//! Run: `cargo run --release -p bench --bin api_receiver -- [--secs 5]`

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use api::config::{Config, DatabaseUrl, Tuning};
use clap::Parser;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use signing::SecretSet;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, PgPool};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Command line.
#[derive(Debug, Parser)]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// Group-commit lanes of the receiver (default: the service's).
    #[arg(long)]
    commit_lanes: Option<usize>,
    /// Webhooks for the push-latency measurement.
    #[arg(long, default_value_t = 500)]
    latency_samples: usize,
    /// PostgreSQL (an admin URL: a fresh database is created and dropped).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn body(job: Uuid, seq: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "event": "job.progress",
        "timestamp": "2025-01-15T10:31:00Z",
        "job_id": format!("w-{job}"),
        "external_job_id": job.to_string(),
        "status": "rendering",
        "progress_percent": 50,
        "current_step": format!("Rendering, step {seq}"),
        "clips_completed": 2,
        "total_clips": 5,
        "sequence": seq,
    }))
    .unwrap()
}

/// One user and one processing job per sender, so that senders contend only
/// where real users would: on the database itself.
async fn make_jobs(pool: &PgPool, n: usize, tag: &str) -> anyhow::Result<Vec<(Uuid, Uuid)>> {
    let mut out = Vec::new();
    for i in 0..n {
        let (user, _) = api::store::create_user(pool, &format!("{tag}-{i}@bench"), None).await?;
        let job = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO clipping_jobs (id, user_id, status, worker_job_id, video_url, request, last_heard_at) \
             VALUES ($1, $2, 'processing', $3, 'https://example.com/v', '{}', now())",
        )
        .bind(job)
        .bind(user)
        .bind(format!("w-{job}"))
        .execute(pool)
        .await?;
        out.push((user, job));
    }
    Ok(out)
}

struct RunResult {
    count: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl RunResult {
    fn line(&self, what: &str, c: usize) -> String {
        let rate = self.count as f64 / self.elapsed.as_secs_f64();
        format!(
            "| {what} | {c} | {rate:.0} | {:.2} | {:.2} |",
            percentile(&self.latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&self.latencies, 0.99).as_secs_f64() * 1e3,
        )
    }
}

async fn run_http(address: &str, jobs: &[(Uuid, Uuid)], secs: u64) -> RunResult {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let secrets = Arc::new(SecretSet::parse_list(SECRET).unwrap());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for &(_, job) in jobs {
        let client = client.clone();
        let secrets = secrets.clone();
        let url = format!("{address}/webhooks/clipping");
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut seq = 1u64;
            while Instant::now() < deadline {
                seq += 1;
                let body = body(job, seq);
                let h = secrets.headers(
                    &signing::new_message_id(),
                    chrono::Utc::now().timestamp(),
                    &body,
                );
                let t0 = Instant::now();
                let mut req = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body);
                for (k, v) in h.pairs() {
                    req = req.header(k, v);
                }
                let r = req.send().await.expect("request failed");
                assert_eq!(r.status(), 200, "{:?}", r.text().await);
                let _ = r.bytes().await;
                lat.push(t0.elapsed());
            }
            lat
        });
    }
    let mut latencies = Vec::new();
    while let Some(r) = tasks.join_next().await {
        latencies.extend(r.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    RunResult {
        count: latencies.len(),
        elapsed,
        latencies,
    }
}

async fn run_db(pool: &PgPool, jobs: &[(Uuid, Uuid)], secs: u64) -> RunResult {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for &(_, job) in jobs {
        let pool = pool.clone();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut seq = 1u64;
            while Instant::now() < deadline {
                seq += 1;
                let payload: webhook_types::WebhookPayload =
                    webhook_types::parse_json(&body(job, seq)).unwrap();
                let id = signing::new_message_id();
                let t0 = Instant::now();
                let outcome = api::receiver::process(
                    &pool,
                    Some(&id),
                    &payload,
                    api::jobs::WriteCtx { cdn_domain: None },
                )
                .await
                .expect("transaction failed");
                assert_eq!(outcome, api::receiver::Outcome::Applied);
                lat.push(t0.elapsed());
            }
            lat
        });
    }
    let mut latencies = Vec::new();
    while let Some(r) = tasks.join_next().await {
        latencies.extend(r.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    RunResult {
        count: latencies.len(),
        elapsed,
        latencies,
    }
}

async fn push_latency(
    app_address: &str,
    port: u16,
    pool: &PgPool,
    samples: usize,
) -> anyhow::Result<Vec<Duration>> {
    let (user, token) = api::store::create_user(pool, "latency@bench", None).await?;
    let job = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO clipping_jobs (id, user_id, status, worker_job_id, video_url, request) \
         VALUES ($1, $2, 'processing', $3, 'https://example.com/v', '{}')",
    )
    .bind(job)
    .bind(user)
    .bind(format!("w-{job}"))
    .execute(pool)
    .await?;
    let mut req = format!("ws://127.0.0.1:{port}/ws").into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = reqwest::Client::new();
    let secrets = SecretSet::parse_list(SECRET)?;
    let mut out = Vec::new();
    for seq in 2..(samples as u64 + 2) {
        let body = body(job, seq);
        let h = secrets.headers(
            &signing::new_message_id(),
            chrono::Utc::now().timestamp(),
            &body,
        );
        let t0 = Instant::now();
        let mut r = client
            .post(format!("{app_address}/webhooks/clipping"))
            .body(body);
        for (k, v) in h.pairs() {
            r = r.header(k, v);
        }
        // Send without waiting for the answer: the frame may come first.
        let send = tokio::spawn(r.send());
        let want = format!("Rendering, step {seq}");
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t)?;
                    if v["currentStep"] == want.as_str() {
                        out.push(t0.elapsed());
                        break;
                    }
                }
                Ok(Some(Ok(_))) => {}
                other => anyhow::bail!("no frame: {other:?}"),
            }
        }
        send.await??;
    }
    out.sort();
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let admin = PgConnectOptions::from_str(&args.database_url)?;
    let name = format!("bench_api_{}", std::process::id());
    let mut conn = admin.connect().await.context("failed to connect")?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let options = admin.clone().database(&name);
    let pool_size = Tuning::default().db_max_connections;
    let pool = PgPoolOptions::new()
        .max_connections(pool_size)
        .connect_with(options.clone())
        .await?;
    api::startup::MIGRATOR.run(&pool).await?;

    let config = |commit_batch: usize| -> anyhow::Result<Config> {
        Ok(Config {
            listen: "127.0.0.1:0".parse()?,
            database_url: "postgres://unused".parse::<DatabaseUrl>().unwrap(),
            webhook_secrets: Some(SecretSet::parse_list(SECRET)?),
            // Nothing is pending, so the submitter never calls it.
            worker_url: "http://127.0.0.1:9".parse()?,
            public_url: None,
            media_cdn_domain: None,
            allowed_origins: vec![],
            stale_after: Duration::from_secs(3600),
            tuning: Tuning {
                commit_batch,
                commit_lanes: args.commit_lanes.unwrap_or(Tuning::default().commit_lanes),
                ..Tuning::default()
            },
        })
    };
    // Two instances on the same database: one transaction per delivery, and
    // group commit (the default).
    let single = api::Application::build_with_pool(config(1)?, pool.clone()).await?;
    let single_address = format!("http://127.0.0.1:{}", single.port());
    let app =
        api::Application::build_with_pool(config(Tuning::default().commit_batch)?, pool.clone())
            .await?;
    let port = app.port();
    let address = format!("http://127.0.0.1:{port}");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let server_single = tokio::spawn(single.run_until_stopped(shutdown.clone()));

    println!(
        "pool: {pool_size} connections; {} s per measurement; {} group-commit lanes",
        args.secs,
        args.commit_lanes.unwrap_or(Tuning::default().commit_lanes)
    );
    println!();
    println!("| path | senders | webhooks/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    let mut ratio = Vec::new();
    for &c in &args.concurrency {
        let jobs = make_jobs(&pool, c, &format!("db{c}")).await?;
        let db = run_db(&pool, &jobs, args.secs).await;
        println!("{}", db.line("DB ceiling (same transaction, no HTTP)", c));
        let jobs = make_jobs(&pool, c, &format!("one{c}")).await?;
        let one = run_http(&single_address, &jobs, args.secs).await;
        println!("{}", one.line("receiver, one transaction per delivery", c));
        let jobs = make_jobs(&pool, c, &format!("gc{c}")).await?;
        let gc = run_http(&address, &jobs, args.secs).await;
        println!("{}", gc.line("receiver, group commit (default)", c));
        let rate = |r: &RunResult| r.count as f64 / r.elapsed.as_secs_f64();
        ratio.push((c, rate(&one) / rate(&db), rate(&gc) / rate(&db)));
    }
    println!();
    for (c, one, gc) in ratio {
        println!(
            "receiver / DB ceiling at {c} senders: {:.0} % one transaction each, {:.0} % group commit",
            one * 100.0,
            gc * 100.0
        );
    }
    let lat = push_latency(&address, port, &pool, args.latency_samples).await?;
    println!();
    println!(
        "webhook sent -> frame on socket ({} samples, one at a time): p50 {:.2} ms, p99 {:.2} ms",
        lat.len(),
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
    );

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), server_single).await;
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    Ok(())
}
