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
//! Run: `cargo run --release -p bench --bin worker_delivery -- [--durability normal]`

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

#[derive(Debug, Parser)]
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
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

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
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let receiver = axum::Router::new().fallback(move |headers: HeaderMap| {
        let tx = tx.clone();
        async move {
            let at = Instant::now();
            if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
                let _ = tx.send((id.to_owned(), at));
            }
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let callback = format!("http://{}/webhooks/clipping", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let dir = tempfile::tempdir()?;
    let mut config = ServeConfig::with_data_dir(dir.path());
    config.webhook_secret = Some(signing::SecretSet::parse_list(SECRET)?);
    config.allow_private_callbacks = true;
    config.progress_interval_ms = 0;
    config.sim_stage_ms = 0;
    config.durability = args.durability;
    let app = Application::build(config).await?;
    let state = app.state().clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));

    let warmup = Args {
        jobs: args.jobs.div_ceil(5),
        events_per_job: args.events_per_job.min(20),
        ..args
    };
    let mut results = Vec::new();
    for (name, rate) in [("burst", None), ("paced", Some(args.paced_rate))] {
        run(
            &format!("warmup-{name}"),
            &state,
            &callback,
            &warmup,
            rate,
            &mut rx,
        )
        .await?;
        let r = run(name, &state, &callback, &args, rate, &mut rx).await?;
        results.push(r);
    }
    stop.cancel();
    server.await??;

    println!();
    println!(
        "durability {:?}; {} jobs x {} events; paced at {} events/s",
        args.durability, args.jobs, args.events_per_job, args.paced_rate
    );
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
    state: &worker::AppState,
    callback: &str,
    args: &Args,
    rate: Option<u64>,
    rx: &mut mpsc::UnboundedReceiver<(String, Instant)>,
) -> anyhow::Result<RunResult> {
    // Create the jobs directly in the store, held by the benchmark: it
    // drives their reporters itself, so no dispatcher may claim them.
    let mut rows = Vec::new();
    for i in 0..args.jobs {
        let mut req = ClippingJobRequest::new("https://youtube.com/watch?v=bench");
        req.callback_url = Some(callback.to_owned());
        req.owner_user_id = Some("user_bench".into());
        let job_id = format!("{name}-{i:03}");
        match state
            .store
            .insert_held_job(&job_id, &req, "bench", i64::MAX)
            .await?
        {
            Inserted::Created(row) => rows.push(row),
            Inserted::Existing(_) => anyhow::bail!("job {job_id} exists"),
        }
    }
    let job_ids: std::collections::HashSet<String> =
        rows.iter().map(|r| r.job_id.clone()).collect();
    // Per job, one event every `gap` in the paced run.
    let gap = rate.map(|r| Duration::from_secs_f64(args.jobs as f64 / r as f64));
    let n = args.events_per_job;
    let jobs = args.jobs as u32;
    let began = Instant::now();
    let mut tasks = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
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
    while let Ok((id, at)) = rx.try_recv() {
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
