//! Benchmark of idle WebSocket memory in `viewcreator-api`.
//!
//! Starts the real `viewcreator-api` binary (built beside this one: `cargo
//! build --release -p api -p bench`) on a fresh database, reads its resident
//! memory from `/proc/PID/status` once it is ready, opens N authenticated,
//! idle WebSockets (default 10,000, spread over several users because of the
//! per-user cap, and over several 127.0.0.x source addresses), reads the
//! resident memory again and reports the difference per connection.
//!
//! Both processes get their open-file soft limit raised to the hard limit
//! (`prlimit`), since 10,000 sockets need 10,000 descriptors on each side.
//!
//! Run: `cargo run --release -p bench --bin ws_idle -- [--connections 10000]`

use std::process::Stdio;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use sqlx::ConnectOptions as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// Command line.
#[derive(Debug, Parser)]
struct Args {
    /// Idle connections to open.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Source addresses 127.0.0.2 … 127.0.0.(1+N) the clients bind to.
    #[arg(long, default_value_t = 4)]
    sources: u8,
    /// Connections per user (the service allows 32 per user).
    #[arg(long, default_value_t = 30)]
    per_user: usize,
    /// The `viewcreator-api` binary; default: beside this executable.
    #[arg(long)]
    binary: Option<std::path::PathBuf>,
    /// PostgreSQL (an admin URL: a fresh database is created and dropped).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("bad VmRSS")?
        .parse()?)
}

/// The hard open-file limit of this process.
fn hard_nofile() -> anyhow::Result<String> {
    let out = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            "--nofile",
            "--raw",
            "--noheadings",
            "--output",
            "HARD",
        ])
        .output()
        .context("failed to run prlimit")?;
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let hard = hard_nofile()?;
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={hard}:{hard}"),
        ])
        .status()?;
    if !status.success() {
        bail!("could not raise the open-file limit");
    }

    let binary = match args.binary {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .context("no parent dir")?
            .join("viewcreator-api"),
    };
    if !binary.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p api`",
            binary.display()
        );
    }

    // A fresh database with enough users.
    let admin = PgConnectOptions::from_str(&args.database_url)?;
    let name = format!("bench_ws_{}", std::process::id());
    let mut conn = admin.connect().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let options = admin.clone().database(&name);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.clone())
        .await?;
    api::startup::MIGRATOR.run(&pool).await?;
    let users = args.connections.div_ceil(args.per_user);
    let mut tokens = Vec::with_capacity(users);
    for i in 0..users {
        let (_, token) = api::store::create_user(&pool, &format!("idle-{i}@bench"), None).await?;
        tokens.push(token);
    }
    let db_url = options.to_url_lossy().to_string();

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = tokio::process::Command::new("prlimit")
        .arg(format!("--nofile={hard}:{hard}"))
        .arg("--")
        .arg(&binary)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--insecure-accept-unsigned",
            "--worker-url",
            "http://127.0.0.1:9",
        ])
        .env("DATABASE_URL", &db_url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("failed to start viewcreator-api")?;
    // prlimit execs the command, so this is the API's own pid.
    let pid = child.id().context("no pid")?;

    let client = reqwest::Client::new();
    let ready = Instant::now();
    loop {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            break;
        }
        if ready.elapsed() > Duration::from_secs(30) {
            bail!("viewcreator-api did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(pid)?;

    let server: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(args.connections);
    let mut pending = tokio::task::JoinSet::new();
    let mut next = 0usize;
    while sockets.len() < args.connections {
        while pending.len() < 256 && next < args.connections {
            let i = next;
            next += 1;
            let token = tokens[i / args.per_user].clone();
            let source = std::net::Ipv4Addr::new(127, 0, 0, 2 + (i % args.sources as usize) as u8);
            pending.spawn(async move {
                let socket = TcpSocket::new_v4()?;
                socket.bind((source, 0).into())?;
                let stream = socket.connect(server).await?;
                let mut req = format!("ws://{server}/ws").into_client_request()?;
                req.headers_mut()
                    .insert("authorization", format!("Bearer {token}").parse()?);
                let (ws, _) = tokio_tungstenite::client_async(req, stream).await?;
                anyhow::Ok(ws)
            });
        }
        match pending.join_next().await {
            Some(r) => sockets.push(r?.context("a connection failed")?),
            None => break,
        }
    }
    let connect_time = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(pid)?;
    let per = (after.saturating_sub(before)) as f64 / sockets.len() as f64;
    println!(
        "{} idle WebSockets ({} users, {} source addresses) opened in {:.1} s",
        sockets.len(),
        users,
        args.sources,
        connect_time.as_secs_f64()
    );
    println!("viewcreator-api RSS before: {before} KiB, after: {after} KiB");
    println!("resident memory per connection: {per:.2} KiB");

    drop(sockets);
    child.kill().await?;
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    Ok(())
}
