//! Benchmark of the API's webhook receiver.
//!
//! Measures, against a fresh database on `DATABASE_URL`, at 1, 16 and 64
//! concurrent senders (each with its own user and job), in webhooks per
//! second with p50/p99 latency per request:
//!
//! - **receiver, group commit** (the default): signed `job.progress`
//!   webhooks over HTTP to an in-process API. Against it, **the same
//!   batched database work without HTTP**: a `Committer` with the same lanes
//!   and batch size, `Committer::apply` called in a loop (no HTTP, signature
//!   or JSON).
//! - **receiver, one transaction per delivery** (`commit_batch = 1`).
//!   Against it, the same transaction (`api::receiver::process`: lock the
//!   job, record the webhook-id, update the job, append the user's event
//!   with its NOTIFY, commit) in a loop without HTTP.
//! - **plain UPDATE + INSERT**: one transaction per delivery of one UPDATE of
//!   the job and one INSERT of the receipt: the kind of transaction pgbench
//!   measures, on the same server at the same concurrency. It is the ceiling
//!   the batched receiver is judged against (target: 1.5x at 64 senders),
//!   though it does less work per delivery (no event, no NOTIFY).
//!
//! Each level starts with a warm-up of every path (not reported), then
//! `--rounds` rounds, each measuring every path once; the order alternates
//! between rounds (forwards, then backwards), so a reference and the path it
//! is compared with take turns going first.
//!
//! Then push latency: webhooks at `--push-rate` (1,000/s) round-robin over
//! `--push-jobs` (50) jobs of `--push-users` (10) users, each user with one
//! WebSocket, on an open-loop schedule; each timed from the start of its POST
//! to its frame on the owner's socket, p50/p99.
//!
//! Every webhook changes the step text, so every one is pushed: the worst
//! case (an event row, a counter bump and a NOTIFY per delivery).
//!
//! Run: `cargo run --release -p bench --bin api_receiver -- [--secs 3] [--rounds 2]`

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
    #[arg(long, default_value_t = 3)]
    secs: u64,
    /// Measurements of each path per concurrency level, interleaved.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Seconds of warm-up per path before each level's rounds.
    #[arg(long, default_value_t = 1)]
    warmup_secs: u64,
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// Group-commit lanes of the receiver (default: the service's).
    #[arg(long)]
    commit_lanes: Option<usize>,
    /// Webhooks per second of the push-latency measurement.
    #[arg(long, default_value_t = 1000)]
    push_rate: u64,
    /// Jobs the push-latency webhooks are spread over (round-robin).
    #[arg(long, default_value_t = 50)]
    push_jobs: usize,
    /// Users owning those jobs, one socket each.
    #[arg(long, default_value_t = 10)]
    push_users: usize,
    /// Seconds of the measured part of the push-latency run.
    #[arg(long, default_value_t = 5)]
    push_secs: u64,
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
    fn line(&self, what: &str, c: usize, round: usize, usage: &Usage) -> String {
        let rate = self.count as f64 / self.elapsed.as_secs_f64();
        format!(
            "| {what} | {c} | {round} | {rate:.0} | {:.2} | {:.2} | {} |",
            percentile(&self.latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&self.latencies, 0.99).as_secs_f64() * 1e3,
            usage.describe(),
        )
    }
}

/// CPU time so far, in clock ticks, from `/proc`: this process (load
/// driver and in-process API alike), every `postgres` process, and the
/// machine (busy and in all).
#[derive(Debug, Clone, Copy)]
struct Cpu {
    bench: u64,
    postgres: u64,
    busy: u64,
    total: u64,
}

/// utime + stime of a `/proc/PID/stat` line.
fn ticks_of(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .collect();
    // Fields 14 and 15 of the line; the slice starts at field 3.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn cpu_now() -> Cpu {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let bench = ticks_of(&read("/proc/self/stat")).unwrap_or(0);
    let mut postgres = 0;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let path = entry.path();
            if read(&format!("{}/comm", path.display())).trim() == "postgres" {
                postgres += ticks_of(&read(&format!("{}/stat", path.display()))).unwrap_or(0);
            }
        }
    }
    let machine: Vec<u64> = read("/proc/stat")
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = machine.iter().take(8).sum();
    // idle and iowait
    let idle = machine.get(3).copied().unwrap_or(0) + machine.get(4).copied().unwrap_or(0);
    Cpu {
        bench,
        postgres,
        busy: total - idle,
        total,
    }
}

/// What the machine and the database did during one measurement.
struct Usage {
    /// Cores used by this process, by PostgreSQL, and by the machine.
    cores: (f64, f64, f64),
    /// The bench database's backends, sampled every 100 ms: what each was
    /// doing (its wait event, `CPU` when running, or `idle in transaction`
    /// when PostgreSQL waited for the client), and how often.
    waits: Vec<(String, u64)>,
}

impl Usage {
    fn describe(&self) -> String {
        let (b, p, m) = self.cores;
        let samples: u64 = self.waits.iter().map(|(_, n)| n).sum::<u64>().max(1);
        let waits: Vec<String> = self
            .waits
            .iter()
            .take(4)
            .map(|(w, n)| format!("{w} {:.0} %", 100.0 * *n as f64 / samples as f64))
            .collect();
        format!(
            "{b:.2} / {p:.2} / {m:.2} | {}",
            if waits.is_empty() {
                "-".to_owned()
            } else {
                waits.join(", ")
            }
        )
    }
}

/// Runs `work` while sampling CPU and the database's backends.
async fn observed<T>(
    options: &PgConnectOptions,
    work: impl std::future::Future<Output = T>,
) -> (T, Usage) {
    let stop = CancellationToken::new();
    let sampler = {
        let options = options.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut counts: std::collections::HashMap<String, u64> = Default::default();
            let Ok(mut conn) = options.connect().await else {
                return counts;
            };
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT CASE WHEN state = 'active' \
                                 THEN coalesce(wait_event_type || '/' || wait_event, 'CPU') \
                                 ELSE state END \
                     FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid() \
                       AND state IN ('active', 'idle in transaction') \
                       AND backend_type = 'client backend'",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default();
                for (w,) in rows {
                    *counts.entry(w).or_default() += 1;
                }
            }
            counts
        })
    };
    let before = cpu_now();
    let out = work.await;
    let after = cpu_now();
    stop.cancel();
    let mut waits: Vec<(String, u64)> = sampler.await.unwrap_or_default().into_iter().collect();
    waits.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let total = (after.total - before.total).max(1) as f64;
    let share = |d: u64| d as f64 / total * cores;
    let usage = Usage {
        cores: (
            share(after.bench - before.bench),
            share(after.postgres.saturating_sub(before.postgres)),
            share(after.busy - before.busy),
        ),
        waits,
    };
    (out, usage)
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

/// One delivery's database work without HTTP, as each reference does it.
#[derive(Clone)]
enum DbPath {
    /// `api::receiver::process`: the receiver's own transaction.
    Process(PgPool),
    /// `Committer::apply`: the receiver's batched path.
    Committer(api::group_commit::Committer),
    /// One UPDATE and one INSERT in a transaction.
    Plain(PgPool),
}

impl DbPath {
    async fn deliver(&self, job: Uuid, seq: u64) {
        let id = signing::new_message_id();
        let payload = || -> webhook_types::WebhookPayload {
            webhook_types::parse_json(&body(job, seq)).unwrap()
        };
        match self {
            DbPath::Process(pool) => {
                let outcome = api::receiver::process(
                    pool,
                    Some(&id),
                    &payload(),
                    api::jobs::WriteCtx { cdn_domain: None },
                )
                .await
                .expect("transaction failed");
                assert_eq!(outcome, api::receiver::Outcome::Applied);
            }
            DbPath::Committer(c) => {
                let outcome = c.apply(Some(id), payload()).await.expect("batch failed");
                assert_eq!(outcome, api::receiver::Outcome::Applied);
            }
            DbPath::Plain(pool) => {
                let mut tx = pool.begin().await.unwrap();
                sqlx::query(
                    "UPDATE clipping_jobs SET current_step = $2, last_sequence = $3, \
                     updated_at = now() WHERE id = $1",
                )
                .bind(job)
                .bind(format!("Rendering, step {seq}"))
                .bind(seq as i64)
                .execute(&mut *tx)
                .await
                .unwrap();
                api::store::insert_receipt(
                    &mut tx,
                    &id,
                    Some(job),
                    "job.progress",
                    Some(seq as i64),
                    api::store::ReceiptOutcome::Applied,
                )
                .await
                .unwrap();
                tx.commit().await.unwrap();
            }
        }
    }
}

async fn run_db(path: &DbPath, jobs: &[(Uuid, Uuid)], secs: u64) -> RunResult {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for &(_, job) in jobs {
        let path = path.clone();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut seq = 1u64;
            while Instant::now() < deadline {
                seq += 1;
                let t0 = Instant::now();
                path.deliver(job, seq).await;
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

/// What the push-latency run measured.
struct PushResult {
    /// Sent → frame, for every webhook of the measured part.
    latencies: Vec<Duration>,
    /// Webhooks sent in the measured part.
    sent: usize,
    /// How long sending them took (the achieved rate is `sent` over it).
    sending: Duration,
}

/// Webhooks at `rate` per second, round-robin over `jobs` jobs of `users`
/// users (each user with one socket), on an open-loop schedule across jobs
/// (a slow answer delays only its own job's next webhook, as with the
/// worker's lanes). Each is timed from the start of its POST to the arrival
/// of its frame on the owner's socket. The first `warmup` seconds are sent
/// but not counted.
async fn push_latency(
    app_address: &str,
    port: u16,
    pool: &PgPool,
    args: &Args,
) -> anyhow::Result<PushResult> {
    type Key = (Uuid, u64);
    let mut owners = Vec::new();
    for u in 0..args.push_users {
        owners.push(api::store::create_user(pool, &format!("push-{u}@bench"), None).await?);
    }
    let mut jobs = Vec::new();
    for j in 0..args.push_jobs {
        let (user, _) = &owners[j % owners.len()];
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
        jobs.push(job);
    }
    // Sent instants by (job, sequence), filled before each POST starts.
    let sent_at: Arc<std::sync::Mutex<std::collections::HashMap<Key, Instant>>> = Arc::default();
    let (frames, mut arrivals) = tokio::sync::mpsc::unbounded_channel::<(Key, Instant)>();
    let mut readers = tokio::task::JoinSet::new();
    for (_, token) in &owners {
        let mut req = format!("ws://127.0.0.1:{port}/ws").into_client_request()?;
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
        let frames = frames.clone();
        readers.spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                let at = Instant::now();
                if let Message::Text(t) = m
                    && let Ok(v) = serde_json::from_str::<Value>(&t)
                    && let (Some(job), Some(step)) =
                        (v["jobId"].as_str(), v["currentStep"].as_str())
                    && let (Ok(job), Some(seq)) = (
                        Uuid::parse_str(job),
                        step.strip_prefix("Rendering, step ")
                            .and_then(|s| s.parse().ok()),
                    )
                {
                    let _ = frames.send(((job, seq), at));
                }
            }
        });
    }
    drop(frames);
    // Every socket registered before the first webhook.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let secrets = Arc::new(SecretSet::parse_list(SECRET)?);
    let url = format!("{app_address}/webhooks/clipping");
    let gap = Duration::from_secs_f64(1.0 / args.push_rate as f64);
    let warmup = (args.push_rate * args.warmup_secs) as usize;
    let total = warmup + (args.push_rate * args.push_secs) as usize;
    // The last request of each job: a job's next webhook waits for its
    // answer, as the worker's per-job lane does, so that a job's webhooks
    // arrive in order (one overtaken would be stale and never pushed).
    let mut last: Vec<Option<tokio::task::JoinHandle<anyhow::Result<()>>>> =
        (0..jobs.len()).map(|_| None).collect();
    let start = tokio::time::Instant::now();
    let mut measured_from = Instant::now();
    for k in 0..total {
        tokio::time::sleep_until(start + gap * k as u32).await;
        if k == warmup {
            measured_from = Instant::now();
        }
        let j = k % jobs.len();
        let job = jobs[j];
        let seq = (k / jobs.len()) as u64 + 2;
        let body = body(job, seq);
        let h = secrets.headers(
            &signing::new_message_id(),
            chrono::Utc::now().timestamp(),
            &body,
        );
        let mut req = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        for (name, v) in h.pairs() {
            req = req.header(name, v);
        }
        let previous = last[j].take();
        let sent_at = (k >= warmup).then(|| sent_at.clone());
        last[j] = Some(tokio::spawn(async move {
            if let Some(previous) = previous {
                previous.await??;
            }
            if let Some(sent_at) = sent_at {
                sent_at
                    .lock()
                    .expect("lock")
                    .insert((job, seq), Instant::now());
            }
            let r = req.send().await?;
            anyhow::ensure!(r.status() == 200, "answered {}", r.status());
            Ok(())
        }));
    }
    let sending = measured_from.elapsed();
    for request in last.into_iter().flatten() {
        request.await??;
    }
    let sent = total - warmup;
    let mut latencies = Vec::with_capacity(sent);
    let deadline = Instant::now() + Duration::from_secs(10);
    while latencies.len() < sent {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, arrivals.recv()).await {
            Ok(Some((key, at))) => {
                if let Some(t0) = sent_at.lock().expect("lock").remove(&key) {
                    latencies.push(at - t0);
                }
            }
            _ => anyhow::bail!(
                "{} of {sent} frames did not arrive within 10 s",
                sent - latencies.len()
            ),
        }
    }
    readers.abort_all();
    latencies.sort();
    Ok(PushResult {
        latencies,
        sent,
        sending,
    })
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

    let lanes = args.commit_lanes.unwrap_or(Tuning::default().commit_lanes);
    // The reference's lane tasks live until the end of the run.
    let lane_tasks = service::BackgroundTasks::new();
    let committer = api::group_commit::Committer::start(
        pool.clone(),
        None,
        lanes,
        Tuning::default().commit_batch,
        &lane_tasks,
    );
    /// What each measured path is, in the forward order of a round.
    const PATHS: [&str; 5] = [
        "plain UPDATE + INSERT per delivery, no HTTP",
        "group commit, no HTTP (Committer::apply)",
        "receiver, group commit (default)",
        "one transaction per delivery, no HTTP (receiver::process)",
        "receiver, one transaction per delivery",
    ];
    let measure = |i: usize, jobs: Vec<(Uuid, Uuid)>, secs: u64| {
        let (pool, committer) = (pool.clone(), committer.clone());
        let (address, single_address) = (address.clone(), single_address.clone());
        async move {
            match i {
                0 => run_db(&DbPath::Plain(pool), &jobs, secs).await,
                1 => run_db(&DbPath::Committer(committer), &jobs, secs).await,
                2 => run_http(&address, &jobs, secs).await,
                3 => run_db(&DbPath::Process(pool), &jobs, secs).await,
                _ => run_http(&single_address, &jobs, secs).await,
            }
        }
    };

    println!(
        "pool: {pool_size} connections; {} s per measurement, {} rounds after {} s of warm-up per path; {lanes} group-commit lanes",
        args.secs, args.rounds, args.warmup_secs,
    );
    println!();
    println!(
        "| path | senders | round | webhooks/s | p50 ms | p99 ms | cores: bench process / postgres / machine | backends sampled |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut means = Vec::new();
    for &c in &args.concurrency {
        for (i, _) in PATHS.iter().enumerate() {
            let jobs = make_jobs(&pool, c, &format!("warm{c}-{i}")).await?;
            measure(i, jobs, args.warmup_secs).await;
        }
        let mut rates = [0.0_f64; PATHS.len()];
        for round in 0..args.rounds {
            let order: Vec<usize> = if round % 2 == 0 {
                (0..PATHS.len()).collect()
            } else {
                (0..PATHS.len()).rev().collect()
            };
            for i in order {
                let jobs = make_jobs(&pool, c, &format!("r{round}-{c}-{i}")).await?;
                let (r, usage) = observed(&options, measure(i, jobs, args.secs)).await;
                println!("{}", r.line(PATHS[i], c, round + 1, &usage));
                rates[i] += r.count as f64 / r.elapsed.as_secs_f64() / args.rounds as f64;
            }
        }
        means.push((c, rates));
    }
    println!();
    println!("mean webhooks/s over the rounds, and the receivers against their references:");
    for (c, r) in means {
        println!(
            "{c} senders: receiver group commit {:.0} = {:.0} % of the same batched work without HTTP ({:.0}), {:.2}x plain UPDATE + INSERT ({:.0}); receiver one transaction each {:.0} = {:.0} % of the same transaction without HTTP ({:.0})",
            r[2],
            100.0 * r[2] / r[1],
            r[1],
            r[2] / r[0],
            r[0],
            r[4],
            100.0 * r[4] / r[3],
            r[3],
        );
    }
    let (push, usage) = observed(&options, push_latency(&address, port, &pool, &args)).await;
    let push = push?;
    let lat = &push.latencies;
    println!();
    println!(
        "webhook sent -> frame on the owner's socket: {} webhooks at {:.0}/s over {} jobs of {} users (after {} s of warm-up): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        push.sent,
        push.sent as f64 / push.sending.as_secs_f64(),
        args.push_jobs,
        args.push_users,
        args.warmup_secs,
        percentile(lat, 0.50).as_secs_f64() * 1e3,
        percentile(lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    println!(
        "during it (warm-up included), cores: bench process / postgres / machine | backends sampled: {}",
        usage.describe()
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
