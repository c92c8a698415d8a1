//! The `viewcreator-api` binary as a user meets it when something is wrong:
//! a busy port, a database that is not there. One `error: …` line each,
//! naming what to look at, and no backtrace.

use std::process::Output;
use std::time::{Duration, Instant};

use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_viewcreator-api");

/// Variables that would change the configuration behind the test's back.
const ENV: [&str; 6] = [
    "API_LISTEN",
    "DATABASE_URL",
    "WEBHOOK_SECRET",
    "API_INSECURE_ACCEPT_UNSIGNED",
    "LOG_FORMAT",
    "RUST_LOG",
];

async fn run(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).kill_on_drop(true).env("RUST_BACKTRACE", "1");
    for var in ENV {
        cmd.env_remove(var);
    }
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the command ends")
        .expect("the binary runs")
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The message of a failed command's one `error: …` line.
fn error_line(out: &Output) -> String {
    service::report::failure_message(out).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn migrate_against_a_refused_port_fails_at_once_naming_the_server() {
    let port = closed_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/clips_db");
    let began = Instant::now();
    let out = run(&["migrate", "--database-url", &url]).await;
    let elapsed = began.elapsed();
    let text = error_line(&out);
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("clips_db"), "{text}");
    assert!(text.contains("connection refused"), "{text}");
    assert!(!text.contains("timed out"), "{text}");
    // The pool's own retries used to take 10 s before saying "timed out".
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

#[tokio::test]
async fn a_missing_database_is_named_once_with_what_to_try() {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the API's tests");
    let mut url = url::Url::parse(&base).unwrap();
    let name = format!("missing_{}", uuid::Uuid::new_v4().simple());
    url.set_path(&name);
    let out = run(&["migrate", "--database-url", url.as_str()]).await;
    let text = error_line(&out);
    assert_eq!(text.matches("does not exist").count(), 1, "{text}");
    assert!(text.contains(&name), "{text}");
    assert!(text.contains("createdb"), "{text}");
}

#[tokio::test]
async fn a_busy_port_fails_before_the_database_is_touched() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    // A database that cannot be reached: were it tried first, the error
    // would be about it, not about the port.
    let db = format!("postgres://postgres@127.0.0.1:{}/postgres", closed_port());
    let out = run(&[
        "serve",
        "--listen",
        &addr,
        "--database-url",
        &db,
        "--insecure-accept-unsigned",
    ])
    .await;
    let text = error_line(&out);
    assert!(
        text.contains(&format!("failed to listen on {addr}")),
        "{text}"
    );
    assert!(!text.contains("PostgreSQL"), "{text}");
}

#[sqlx::test(migrations = "../../migrations/api")]
async fn a_stopped_service_has_stopped_its_commit_lanes(pool: sqlx::PgPool) {
    let config = crate::helpers::test_config("http://127.0.0.1:9");
    assert!(config.tuning.commit_lanes > 0 && config.tuning.commit_batch > 1);
    let app = api::Application::build_with_pool(config, pool)
        .await
        .unwrap();
    let state = app.state().clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(stop.clone()));
    stop.cancel();
    running.await.unwrap().unwrap();
    // Once run_until_stopped has returned, no lane is left to take a
    // delivery, although this state still holds the lanes' senders.
    let body = crate::helpers::started(uuid::Uuid::new_v4()).to_string();
    let payload = webhook_types::parse_json(body.as_bytes()).unwrap();
    let applied = state
        .committer
        .apply(Some("msg_after_stop".into()), payload)
        .await;
    assert!(applied.is_err(), "a lane still ran: {applied:?}");
}
