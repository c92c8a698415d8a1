//! The worker as a process: killed with SIGKILL and restarted on the same
//! store, stopped with SIGTERM, and its command-line tools.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;
use webhook_types::{Event, JobState, JobView};

use crate::helpers::{Received, Receiver, Reply, SECRET, StoreKind, TestStore, free_port, job};

const BIN: &str = env!("CARGO_BIN_EXE_clipping-worker");
const T: Duration = Duration::from_secs(15);

/// A `clipping-worker serve` child process.
struct WorkerProcess {
    child: Child,
    address: String,
}

/// Variables that would change the worker's configuration behind the
/// test's back.
const ENV: [&str; 16] = [
    "WORKER_LISTEN",
    "WORKER_DATA_DIR",
    "WORKER_STORE",
    "WEBHOOK_SECRET",
    "WORKER_ENGINE",
    "WORKER_MAX_CONCURRENT_JOBS",
    "WORKER_PROGRESS_INTERVAL_MS",
    "WORKER_CALLBACK_ALLOW",
    "WORKER_ALLOW_PRIVATE_CALLBACKS",
    "WORKER_API_TOKEN",
    "WORKER_SIM_STAGE_MS",
    "WORKER_RETRY_SCHEDULE",
    "LOG_FORMAT",
    "WORKER_DURABILITY",
    "WORKER_JOB_LEASE_MS",
    "WORKER_QUEUE_POLL_MS",
];

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).kill_on_drop(true);
    for var in ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// Starts `serve` on `store` with test settings: `stage_ms` per simulated
/// stage, and `extra` flags.
async fn spawn_worker(store: &TestStore, stage_ms: u64, extra: &[&str]) -> WorkerProcess {
    spawn_named_worker(store, stage_ms, extra, None).await
}

/// As [`spawn_worker`]; `host` becomes the host name the worker's lease
/// owner id starts with, so a test can tell the workers' leases apart.
async fn spawn_named_worker(
    store: &TestStore,
    stage_ms: u64,
    extra: &[&str],
    host: Option<&str>,
) -> WorkerProcess {
    let port = free_port();
    let stage_ms = stage_ms.to_string();
    let listen = format!("127.0.0.1:{port}");
    let data_dir = store.data_dir();
    let store_url = store.url_arg();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("worker.log"))
        .unwrap();
    let mut args = vec![
        "serve",
        "--listen",
        &listen,
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--store",
        &store_url,
        "--webhook-secret",
        SECRET,
        "--allow-private-callbacks",
        "--engine",
        "simulated",
        "--progress-interval-ms",
        "0",
        "--sim-stage-ms",
        &stage_ms,
    ];
    args.extend_from_slice(extra);
    let mut cmd = command(&args);
    if let Some(host) = host {
        cmd.env("HOSTNAME", host);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("the worker binary starts");
    let address = format!("http://{listen}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + T;
    loop {
        if let Ok(r) = client.get(format!("{address}/readyz")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker process never became ready"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    WorkerProcess { child, address }
}

impl WorkerProcess {
    async fn submit(&self, body: serde_json::Value) -> String {
        let r = reqwest::Client::new()
            .post(format!("{}/ai-clipping/jobs", self.address))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let v: serde_json::Value = r.json().await.unwrap();
        v["job_id"].as_str().unwrap().to_owned()
    }

    async fn job(&self, job_id: &str) -> JobView {
        reqwest::Client::new()
            .get(format!("{}/ai-clipping/jobs/{job_id}", self.address))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn wait_for(&self, job_id: &str, done: impl Fn(&JobView) -> bool) -> JobView {
        let deadline = Instant::now() + T;
        loop {
            let v = self.job(job_id).await;
            if done(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "job never got there: {v:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The job's deliveries as `webhooks list --json` prints them, once none
    /// is pending any more: from then on, nothing more is sent for it.
    async fn settled_ledger(&self, store: &TestStore, job_id: &str) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + T;
        loop {
            let lines = ledger(store, job_id).await;
            if !lines.is_empty() && lines.iter().all(|d| d["status"] != "pending") {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "deliveries still pending: {lines:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no chance to flush or say goodbye.
    async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// The `--data-dir` and `--store` flags of a command on `store`.
fn store_flags(store: &TestStore) -> [String; 4] {
    [
        "--data-dir".to_owned(),
        store.data_dir().to_str().unwrap().to_owned(),
        "--store".to_owned(),
        store.url_arg(),
    ]
}

/// `webhooks list --json --job` on a store, one JSON value per delivery.
async fn ledger(store: &TestStore, job_id: &str) -> Vec<serde_json::Value> {
    let flags = store_flags(store);
    let mut args = vec!["webhooks", "list", "--json", "--job", job_id];
    args.extend(flags.iter().map(String::as_str));
    let out = command(&args).output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn for_job<'a>(got: &'a [Received], job_id: &str) -> Vec<&'a Received> {
    got.iter()
        .filter(|r| r.payload.as_ref().is_some_and(|p| p.job_id == job_id))
        .collect()
}

async fn a_terminal_delivery_pending_at_sigkill_arrives_exactly_once_after_restart(
    kind: StoreKind,
) {
    let dir = TestStore::new(kind).await;
    let mut rx = Receiver::start(|_| Reply::status(500)).await;
    // On PostgreSQL the dead worker's delivery leases must run out first.
    let schedule = [
        "--retry-schedule",
        "0,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms",
        "--job-lease-ms",
        "600",
    ];
    let worker = spawn_worker(&dir, 10, &schedule).await;
    let job_id = worker
        .submit(job("https://youtube.com/watch?v=k", &rx.url("/k"), 1))
        .await;
    // The job ends while every delivery is refused: its terminal event is
    // stored, pending behind job.started.
    worker
        .wait_for(&job_id, |v| v.status == JobState::Completed)
        .await;
    let before = rx.drain_now();
    assert!(before.iter().all(|r| !r.ok()));
    worker.kill().await;

    rx.set_script(|_| Reply::status(200));
    let worker = spawn_worker(&dir, 10, &schedule).await;
    let got = rx.until_terminal(&job_id, T).await;
    worker.settled_ledger(&dir, &job_id).await;
    let mut all = got.clone();
    all.extend(rx.drain_now());
    let all = for_job(&all, &job_id);
    let delivered: Vec<&&Received> = all.iter().filter(|r| r.ok()).collect();
    let terminal: Vec<_> = delivered
        .iter()
        .filter(|r| r.payload().event.is_terminal())
        .collect();
    assert_eq!(terminal.len(), 1, "exactly one terminal delivery");
    assert_eq!(terminal[0].payload().event, Event::Completed);
    assert_eq!(delivered[0].payload().event, Event::Started);
    assert_eq!(delivered.last().unwrap().payload().event, Event::Completed);
    let seqs: Vec<u64> = delivered
        .iter()
        .map(|r| r.payload().sequence.unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(delivered.iter().all(|r| r.verified));

    // The ledger tool reads the same store while the worker runs.
    let completed_id = terminal[0].webhook_id().to_owned();
    let lines = ledger(&dir, &job_id).await;
    assert!(lines.iter().any(|d| d["delivery_id"] == completed_id));
    // And `webhooks redeliver` reaches the running worker through the store.
    let flags = store_flags(&dir);
    let mut args = vec!["webhooks", "redeliver", &completed_id];
    args.extend(flags.iter().map(String::as_str));
    let out = command(&args).output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = rx.next(T).await;
    assert_eq!(again.webhook_id(), completed_id);
    worker.kill().await;
}

async fn a_job_killed_mid_pipeline_gets_exactly_one_failed_event_after_restart(kind: StoreKind) {
    let dir = TestStore::new(kind).await;
    let mut rx = Receiver::ok().await;
    // On PostgreSQL the job is failed once the dead worker's lease expires
    // (other workers may be running theirs); on SQLite at the next start.
    let lease = ["--job-lease-ms", "600"];
    let worker = spawn_worker(&dir, 10, &lease).await;
    // Each stage of this job lasts ten minutes: the kill lands inside the
    // downloading stage however slowly the test gets there.
    let job_id = worker
        .submit(job("sim://video?stage_ms=600000", &rx.url("/m"), 2))
        .await;
    let mut before = Vec::new();
    loop {
        let r = rx.next(T).await;
        let downloading = r.payload().event == Event::Progress
            && r.payload().status == webhook_types::PipelineStatus::Downloading;
        before.push(r);
        if downloading {
            break;
        }
    }
    worker.kill().await;

    let worker = spawn_worker(&dir, 10, &lease).await;
    let after = rx.until_terminal(&job_id, T).await;
    worker.settled_ledger(&dir, &job_id).await;
    let extra = rx.drain_now();
    assert!(
        for_job(&extra, &job_id).is_empty(),
        "nothing after the terminal event: {extra:?}"
    );
    let failed = after.last().unwrap().payload();
    assert_eq!(failed.event, Event::Failed);
    assert_eq!(
        failed.error.as_deref(),
        Some(match kind {
            StoreKind::Sqlite =>
                "Job interrupted: the worker restarted while the job was downloading",
            StoreKind::Postgres => {
                "Job interrupted: the worker running it stopped while the job was downloading"
            }
        })
    );
    assert_eq!(failed.progress_percent.get(), 5.0, "the progress reached");
    // Delivery is at least once: an event delivered just before the kill,
    // whose outcome was not yet committed, comes again after the restart
    // with the same webhook-id (receivers dedupe on it). Deduplicated, the
    // sequences run on without a gap.
    let mut seen = std::collections::HashMap::new();
    for r in before.iter().chain(after.iter()).filter(|r| r.ok()) {
        let seq = r.payload().sequence.unwrap();
        if let Some(prev) = seen.insert(r.webhook_id().to_owned(), seq) {
            assert_eq!(prev, seq, "a repeat carries the same event");
        }
    }
    let mut seqs: Vec<u64> = seen.values().copied().collect();
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "sequences continue"
    );
    let terminals: std::collections::HashSet<&str> = before
        .iter()
        .chain(after.iter())
        .filter(|r| r.payload().event.is_terminal())
        .map(|r| r.webhook_id())
        .collect();
    assert_eq!(terminals.len(), 1, "exactly one terminal event");
    assert_eq!(worker.job(&job_id).await.status, JobState::Failed);
    worker.kill().await;
}

#[tokio::test]
async fn healthcheck_passes_against_a_ready_worker_and_fails_against_none() {
    let store = TestStore::new(StoreKind::Sqlite).await;
    let worker = spawn_worker(&store, 10, &[]).await;
    let ready = format!("{}/readyz", worker.address);
    let ok = command(&["healthcheck", "--url", &ready])
        .status()
        .await
        .unwrap();
    assert!(ok.success(), "{ok:?}");
    let missing = format!("{}/no-such-path", worker.address);
    let not_found = command(&["healthcheck", "--url", &missing])
        .output()
        .await
        .unwrap();
    assert!(!not_found.status.success());
    assert!(String::from_utf8_lossy(&not_found.stderr).contains("404"));
    worker.kill().await;
    let down = command(&["healthcheck", "--url", &ready])
        .output()
        .await
        .unwrap();
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("unreachable"));
}

#[tokio::test]
async fn sigterm_stops_the_worker_cleanly() {
    let store = TestStore::new(StoreKind::Sqlite).await;
    let mut worker = spawn_worker(&store, 10, &[]).await;
    let pid = worker.child.id().unwrap().to_string();
    let began = Instant::now();
    let st = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(st.success());
    let status = tokio::time::timeout(Duration::from_secs(10), worker.child.wait())
        .await
        .expect("the worker stops within its bounds")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(began.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn listen_verifies_and_prints_each_delivery() {
    use tokio::io::{AsyncBufReadExt as _, BufReader};
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut listener = command(&["listen", "--listen", &listen, "--secret", SECRET])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(listener.stdout.take().unwrap()).lines();
    let url = format!("http://{listen}/any/path");
    let client = reqwest::Client::new();
    // Wait for it to listen: an unsigned POST is refused with 401.
    let deadline = Instant::now() + T;
    loop {
        match client.post(&url).body("{}").send().await {
            Ok(r) => {
                assert_eq!(r.status(), 401, "a bad signature is refused");
                break;
            }
            Err(_) => {
                assert!(Instant::now() < deadline);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    }
    let store = TestStore::new(StoreKind::Sqlite).await;
    let worker = spawn_worker(&store, 10, &[]).await;
    let job_id = worker
        .submit(job("https://youtube.com/watch?v=l", &url, 1))
        .await;
    let mut events = Vec::new();
    while events
        .last()
        .is_none_or(|e: &serde_json::Value| e["event"] != "job.completed")
    {
        let line = tokio::time::timeout(T, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        events.push(serde_json::from_str(&line).unwrap());
    }
    assert_eq!(events[0]["event"], "job.started");
    for e in &events {
        assert_eq!(e["verified"], true);
        assert!(e["webhook_id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(e["payload"]["job_id"], job_id);
    }
    worker.kill().await;
    listener.start_kill().unwrap();
}

/// Runs a command that must fail, with `RUST_BACKTRACE=1`, and returns its
/// error message, checking the one error style of both binaries: a single
/// `error: …` line, no `Caused by:` list and no backtrace.
async fn failure_of(args: &[&str]) -> String {
    let out = command(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .await
        .unwrap();
    service::report::failure_message(&out).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_busy_port_fails_before_the_data_dir_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let data_dir = tmp.path().join("store");
    let text = failure_of(&[
        "serve",
        "--listen",
        &addr,
        "--data-dir",
        data_dir.to_str().unwrap(),
    ])
    .await;
    assert!(
        text.contains(&format!("failed to listen on {addr}")),
        "{text}"
    );
    assert!(
        !data_dir.exists(),
        "the data dir was created before the bind"
    );
}

#[tokio::test]
async fn an_expected_cli_failure_is_one_line_without_a_backtrace() {
    let store = TestStore::new(StoreKind::Sqlite).await;
    let worker = spawn_worker(&store, 10, &[]).await;
    // A request the worker refuses with 422.
    let text = failure_of(&[
        "submit",
        "--worker-url",
        &worker.address,
        "--video-url",
        "notaurl",
    ])
    .await;
    assert!(text.contains("422"), "{text}");
    worker.kill().await;
}

#[tokio::test]
async fn ledger_commands_on_a_missing_store_say_where_they_looked_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("not-a-store");
    for args in [
        vec!["webhooks", "list", "--data-dir", data_dir.to_str().unwrap()],
        vec![
            "webhooks",
            "redeliver",
            "msg_x",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
    ] {
        let text = failure_of(&args).await;
        assert!(text.contains("no worker store at"), "{text}");
        assert!(text.contains("not-a-store"), "{text}");
        assert!(!data_dir.exists(), "{args:?} created the data dir");
    }
    // On PostgreSQL: a database where no worker ever ran has no store, and
    // the commands do not make one.
    let empty = TestStore::new(StoreKind::Postgres).await;
    let url = empty.url_arg();
    for args in [
        vec!["webhooks", "list", "--store", &url],
        vec!["webhooks", "redeliver", "msg_x", "--store", &url],
    ] {
        let text = failure_of(&args).await;
        assert!(text.contains("no worker store at"), "{text}");
        assert!(text.contains("clipping_worker"), "{text}");
    }
}

#[tokio::test]
async fn migrate_creates_the_store_that_the_ledger_commands_then_read() {
    for kind in [StoreKind::Sqlite, StoreKind::Postgres] {
        let store = TestStore::new(kind).await;
        let flags = store_flags(&store);
        let mut list = vec!["webhooks", "list", "--json"];
        list.extend(flags.iter().map(String::as_str));
        let before = command(&list).output().await.unwrap();
        assert!(!before.status.success(), "{kind:?}: no store yet");
        let mut migrate = vec!["migrate"];
        migrate.extend(flags.iter().map(String::as_str));
        for _ in 0..2 {
            let out = command(&migrate).output().await.unwrap();
            assert!(
                out.status.success(),
                "{kind:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let after = command(&list).output().await.unwrap();
        assert!(
            after.status.success(),
            "{kind:?}: {}",
            String::from_utf8_lossy(&after.stderr)
        );
        assert!(after.stdout.is_empty(), "{kind:?}: an empty ledger");
    }
}

/// Three worker processes on one PostgreSQL store take 60 jobs, submitted
/// round-robin; the receiver refuses every delivery's first attempt, so
/// deliveries are pending all along. One worker is SIGKILLed while it runs
/// jobs and holds deliveries. The others settle everything: every job ends
/// with exactly one terminal event; each job's events arrive in `sequence`
/// order, with no gap but superseded progress; each job started once (no
/// job ran on two workers); a `webhook-id` seen twice carries the same body.
#[tokio::test]
async fn a_fleet_loses_a_worker_and_every_job_still_ends_once_in_order() {
    let store = TestStore::new(StoreKind::Postgres).await;
    let mut rx = Receiver::start(|r| Reply::status(if r.attempt == 1 { 500 } else { 200 })).await;
    let flags = [
        "--job-lease-ms",
        "600",
        "--max-concurrent-jobs",
        "4",
        "--retry-schedule",
        "0,30ms,30ms,30ms,30ms,30ms,30ms,30ms,30ms,30ms,30ms,30ms,30ms,30ms,30ms,30ms",
    ];
    let mut workers = Vec::new();
    for host in ["fleet0", "fleet1", "fleet2"] {
        workers.push(spawn_named_worker(&store, 150, &flags, Some(host)).await);
    }
    let db = sqlx::PgPool::connect(&store.url_arg()).await.unwrap();
    let mut jobs = Vec::new();
    for i in 0..60 {
        let w = &workers[i % 3];
        jobs.push(
            w.submit(job(
                &format!("https://youtube.com/watch?v=f{i}"),
                &rx.url("/f"),
                2,
            ))
            .await,
        );
    }
    // Kill the first worker once it runs jobs and holds deliveries (the
    // store says whose leases are whose).
    let deadline = Instant::now() + T;
    loop {
        let (running, lanes): (i64, i64) = sqlx::query_as(
            "SELECT
                 count(*) FILTER (WHERE lease_owner LIKE 'fleet0-%'
                                  AND state NOT IN ('queued', 'completed', 'failed')),
                 count(*) FILTER (WHERE delivery_owner LIKE 'fleet0-%')
             FROM clipping_worker.jobs",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if running > 0 && lanes > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the first worker never got busy");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let victim = workers.remove(0);
    victim.kill().await;
    db.close().await;
    let mut got: Vec<Received> = Vec::new();

    let terminal = |got: &[Received]| {
        got.iter()
            .filter(|r| r.ok() && r.payload().event.is_terminal())
            .map(|r| r.payload().job_id.clone())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while terminal(&got) < jobs.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        got.push(rx.next(left).await);
    }
    // Everything settled: nothing pending in the store any more.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ledger = loop {
        let flags = store_flags(&store);
        let mut args = vec!["webhooks", "list", "--json"];
        args.extend(flags.iter().map(String::as_str));
        let out = command(&args).output().await.unwrap();
        assert!(out.status.success());
        let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if rows.iter().all(|d| d["status"] != "pending") {
            break rows;
        }
        assert!(Instant::now() < deadline, "deliveries still pending");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    got.extend(rx.drain_now());

    let mut bodies = std::collections::HashMap::new();
    for r in &got {
        if let Some(prev) = bodies.insert(r.webhook_id().to_owned(), r.body.clone()) {
            assert_eq!(prev, r.body, "a repeated webhook-id carries the same body");
        }
    }
    let mut taken_over = 0;
    for job_id in &jobs {
        // First accepted arrival of each webhook-id, in arrival order.
        let mut seen = std::collections::HashSet::new();
        let accepted: Vec<&Received> = got
            .iter()
            .filter(|r| r.ok() && r.payload().job_id == *job_id)
            .filter(|r| seen.insert(r.webhook_id().to_owned()))
            .collect();
        let events: Vec<Event> = accepted.iter().map(|r| r.payload().event).collect();
        assert_eq!(
            events.first(),
            Some(&Event::Started),
            "{job_id}: {events:?}"
        );
        assert_eq!(
            events.iter().filter(|e| **e == Event::Started).count(),
            1,
            "{job_id} started once: {events:?}"
        );
        assert_eq!(
            events.iter().filter(|e| e.is_terminal()).count(),
            1,
            "{job_id}: one terminal event: {events:?}"
        );
        assert!(
            events.last().unwrap().is_terminal(),
            "{job_id}: terminal last"
        );
        let seqs: Vec<u64> = accepted
            .iter()
            .map(|r| r.payload().sequence.unwrap())
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{job_id}: in order: {seqs:?}"
        );
        for missing in (1..*seqs.last().unwrap()).filter(|s| !seqs.contains(s)) {
            let row = ledger
                .iter()
                .find(|d| d["job_id"] == *job_id && d["sequence"] == missing)
                .unwrap_or_else(|| panic!("{job_id}: no delivery for sequence {missing}"));
            assert_eq!(row["event"], "job.progress", "{job_id}: a gap at {missing}");
            assert_eq!(row["status"], "superseded", "{job_id}: a gap at {missing}");
        }
        let last = accepted.last().unwrap().payload();
        if last.event == Event::Failed {
            assert_eq!(
                last.error
                    .as_deref()
                    .unwrap_or_default()
                    .split(" while ")
                    .next(),
                Some("Job interrupted: the worker running it stopped"),
                "{job_id}"
            );
            taken_over += 1;
        }
    }
    let errors: Vec<_> = got
        .iter()
        .filter(|r| r.ok() && r.payload().event == Event::Failed)
        .map(|r| r.payload().error.clone())
        .collect();
    assert!(
        taken_over > 0,
        "the killed worker was running jobs: {errors:?}"
    );
    for w in workers {
        w.kill().await;
    }
}

on_both_stores!(
    a_terminal_delivery_pending_at_sigkill_arrives_exactly_once_after_restart,
    a_job_killed_mid_pipeline_gets_exactly_one_failed_event_after_restart,
);
