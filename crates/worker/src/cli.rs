//! The sub-commands other than the service itself: `submit`, `listen` and
//! `webhooks list|redeliver`, plus `serve`'s wiring of the shutdown signal.
//! (`healthcheck` is the shared one, [`service::healthcheck`].)

use std::io::Write as _;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use service::shutdown_signal;
use signing::Verifier;
use webhook_types::ClippingJobRequest;

use crate::config::{ListArgs, ListenArgs, MigrateArgs, RedeliverArgs, ServeConfig, SubmitArgs};
use crate::http::DeliveryView;
use crate::startup::Application;
use crate::store::{DeliveryFilter, Store};

/// `clipping-worker serve`: runs until Ctrl-C or SIGTERM.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    app.run_until_stopped(service::cancel_on_shutdown_signal())
        .await
}

/// `clipping-worker submit`: posts a job and prints the answer.
pub async fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let mut request = ClippingJobRequest::new(args.video_url);
    request.callback_url = args.callback_url;
    request.external_job_id = args.external_job_id;
    request.owner_user_id = args.owner_user_id;
    if let Some(n) = args.max_clips {
        request.max_clips = n;
    }
    let url = format!("{}/ai-clipping/jobs", args.worker_url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .build()
        .context("failed to build the HTTP client")?;
    let mut call = client.post(&url).json(&request);
    if let Some(token) = &args.api_token {
        call = call.bearer_auth(token.expose());
    }
    let response = call
        .send()
        .await
        .with_context(|| format!("failed to reach the worker at {url}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .context("failed to read the worker's answer")?;
    println!("{body}");
    if !status.is_success() {
        anyhow::bail!("the worker answered {status}");
    }
    Ok(())
}

/// `clipping-worker listen`: a verifying webhook receiver that prints each
/// delivery as one JSON line.
pub async fn listen(args: ListenArgs) -> anyhow::Result<()> {
    let verifier = std::sync::Arc::new(Verifier::new(args.secret));
    let app = axum::Router::new().fallback(axum::routing::post(
        move |headers: HeaderMap, body: Bytes| {
            let verifier = verifier.clone();
            async move { receive(&verifier, &headers, &body) }
        },
    ));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("failed to listen on {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "listening for webhooks");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the receiver stopped with an error")
}

fn receive(verifier: &Verifier, headers: &HeaderMap, body: &[u8]) -> axum::response::Response {
    let webhook_id = headers
        .get(signing::HEADER_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let now = chrono::Utc::now().timestamp();
    if let Err(e) = verifier.verify_with(|name| headers.get(name)?.to_str().ok(), body, now) {
        tracing::warn!(%webhook_id, error = %e, "refused a delivery with a bad signature");
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(webhook_types::ErrorBody::new(
                "bad_signature",
                e.to_string(),
                None,
            )),
        )
            .into_response();
    }
    let payload: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()));
    let event = headers
        .get("x-webhook-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let line = serde_json::json!({
        "webhook_id": webhook_id,
        "event": event,
        "verified": true,
        "payload": payload,
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({ "received": true })),
    )
        .into_response()
}

/// `clipping-worker webhooks list`.
pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    match print_list(args).await {
        // `webhooks list | head` closes the pipe early: not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// `clipping-worker migrate`.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    Store::migrate(&args.store.store, &args.store.data_dir).await?;
    println!("the worker store {} is up to date", args.store.store);
    Ok(())
}

async fn print_list(args: ListArgs) -> anyhow::Result<()> {
    let store = Store::open_existing(&args.store.store, &args.store.data_dir).await?;
    let rows = store
        .list_deliveries(&DeliveryFilter {
            status: args.status,
            job_id: args.job,
            limit: None,
        })
        .await
        .context("failed to read the delivery ledger")?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for row in rows {
            let attempts = store.attempts(&row.delivery_id).await?;
            writeln!(
                out,
                "{}",
                serde_json::to_string(&DeliveryView::new(row, attempts))?
            )?;
        }
    } else {
        writeln!(
            out,
            "{:<32} {:<36} {:>4} {:<14} {:<10} {:>8}  LAST ERROR",
            "DELIVERY", "JOB", "SEQ", "EVENT", "STATUS", "ATTEMPTS"
        )?;
        for r in rows {
            writeln!(
                out,
                "{:<32} {:<36} {:>4} {:<14} {:<10} {:>8}  {}",
                r.delivery_id,
                r.job_id,
                r.sequence,
                r.event.as_str(),
                r.status.as_str(),
                r.attempt_count,
                r.last_error.unwrap_or_default()
            )?;
        }
    }
    store.close().await;
    Ok(())
}

/// `clipping-worker webhooks redeliver`.
pub async fn redeliver(args: RedeliverArgs) -> anyhow::Result<()> {
    let store = Store::open_existing(&args.store.store, &args.store.data_dir).await?;
    let row = store
        .requeue_delivery(&args.delivery_id, true)
        .await
        .context("failed to queue the delivery again")?;
    store.close().await;
    match row {
        Some(row) => {
            println!(
                "{}",
                serde_json::json!({ "delivery_id": row.delivery_id, "status": "pending" })
            );
            Ok(())
        }
        None => match args.store.store.sqlite_file(&args.store.data_dir) {
            Some(file) => anyhow::bail!("no delivery {} in {}", args.delivery_id, file.display()),
            None => anyhow::bail!("no delivery {} in {}", args.delivery_id, args.store.store),
        },
    }
}
