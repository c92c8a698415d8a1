//! Benchmark of the worker's webhook delivery path.
//!
//! One worker runs in this process (simulated engine, no progress throttle,
//! private callbacks allowed, signing on) with a loopback receiver that
//! answers 200 at once. 100 jobs each emit 100 events through the worker's
//! own reporter (job.started, 98 × job.progress, job.completed): every event
//! is committed to SQLite with its job update and handed to the sender, as
//! in production. Two runs:
//!
//! - **burst**: all jobs emit as fast as the store commits. Measures the
//!   throughput of the whole path; progress events that a newer event of
//!   their job overtakes while queued are superseded (not sent), by design.
//! - **paced**: the same 10,000 events at a target total rate
//!   (`--paced-rate`, default 5,000/s). Measures latency under a load the
//!   worker keeps up with.
//!
//! Latency is measured on one monotonic clock to the receiver's arrival
//! time, from three instants:
//!
//! - **from call**: the start of the emitting call (`Reporter::emit`), so it
//!   includes the wait for the store's group commit. The headline figure.
//! - **from schedule** (paced only): the instant the event was due to be
//!   sent. A stall that delays the emitter itself shows here and nowhere
//!   else; in the burst every event is due at once, so it is not shown.
//! - **from commit**: the instant the store's writer finished the
//!   transaction (what the reporter returns). Only the sender's part.
//!
//! Each run is preceded by a short warm-up run (not reported). After a run,
//! the store is read until none of its deliveries is pending; deliveries
//! are then counted by their final status: delivered, superseded (a newer
//! progress event of the job overtook it while queued: never sent, by
//! design) and lost (anything else; should be 0).
//!
//! **Fleets** (`--postgres <server URL>`): the same runs with the store in a
//! fresh PostgreSQL database on that server, shared by `--workers` workers
//! in this process; job *i* is emitted and delivered through worker
//! *i mod N* (each job's lane is held by that worker's sender, as when it
//! runs the job). The database is dropped afterwards.
//!
//! **Claim and settle** (`--claim-jobs M`, after the runs above): M jobs are
//! submitted over HTTP round-robin to the workers, which claim them,
//! run them through the simulated engine with zero-length stages and
//! deliver their events; the figure is M over the time until every job's
//! terminal event has arrived.
//!
//! Run: `cargo run --release -p bench --bin worker_delivery -- [--durability normal]
//! [--postgres postgres://… --workers 2] [--claim-jobs 2000]`

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use axum::http::HeaderMap;
use clap::Parser;
use tokio::sync::mpsc;
use tokio::time::Instant;
use webhook_types::{ClippingJobRequest, JobOutput, PipelineStatus, Timestamp};
use worker::reporter::{Draft, Reporter, StepReport};
use worker::store::{DeliveryFilter, DeliveryStatus, Durability, Inserted};
use worker::{Application, ServeConfig};

#[derive(Debug, Clone, Parser)]
#[command(about = "Webhook delivery throughput and latency of clipping-worker")]
struct Args {
    /// Jobs emitting at once.
    #[arg(long, default_value_t = 100)]
    jobs: usize,
    /// Events per job (started + progress + completed).
    #[arg(long, default_value_t = 100)]
    events_per_job: usize,
    /// Total emission rate of the paced run, events per second.
    #[arg(long, default_value_t = 5000)]
    paced_rate: u64,
    /// The store's durability (the worker's `--durability`).
    #[arg(long, value_enum, default_value_t = Durability::Full)]
    durability: Durability,
    /// Put the store in a fresh database on this PostgreSQL server (dropped
    /// afterwards) instead of SQLite.
    #[arg(long)]
    postgres: Option<String>,
    /// Workers sharing the store (PostgreSQL only).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Jobs for the claim-and-settle run; 0 skips it.
    #[arg(long, default_value_t = 0)]
    claim_jobs: usize,
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request at the receiver: its `webhook-id`, when it arrived, and
/// whether it carried a terminal event.
type Arrival = (String, Instant, bool);

/// When each event was due, its call began and its row was committed.
type Emitted = HashMap<String, (Instant, Instant, Instant)>;

struct RunResult {
    name: &'static str,
    emitted: usize,
    /// Final statuses in the store, and arrivals matched to an emission.
    delivered: usize,
    superseded: usize,
    lost: usize,
    arrived: usize,
    wall: Duration,
    emit_wall: Duration,
    from_schedule: Option<Vec<Duration>>,
    from_call: Vec<Duration>,
    from_commit: Vec<Duration>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (tx, mut rx) = mpsc::unbounded_channel::<Arrival>();
    let receiver = axum::Router::new().fallback(move |headers: HeaderMap| {
        let tx = tx.clone();
        async move {
            let at = Instant::now();
            let terminal = headers
                .get("x-webhook-event")
                .is_some_and(|v| v == "job.completed" || v == "job.failed");
            if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
                let _ = tx.send((id.to_owned(), at, terminal));
            }
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let callback = format!("http://{}/webhooks/clipping", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    anyhow::ensure!(
        args.workers >= 1 && (args.workers == 1 || args.postgres.is_some()),
        "several workers need --postgres"
    );
    let database = match &args.postgres {
        Some(server) => Some(FreshDatabase::create(server).await?),
        None => None,
    };
    let dir = tempfile::tempdir()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut states = Vec::new();
    let mut servers = Vec::new();
    for w in 0..args.workers {
        let mut config = ServeConfig::with_data_dir(dir.path().join(format!("w{w}")));
        config.webhook_secret = Some(signing::SecretSet::parse_list(SECRET)?);
        config.allow_private_callbacks = true;
        config.progress_interval_ms = 0;
        config.sim_stage_ms = 0;
        config.durability = args.durability;
        config.max_concurrent_jobs = 16;
        if let Some(db) = &database {
            config.store = db.url.parse().map_err(anyhow::Error::msg)?;
        }
        let app = Application::build(config).await?;
        states.push((app.port(), app.state().clone()));
        servers.push(tokio::spawn(app.run_until_stopped(stop.clone())));
    }
    let ports: Vec<u16> = states.iter().map(|(p, _)| *p).collect();
    let states: Vec<worker::AppState> = states.into_iter().map(|(_, s)| s).collect();

    let warmup = Args {
        jobs: args.jobs.div_ceil(5),
        events_per_job: args.events_per_job.min(20),
        postgres: None,
        ..args
    };
    let mut results = Vec::new();
    for (name, rate) in [("burst", None), ("paced", Some(args.paced_rate))] {
        run(
            &format!("warmup-{name}"),
            &states,
            &callback,
            &warmup,
            rate,
            &mut rx,
        )
        .await?;
        let r = run(name, &states, &callback, &args, rate, &mut rx).await?;
        results.push(r);
    }
    let claimed = if args.claim_jobs > 0 {
        Some(claim_and_settle(&ports, &callback, args.claim_jobs, &mut rx).await?)
    } else {
        None
    };
    stop.cancel();
    for server in servers {
        server.await??;
    }
    if let Some(db) = database {
        db.drop().await?;
    }

    println!();
    println!(
        "store {}, {} worker(s); durability {:?}; {} jobs x {} events; paced at {} events/s",
        if args.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        args.workers,
        args.durability,
        args.jobs,
        args.events_per_job,
        args.paced_rate
    );
    if let Some((jobs, wall)) = claimed {
        println!(
            "claim and settle: {jobs} jobs (simulated engine, zero-length stages) in {:.0} ms: {:.0} jobs/s",
            wall.as_secs_f64() * 1000.0,
            jobs as f64 / wall.as_secs_f64()
        );
    }
    println!(
        "| run | events | delivered / superseded / lost | wall | deliveries/s | p50/p99 from call | p50/p99 from schedule | p50/p99 from commit |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {} | {} / {} / {} | {:.0} ms | {:.0} | {} | {} | {} |",
            r.name,
            r.emitted,
            r.delivered,
            r.superseded,
            r.lost,
            r.wall.as_secs_f64() * 1000.0,
            r.delivered as f64 / r.wall.as_secs_f64(),
            pct(&r.from_call),
            r.from_schedule.as_deref().map_or("-".into(), pct),
            pct(&r.from_commit),
        );
    }
    for r in &results {
        println!(
            "{}: emission alone took {:.0} ms ({:.0} commits/s); {} arrivals matched",
            r.name,
            r.emit_wall.as_secs_f64() * 1000.0,
            r.emitted as f64 / r.emit_wall.as_secs_f64(),
            r.arrived,
        );
    }
    Ok(())
}

fn pct(v: &[Duration]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let mut v = v.to_vec();
    v.sort();
    let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    format!(
        "{:.2}/{:.2} ms",
        at(0.50).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0
    )
}

async fn run(
    name: &str,
    states: &[worker::AppState],
    callback: &str,
    args: &Args,
    rate: Option<u64>,
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
) -> anyhow::Result<RunResult> {
    // Create the jobs directly in the store, held by the benchmark: it
    // drives their reporters itself, so no dispatcher may claim them.
    let mut rows = Vec::new();
    for i in 0..args.jobs {
        let mut req = ClippingJobRequest::new("https://youtube.com/watch?v=bench");
        req.callback_url = Some(callback.to_owned());
        req.owner_user_id = Some("user_bench".into());
        let job_id = format!("{name}-{i:03}");
        let state = &states[i % states.len()];
        match state
            .store
            .insert_held_job(&job_id, &req, "bench", i64::MAX)
            .await?
        {
            Inserted::Created(row) => rows.push((row, state.clone())),
            Inserted::Existing(_) => anyhow::bail!("job {job_id} exists"),
        }
    }
    let job_ids: std::collections::HashSet<String> =
        rows.iter().map(|(r, _)| r.job_id.clone()).collect();
    // Per job, one event every `gap` in the paced run.
    let gap = rate.map(|r| Duration::from_secs_f64(args.jobs as f64 / r as f64));
    let n = args.events_per_job;
    let jobs = args.jobs as u32;
    let began = Instant::now();
    let mut tasks = Vec::new();
    for (i, (row, state)) in rows.into_iter().enumerate() {
        let mut reporter = Reporter::for_job(state.store.clone(), state.outbox.clone(), &row);
        tasks.push(tokio::spawn(async move {
            let mut emitted = Emitted::new();
            // Spread the jobs' first events evenly over one gap.
            let mut next = began + gap.map(|g| g * i as u32 / jobs).unwrap_or_default();
            for k in 0..n {
                let due = if let Some(g) = gap {
                    tokio::time::sleep_until(next).await;
                    let due = next;
                    next += g;
                    due
                } else {
                    Instant::now()
                };
                let draft = if k == 0 {
                    Draft::Started
                } else if k == n - 1 {
                    Draft::Completed(output(reporter.job_id()))
                } else {
                    let status = PipelineStatus::ALL[(k * 6 / n).min(5)];
                    Draft::Progress(StepReport::new(
                        status,
                        (k * 99 / n) as f64,
                        format!("Step {k}"),
                    ))
                };
                let t0 = Instant::now();
                let e = reporter.emit(draft).await.context("emit")?;
                emitted.insert(
                    e.delivery_id.expect("the job has a callback"),
                    (due, t0, e.committed_at),
                );
            }
            Ok::<_, anyhow::Error>(emitted)
        }));
    }
    let mut emitted = Emitted::new();
    for t in tasks {
        emitted.extend(t.await??);
    }
    let emit_wall = began.elapsed();
    // Settled: none of this run's deliveries is pending in the store. The
    // sender commits an outcome after the receiver answered, so by then
    // every arrival is in the channel.
    let settle_by = Instant::now() + Duration::from_secs(60);
    let pending = DeliveryFilter {
        status: Some(DeliveryStatus::Pending),
        ..DeliveryFilter::default()
    };
    let state = &states[0];
    while state
        .store
        .list_deliveries(&pending)
        .await?
        .iter()
        .any(|d| job_ids.contains(&d.job_id))
    {
        anyhow::ensure!(
            Instant::now() < settle_by,
            "deliveries still pending after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rows: Vec<_> = state
        .store
        .list_deliveries(&DeliveryFilter::default())
        .await?
        .into_iter()
        .filter(|d| job_ids.contains(&d.job_id))
        .collect();
    let count = |s: DeliveryStatus| rows.iter().filter(|d| d.status == s).count();
    let (delivered, superseded) = (
        count(DeliveryStatus::Delivered),
        count(DeliveryStatus::Superseded),
    );
    let mut last_arrival = began;
    let mut from_schedule = Vec::new();
    let mut from_call = Vec::new();
    let mut from_commit = Vec::new();
    while let Ok((id, at, _)) = rx.try_recv() {
        if let Some((due, t0, t1)) = emitted.get(&id) {
            last_arrival = last_arrival.max(at);
            from_schedule.push(at.saturating_duration_since(*due));
            from_call.push(at.saturating_duration_since(*t0));
            from_commit.push(at.saturating_duration_since(*t1));
        }
    }
    let wall = last_arrival.max(began + emit_wall) - began;
    Ok(RunResult {
        name: if rate.is_some() { "paced" } else { "burst" },
        emitted: emitted.len(),
        delivered,
        superseded,
        lost: emitted.len() - delivered - superseded,
        arrived: from_call.len(),
        wall,
        emit_wall,
        from_schedule: rate.map(|_| from_schedule),
        from_call,
        from_commit,
    })
}

/// Submits `jobs` jobs over HTTP, round-robin to the workers on `ports`,
/// and waits until every job's terminal event has arrived; returns how many
/// and how long it took from the first submission.
async fn claim_and_settle(
    ports: &[u16],
    callback: &str,
    jobs: usize,
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
) -> anyhow::Result<(usize, Duration)> {
    while rx.try_recv().is_ok() {}
    let client = reqwest::Client::new();
    let began = Instant::now();
    for i in 0..jobs {
        let port = ports[i % ports.len()];
        let mut req = ClippingJobRequest::new(format!("sim://bench/{i}"));
        req.callback_url = Some(callback.to_owned());
        req.max_clips = 1;
        client
            .post(format!("http://127.0.0.1:{port}/ai-clipping/jobs"))
            .json(&req)
            .send()
            .await?
            .error_for_status()?;
    }
    // One terminal event per job; a repeat (at least once) has its id.
    let mut terminal = std::collections::HashSet::new();
    let mut last = began;
    while terminal.len() < jobs {
        let (id, at, is_terminal) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .context("jobs unsettled after a minute without a terminal event")?
            .context("the receiver stopped")?;
        if is_terminal && terminal.insert(id) {
            last = at;
        }
    }
    Ok((jobs, last - began))
}

/// A fresh database on a PostgreSQL server, for one run.
struct FreshDatabase {
    server: String,
    name: String,
    url: String,
}

impl FreshDatabase {
    async fn create(server: &str) -> anyhow::Result<FreshDatabase> {
        use sqlx::Connection as _;
        let name = format!("worker_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(server)
            .await
            .context("failed to reach --postgres")?;
        sqlx::Executor::execute(
            &mut admin,
            sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
        )
        .await?;
        let mut url = url::Url::parse(server)?;
        url.set_path(&format!("/{name}"));
        Ok(FreshDatabase {
            server: server.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    async fn drop(self) -> anyhow::Result<()> {
        use sqlx::Connection as _;
        let mut admin = sqlx::PgConnection::connect(&self.server).await?;
        sqlx::Executor::execute(
            &mut admin,
            sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )),
        )
        .await?;
        Ok(())
    }
}

/// A small but complete output, as job.completed carries.
fn output(job_id: &str) -> JobOutput {
    JobOutput {
        job_id: job_id.to_owned(),
        source_video_url: "https://youtube.com/watch?v=bench".into(),
        source_video_title: "Bench".into(),
        source_video_duration_seconds: 600.0,
        total_clips: 0,
        clips: Vec::new(),
        transcript_url: None,
        plan_url: None,
        processing_time_seconds: 1.0,
        created_at: Timestamp::now(),
    }
}
