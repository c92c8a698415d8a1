//! `GET /ws`: the browser's live feed of its own jobs.
//!
//! The handler checks everything before upgrading (Origin 403, parameters
//! 400, a request that is not a WebSocket upgrade 400, then the ticket or
//! bearer token 401, the per-user cap 429), so refusals are
//! plain HTTP answers in the service's error shape. The connection then runs
//! [`run_socket`], a single task written over `Sink + Stream` so that tests
//! can drive it with channels.
//!
//! Ordering without gaps or repeats is the socket's own invariant: it keeps
//! the id of the last event it passed (`cursor`), skips anything at or below
//! it, and when the hub hands it an event further ahead than `cursor + 1` it
//! first reads the missing ones from the event log. The hub may therefore be
//! ahead, behind or lossy (a dropped NOTIFY) without a socket ever noticing.

use std::future::Future;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade, close_code};
use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::HeaderMap;
use axum::http::header::ORIGIN;
use axum::response::Response;
use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _};
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{self, hash_secret};
use crate::error::Error;
use crate::hub::{HubEvent, Subscription};
use crate::store::{self, EventRow};

/// Events read per query while replaying or filling a gap.
const PAGE: i64 = 500;
/// How long a closing handshake may take on a stuck connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Socket buffer sizes: tungstenite's defaults (128 KiB read buffer,
/// allocated eagerly) would cost far more per idle socket than the sockets
/// themselves. Our frames are small and only flow server → client; a client
/// sends pongs and closes, tiny frames, and tungstenite grows the read buffer
/// for a larger one (up to `MAX_MESSAGE`). Measured with 10,000 idle sockets
/// (bench `ws_idle`): 4 KiB read buffers cost ~10 KiB per connection in all,
/// 2 KiB ~8 KiB.
const READ_BUFFER: usize = 2 * 1024;
const WRITE_BUFFER: usize = 4 * 1024;
const MAX_WRITE_BUFFER: usize = 1024 * 1024;
const MAX_MESSAGE: usize = 16 * 1024;

/// Where a socket starts and what it receives.
#[derive(Debug, Clone, Copy)]
pub struct SocketParams {
    /// The owner; events of other users never reach this socket.
    pub user: Uuid,
    /// `?job=`: only this job's events.
    pub job: Option<Uuid>,
    /// `?since=`: replay events after this id first.
    pub since: Option<i64>,
    /// The user's latest event id when the socket subscribed: where a
    /// socket without `since` starts.
    pub start: i64,
    /// Ping period.
    pub ping: Duration,
    /// Silence after which the connection is closed.
    pub idle_timeout: Duration,
}

/// Read access to the event log, so tests can substitute one.
pub trait EventLog: Send + Sync {
    /// A user's events after `after`, ascending, at most `limit`.
    fn after(
        &self,
        user: Uuid,
        after: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<EventRow>, sqlx::Error>> + Send;
}

impl EventLog for PgPool {
    async fn after(
        &self,
        user: Uuid,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>, sqlx::Error> {
        store::events_after(self, user, after, limit).await
    }
}

/// Why a socket loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client closed or the connection broke.
    ClientGone,
    /// The client read too slowly; closed with 1013.
    TooSlow,
    /// The server is stopping; closed with 1001.
    Shutdown,
    /// No answer to pings; closed with 1001.
    IdleTimeout,
    /// The event log could not be read; closed with 1011.
    LogUnavailable,
}

/// The handler: checks, then upgrades.
#[utoipa::path(
    get,
    path = "/ws",
    tag = "live",
    operation_id = "ws",
    summary = "The caller's live feed of job events (WebSocket)",
    description = crate::openapi::WS_DESCRIPTION,
    params(crate::openapi::WsQuery),
    security((), ("bearer" = [])),
    responses(crate::openapi::WsAnswers),
)]
pub async fn handler(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Result<Response, Error> {
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let allowed = crate::config::normalise_origin(origin)
            .is_some_and(|o| state.allowed_origins.contains(&o));
        if !allowed {
            return Err(Error::Forbidden(format!(
                "origin {origin:?} may not open this WebSocket"
            )));
        }
    }
    let mut ticket = None;
    let mut since = None;
    let mut job = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "ticket" => ticket = Some(value.into_owned()),
            "since" => {
                since = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|v| *v >= 0)
                        .ok_or_else(|| Error::BadRequest {
                            code: "invalid_since",
                            message: "since must be an event id (a non-negative integer)".into(),
                        })?,
                )
            }
            "job" => {
                job = Some(Uuid::parse_str(&value).map_err(|_| Error::BadRequest {
                    code: "invalid_job",
                    message: "job must be a job id".into(),
                })?)
            }
            _ => {}
        }
    }
    let (mut parts, _body) = request.into_parts();
    // Before any credential is looked at: redeeming a ticket uses it up, so a
    // request that cannot become a WebSocket must not reach that step.
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &state)
        .await
        .map_err(|e| Error::BadRequest {
            code: "not_a_websocket",
            message: e.to_string(),
        })?;
    let user = match ticket {
        Some(t) => store::redeem_ticket(&state.pool, &hash_secret(&t))
            .await?
            .ok_or(Error::Unauthorized(
                "the ticket is unknown, used or expired",
            ))?,
        None => {
            let token = auth::bearer(&parts).ok_or(Error::Unauthorized(
                "a ?ticket= or an Authorization: Bearer header is required",
            ))?;
            store::user_for_token(&state.pool, &hash_secret(token))
                .await?
                .ok_or(Error::Unauthorized("the token is not valid"))?
        }
    };
    let start = store::last_event_id(&state.pool, user).await?;
    let sub = state
        .hub
        .subscribe(user, start)
        .map_err(|e| Error::TooManyConnections(e.0))?;
    let tuning = &state.config.tuning;
    let params = SocketParams {
        user,
        job,
        since,
        start,
        ping: tuning.ws_ping,
        idle_timeout: tuning.ws_idle_timeout,
    };
    let pool = state.pool.clone();
    let shutdown = state.shutdown.clone();
    Ok(upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| async move {
            let end = run_socket(socket, sub, pool, params, shutdown).await;
            tracing::debug!(user = %params.user, ?end, "WebSocket closed");
        }))
}

/// Sends one frame unless the hub declares the socket too slow meanwhile.
async fn send<S>(socket: &mut S, msg: Message, lagged: &CancellationToken) -> Result<(), End>
where
    S: Sink<Message> + Unpin,
{
    tokio::select! {
        biased;
        _ = lagged.cancelled() => Err(End::TooSlow),
        r = socket.send(msg) => r.map_err(|_| End::ClientGone),
    }
}

/// Sends the log's events after `cursor` and below `until`, advancing it.
async fn catch_up<S, L>(
    socket: &mut S,
    log: &L,
    p: &SocketParams,
    cursor: &mut i64,
    until: i64,
    lagged: &CancellationToken,
) -> Result<(), End>
where
    S: Sink<Message> + Unpin,
    L: EventLog,
{
    loop {
        let rows = log.after(p.user, *cursor, PAGE).await.map_err(|e| {
            tracing::warn!(error = %e, "WebSocket could not read the event log");
            End::LogUnavailable
        })?;
        let n = rows.len() as i64;
        for row in rows {
            if row.event_id >= until {
                return Ok(());
            }
            *cursor = row.event_id;
            if p.job.is_none_or(|j| j == row.job_id) {
                let text = crate::jobs::fit_frame_text(row.message);
                send(socket, Message::Text(text.into()), lagged).await?;
            }
        }
        if n < PAGE {
            return Ok(());
        }
    }
}

/// Delivers one hub event in order: skip what was sent, fill a gap first.
async fn deliver<S, L>(
    socket: &mut S,
    log: &L,
    p: &SocketParams,
    cursor: &mut i64,
    event: &HubEvent,
    lagged: &CancellationToken,
) -> Result<(), End>
where
    S: Sink<Message> + Unpin,
    L: EventLog,
{
    if event.event_id <= *cursor {
        return Ok(());
    }
    if event.event_id > *cursor + 1 {
        catch_up(socket, log, p, cursor, event.event_id, lagged).await?;
    }
    *cursor = event.event_id;
    if p.job.is_none_or(|j| j == event.job_id) {
        send(socket, Message::Text(event.text.clone()), lagged).await?;
    }
    Ok(())
}

/// The life of one connection: replay, then live events, pings, and a close
/// frame saying why it ended.
pub async fn run_socket<S, E, L>(
    mut socket: S,
    mut sub: Subscription,
    log: L,
    p: SocketParams,
    shutdown: CancellationToken,
) -> End
where
    S: Sink<Message> + Stream<Item = Result<Message, E>> + Unpin,
    L: EventLog,
{
    let lagged = sub.lagged.clone();
    let mut cursor = p.since.unwrap_or(p.start);
    let mut end = if p.since.is_some() {
        catch_up(&mut socket, &log, &p, &mut cursor, i64::MAX, &lagged)
            .await
            .err()
    } else {
        None
    };
    let mut last_heard = Instant::now();
    let mut ping = tokio::time::interval_at(Instant::now() + p.ping, p.ping);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while end.is_none() {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => end = Some(End::Shutdown),
            _ = lagged.cancelled() => end = Some(End::TooSlow),
            event = sub.rx.recv() => match event {
                Some(event) => {
                    end = deliver(&mut socket, &log, &p, &mut cursor, &event, &lagged).await.err();
                }
                // The hub dropped us: only ever because we lagged.
                None => end = Some(End::TooSlow),
            },
            frame = socket.next() => match frame {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => end = Some(End::ClientGone),
                // Any frame, pongs included, shows the client is alive.
                Some(Ok(_)) => last_heard = Instant::now(),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() >= p.idle_timeout {
                    end = Some(End::IdleTimeout);
                } else {
                    end = send(&mut socket, Message::Ping(Default::default()), &lagged).await.err();
                }
            }
        }
    }
    let end = end.unwrap_or(End::ClientGone);
    // Leave the hub before the (possibly slow) closing handshake.
    drop(sub);
    let frame = match end {
        End::ClientGone => None,
        End::TooSlow => Some((close_code::AGAIN, "too slow; reconnect with since")),
        End::Shutdown => Some((close_code::AWAY, "server shutting down")),
        End::IdleTimeout => Some((close_code::AWAY, "no answer to ping")),
        End::LogUnavailable => Some((close_code::ERROR, "event log unavailable")),
    };
    if let Some((code, reason)) = frame {
        let close = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(close)).await;
    }
    end
}
