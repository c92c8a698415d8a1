//! `scripts/dev` as a newcomer runs it with `CARGO_TARGET_DIR` set: it finds
//! the binaries where cargo put them, starts both services and the page
//! answers; Ctrl-C stops everything it started.
//!
//! The binaries are the ones this test run already built, linked into a
//! target directory of the test's own (so the lookup is really exercised
//! away from the workspace's `target/`), and the script runs with
//! `--no-build`: building again would only repeat what `cargo test` did.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::stack::{binaries, free_port, fresh_database};

fn workspace_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn log_of(state: &Path) -> String {
    let read = |name: &str| std::fs::read_to_string(state.join(name)).unwrap_or_default();
    format!(
        "--- script ---\n{}\n--- worker ---\n{}\n--- api ---\n{}",
        read("script.log"),
        read("worker.log"),
        read("api.log")
    )
}

fn answers(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test]
async fn scripts_dev_finds_the_binaries_in_cargo_target_dir_and_serves_the_page() {
    let (worker_bin, api_bin) = binaries();
    let target = tempfile::tempdir().unwrap();
    std::fs::create_dir(target.path().join("debug")).unwrap();
    for bin in [worker_bin, api_bin] {
        std::os::unix::fs::symlink(
            bin,
            target.path().join("debug").join(bin.file_name().unwrap()),
        )
        .unwrap();
    }
    let state = tempfile::tempdir().unwrap();
    // The sample video is made once per state directory; this test does not
    // clip it, so a stand-in spares a minute of ffmpeg.
    let samples = state.path().join("worker/media/samples");
    std::fs::create_dir_all(&samples).unwrap();
    std::fs::write(samples.join("sample-talk.mp4"), b"not clipped by this test").unwrap();
    let (admin_url, database_url) = fresh_database().await;
    let (api_port, worker_port) = (free_port(), free_port());

    let mut script = Command::new("bash")
        .arg(workspace_root().join("scripts/dev"))
        .arg("--no-build")
        .env("CARGO_TARGET_DIR", target.path())
        .env("API_PORT", api_port.to_string())
        .env("WORKER_PORT", worker_port.to_string())
        .env("DATABASE_URL", &database_url)
        .env("DEV_STATE_DIR", state.path())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(state.path().join("script.log")).unwrap())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("run scripts/dev");
    let group = script.id().expect("a running script");

    // What it prints once everything is up.
    let mut lines = BufReader::new(script.stdout.take().unwrap()).lines();
    let mut info = String::new();
    let printed = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            info.push_str(&line);
            info.push('\n');
            if line.contains("Ctrl-C stops everything") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(printed, Ok(true)),
        "scripts/dev did not come up; it printed:\n{info}\n{}",
        log_of(state.path())
    );
    let bin = target.path().join("debug");
    assert!(
        info.contains(&format!("{}/viewcreator-api watch", bin.display())),
        "the watch line names the binary in CARGO_TARGET_DIR:\n{info}"
    );

    let page = reqwest::get(format!("http://127.0.0.1:{api_port}/"))
        .await
        .expect("the page answers");
    assert!(page.status().is_success(), "{}", page.status());
    assert!(page.text().await.unwrap().contains("Clipping jobs"));
    let env = std::fs::read_to_string(state.path().join("env")).expect("the env file");
    assert!(env.contains("WEBHOOK_SECRET='whsec_"), "{env}");

    // Ctrl-C stops both services.
    let status = std::process::Command::new("kill")
        .args(["-INT", "--", &format!("-{group}")])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(30), script.wait())
        .await
        .expect("scripts/dev exits after Ctrl-C")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while answers(api_port) || answers(worker_port) {
        assert!(
            Instant::now() < deadline,
            "a service outlived scripts/dev:\n{}",
            log_of(state.path())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
        let name = database_url.rsplit('/').next().unwrap_or_default();
        let _ = conn
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .await;
    }
}
