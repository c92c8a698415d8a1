//! The sub-commands: `serve`, `migrate`, `users create`, `watch`,
//! `healthcheck`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use service::telemetry::{COMMAND_LOG_FILTER, SERVICE_LOG_FILTER};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use url::Url;

use crate::config::{Cli, Command, DbArgs, UsersCommand, WatchArgs};
use crate::messages::ServerMessage;
use crate::startup::{Application, MIGRATOR, connect};
use crate::store;

/// Sets up logging (see [`service::init_tracing`]): `info` for the service
/// and `migrate`, `warn` for one-shot commands, overridable with `RUST_LOG`;
/// JSON lines with `LOG_FORMAT=json`.
pub fn init_tracing(command: &Command) {
    service::init_tracing(match command {
        Command::Serve(_) | Command::Migrate(_) => SERVICE_LOG_FILTER,
        _ => COMMAND_LOG_FILTER,
    });
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let config = args.into_config()?;
            let app = Application::build(config).await?;
            app.run_until_stopped(service::cancel_on_shutdown_signal())
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(db) => {
            let pool = pool(&db).await?;
            MIGRATOR
                .run(&pool)
                .await
                .context("failed to apply migrations")?;
            tracing::info!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Users {
            command: UsersCommand::Create(args),
        } => {
            let pool = pool(&args.db).await?;
            // Migrations are idempotent; applying them here lets a fresh
            // database get its first user before the service ever ran.
            MIGRATOR
                .run(&pool)
                .await
                .context("failed to apply migrations")?;
            let (user_id, token) = store::create_user(&pool, &args.email, args.name.as_deref())
                .await
                .context("failed to create the user (is the e-mail already taken?)")?;
            /// The contract's line, fields in the contract's order.
            #[derive(serde::Serialize)]
            struct Created {
                user_id: uuid::Uuid,
                token: String,
            }
            println!("{}", serde_json::to_string(&Created { user_id, token })?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch(args) => watch(args).await,
        Command::Healthcheck(args) => {
            service::healthcheck(args.url.as_str()).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A small pool for a one-shot command.
async fn pool(db: &DbArgs) -> anyhow::Result<sqlx::PgPool> {
    connect(&db.database_url, 2).await
}

/// `http(s)` and `ws(s)` forms of the base URL.
fn bases(url: &Url) -> anyhow::Result<(Url, Url)> {
    let (http, ws) = match url.scheme() {
        "http" | "ws" => ("http", "ws"),
        "https" | "wss" => ("https", "wss"),
        other => bail!("--url: unsupported scheme {other}"),
    };
    let with = |scheme: &str| -> anyhow::Result<Url> {
        let mut u = url.clone();
        u.set_scheme(scheme)
            .map_err(|()| anyhow::anyhow!("--url: cannot use scheme {scheme}"))?;
        if !u.path().ends_with('/') {
            let p = format!("{}/", u.path());
            u.set_path(&p);
        }
        Ok(u)
    };
    Ok((with(http)?, with(ws)?))
}

/// Follows one job until it completes (exit 0) or fails (exit 1),
/// reconnecting with `since` if the connection drops.
async fn watch(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let (http_base, ws_base) = bases(&args.url)?;
    let bearer = format!("Bearer {}", args.token.expose());
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("{bar:40.cyan/blue} {pos:>3}% {msg}")
            .context("bad progress template")?,
    );
    let mut since: Option<i64> = None;
    let mut failures = 0;
    let mut checked = false;
    loop {
        let mut url = ws_base.join("ws").context("bad --url")?;
        url.query_pairs_mut()
            .append_pair("job", &args.job_id.to_string());
        if let Some(s) = since {
            url.query_pairs_mut().append_pair("since", &s.to_string());
        }
        let mut request = url.as_str().into_client_request()?;
        request
            .headers_mut()
            .insert("authorization", bearer.parse().context("bad token")?);
        let mut socket = match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => socket,
            Err(e) => {
                failures += 1;
                if failures > 5 {
                    return Err(e).context("failed to connect to the WebSocket");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        failures = 0;
        if !checked {
            // Subscribed first, then read the job: nothing can slip between.
            checked = true;
            let job = read_job(&http_base, args.job_id, &bearer).await?;
            let job = &job["job"];
            bar.set_position(job["progressPercent"].as_f64().unwrap_or(0.0) as u64);
            bar.set_message(job["currentStep"].as_str().unwrap_or("waiting").to_owned());
            if matches!(job["status"].as_str(), Some("completed" | "failed")) {
                return Ok(summarize(&bar, job));
            }
        }
        while let Some(frame) = socket.next().await {
            let Ok(Message::Text(text)) = frame else {
                if frame.is_err() {
                    break;
                }
                continue;
            };
            // A message of a kind this version does not know is skipped.
            let Ok(event) = serde_json::from_str::<ServerMessage>(&text) else {
                continue;
            };
            since = Some(event.event_id());
            let (progress, step) = match &event {
                ServerMessage::Started(m) => (m.progress_percent, &m.current_step),
                ServerMessage::Progress(m) => (m.progress_percent, &m.current_step),
                // The job as stored has everything a summary needs, clips
                // included (a big completion's frame omits them).
                ServerMessage::Completed(_) | ServerMessage::Failed(_) => {
                    let job = read_job(&http_base, args.job_id, &bearer).await?;
                    return Ok(summarize(&bar, &job["job"]));
                }
            };
            bar.set_position(progress.get() as u64);
            if let Some(step) = step {
                bar.set_message(step.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Ends `watch` on a finished job, the same way whether the job finished
/// before or during the watch and whether or not this is a terminal: the
/// bar is cleared, one summary line goes to standard error, and the clip
/// URLs to standard output, one a line (so `watch … > clips.txt` works).
fn summarize(bar: &ProgressBar, job: &Value) -> ExitCode {
    bar.finish_and_clear();
    if job["status"] == "completed" {
        let clips = job["clips"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let title = job["sourceVideoTitle"].as_str().unwrap_or("the video");
        eprintln!("completed: {} clips from {title}", clips.len());
        for clip in clips {
            println!("{}", clip["url"].as_str().unwrap_or_default());
        }
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "failed: {}",
            job["error"].as_str().unwrap_or("no error was recorded")
        );
        ExitCode::from(1)
    }
}

/// `GET /api/clipping-jobs/{id}`: the job, with its clips.
async fn read_job(
    http_base: &Url,
    job_id: impl std::fmt::Display,
    bearer: &str,
) -> anyhow::Result<Value> {
    reqwest::Client::new()
        .get(
            http_base
                .join(&format!("api/clipping-jobs/{job_id}"))
                .context("bad --url")?,
        )
        .header("authorization", bearer)
        .send()
        .await
        .context("failed to read the job")?
        .error_for_status()
        .context("failed to read the job")?
        .json()
        .await
        .context("failed to read the job")
}
