//! PostgreSQL going away under webhook load: the receiver answers 503 (with
//! `Retry-After`) at once rather than after connection timeouts, `/readyz`
//! answers within a second, and deliveries are applied again as soon as the
//! database is back.
//!
//! These tests own a throwaway cluster (the system's `initdb` and `pg_ctl`,
//! on a free loopback port), since stopping the shared server is not theirs
//! to do.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::postgres::PgPoolOptions;

use crate::helpers::*;

/// A PostgreSQL cluster of one test's own, removed when dropped.
struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// Root cannot run the server: it then runs as the `postgres` user.
    as_postgres: bool,
}

impl Cluster {
    fn start() -> Cluster {
        let bin = pg_bin().expect("the outage tests need PostgreSQL's initdb and pg_ctl");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("api-outage-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if as_postgres {
            run(Command::new("chown").arg("postgres").arg(&dir));
        }
        let cluster = Cluster {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = cluster.dir.join("data");
        run(cluster.command("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]));
        cluster.start_server();
        cluster
    }

    /// `bin/name`, as the server's owner.
    fn command(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-o", &options, "start"]));
    }

    /// Stops the server at once, as a crash or a failover would.
    fn stop_server(&self) {
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"]));
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(c: &mut Command) {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where `initdb` and `pg_ctl` are: on the PATH, or Debian's versioned
/// directory.
fn pg_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    });
    on_path.or_else(|| {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|d| Path::new(d).join("initdb").is_file())
            .collect();
        dirs.sort();
        dirs.pop()
    })
}

/// The status, `Retry-After` and time taken of one request.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    took: Duration,
}

async fn timed(request: impl std::future::Future<Output = reqwest::Response>) -> Answer {
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(15), request)
        .await
        .expect("no answer within 15 s");
    Answer {
        status: r.status().as_u16(),
        retry_after: r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned()),
        took: started.elapsed(),
    }
}

async fn readyz(app: &TestApp) -> Answer {
    timed(app.get("/readyz")).await
}

/// `n` signed progress webhooks for `job` at once, sequences from `first`.
async fn webhook_burst(app: &TestApp, job: uuid::Uuid, first: u64, n: u64) -> Vec<Answer> {
    let requests = (first..first + n).map(|seq| {
        let body = serde_json::to_vec(&progress(job, seq, 50.0, "Transcribing")).unwrap();
        async move { timed(app.post_webhook_bytes(&signing::new_message_id(), body)).await }
    });
    futures_util::future::join_all(requests).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgres_is_down_webhooks_get_503_at_once_and_readyz_answers_quickly() {
    let cluster = Cluster::start();
    let pool = PgPoolOptions::new()
        .max_connections(32)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&cluster.url())
        .await
        .unwrap();
    api::startup::MIGRATOR.run(&pool).await.unwrap();
    let app = TestApp::spawn(pool).await;
    let (_, token) = app.create_user("a@example.com").await;
    let job = app.create_job(&token).await;
    app.deliver(&started(job)).await;
    // Warm the pool: several connections open, as under load.
    for a in webhook_burst(&app, job, 2, 24).await {
        assert_eq!(a.status, 200);
    }

    // Two waves: the first meets the broken connections and the refused
    // new ones; the second finds the database known to be down.
    cluster.stop_server();
    for (wave, first) in [(1, 100), (2, 200)] {
        let answers = webhook_burst(&app, job, first, 24).await;
        for a in &answers {
            assert_eq!(a.status, 503, "wave {wave}");
            assert_eq!(a.retry_after.as_deref(), Some("5"), "wave {wave}");
            assert!(
                a.took < Duration::from_secs(3),
                "wave {wave}: a 503 after {:?}",
                a.took
            );
        }
        let slowest = answers.iter().map(|a| a.took).max().unwrap();
        eprintln!("wave {wave}: 24 webhooks answered 503, slowest after {slowest:?}");
        let ready = readyz(&app).await;
        assert_eq!(ready.status, 503);
        assert!(
            ready.took < Duration::from_secs(1),
            "/readyz took {:?}",
            ready.took
        );
    }

    // Back: the next delivery after the short down period probes, finds it,
    // and everything is applied again.
    cluster.start_server();
    let back = Instant::now();
    let mut seq = 300;
    loop {
        let a = webhook_burst(&app, job, seq, 1).await.remove(0);
        if a.status == 200 {
            break;
        }
        assert_eq!(a.status, 503);
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "still 503 after 10 s"
        );
        seq += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "applied again {:?} after the server was back",
        back.elapsed()
    );
    let ready = readyz(&app).await;
    assert_eq!(ready.status, 200);
    let job: Value = app.job_json(&token, job).await;
    assert_eq!(job["status"], "processing");

    // Down again, and `/readyz` is the first to find out: it still answers
    // within a second.
    cluster.stop_server();
    let ready = readyz(&app).await;
    assert_eq!(ready.status, 503);
    assert!(
        ready.took < Duration::from_secs(1),
        "/readyz took {:?}",
        ready.took
    );
    eprintln!("/readyz found the database gone in {:?}", ready.took);
}
