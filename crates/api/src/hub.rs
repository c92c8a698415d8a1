//! The WebSocket hub: which sockets of this instance belong to which user,
//! and the loops that feed them committed events from PostgreSQL.
//!
//! The event log (`user_events`) is the truth; NOTIFY is only a wake-up.
//! Two loops run per instance:
//!
//! - the *listener* holds a `LISTEN api_events` connection and marks the
//!   users named in each notification (one, or a whole batch's) as dirty.
//!   When its connection drops it reconnects (with backoff) and marks every
//!   user dirty, since notifications sent meanwhile are lost for good;
//! - the *fetcher* reads, for dirty users on wake-up and for every subscribed
//!   user on each poll tick (the fallback), the events after the hub's
//!   per-user cursor, and fans them out to that user's subscribers.
//!
//! Fan-out never blocks: each subscriber has a bounded queue, and one that is
//! full is dropped from the hub and told so (its socket closes with 1013).
//! Per-socket ordering, gap filling and de-duplication are the socket's job
//! (see `ws`), so a hub cursor that is ahead of or behind a socket is
//! harmless.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::{self, EventRow};

/// Most events read per query, at most: the page is also capped at the
/// per-socket queue size, so that one page can never overflow the queue of a
/// socket that keeps up; only a socket that stopped reading overflows.
const MAX_FETCH_PAGE: i64 = 500;

/// One committed notification, shared by every subscriber it goes to.
#[derive(Debug)]
pub struct HubEvent {
    /// The owner.
    pub user_id: Uuid,
    /// Per-user number, gap-free.
    pub event_id: i64,
    /// The job it is about (for `?job=`).
    pub job_id: Uuid,
    /// The frame's text, as stored, bounded by
    /// [`fit_frame_text`](crate::jobs::fit_frame_text).
    pub text: Utf8Bytes,
}

impl From<EventRow> for HubEvent {
    fn from(r: EventRow) -> Self {
        Self {
            user_id: r.user_id,
            event_id: r.event_id,
            job_id: r.job_id,
            // Bounded here, once for every socket it goes to.
            text: crate::jobs::fit_frame_text(r.message).into(),
        }
    }
}

/// A socket's registration. Dropping it leaves the hub.
#[derive(Debug)]
pub struct Subscription {
    /// Events for this socket, in fan-out order.
    pub rx: mpsc::Receiver<Arc<HubEvent>>,
    /// Cancelled by the hub when the queue overflowed: the socket is too slow.
    pub lagged: CancellationToken,
    hub: Arc<Hub>,
    user: Uuid,
    id: u64,
}

impl Subscription {
    /// A subscription that no hub feeds: events reach it only through the
    /// returned sender, exactly as sent (repeats, gaps and all). The hub
    /// never hands one socket a repeat, so this is how tests show that the
    /// socket's own ordering rules hold whatever arrives.
    pub fn detached(queue: usize) -> (Subscription, mpsc::Sender<Arc<HubEvent>>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let sub = Subscription {
            rx,
            lagged: CancellationToken::new(),
            // An empty hub of its own: leaving it on drop is a no-op.
            hub: Hub::new(1, 0),
            user: Uuid::nil(),
            id: 0,
        };
        (sub, tx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.user, self.id);
    }
}

#[derive(Debug)]
struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Arc<HubEvent>>,
    lagged: CancellationToken,
}

#[derive(Debug)]
struct UserEntry {
    /// Highest event id fanned out for this user by this hub.
    cursor: i64,
    subs: Vec<Subscriber>,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the user already holds {0} connections")]
pub struct TooMany(pub usize);

/// The registry of this instance's sockets, by user.
#[derive(Debug)]
pub struct Hub {
    users: Mutex<HashMap<Uuid, UserEntry>>,
    dirty: Mutex<Dirty>,
    wake: Notify,
    next_id: AtomicU64,
    queue: usize,
    max_per_user: usize,
}

#[derive(Debug, Default)]
struct Dirty {
    all: bool,
    users: HashSet<Uuid>,
}

impl Hub {
    /// An empty hub; `queue` events per socket, `max_per_user` sockets.
    pub fn new(queue: usize, max_per_user: usize) -> Arc<Self> {
        Arc::new(Self {
            users: Mutex::new(HashMap::new()),
            dirty: Mutex::new(Dirty::default()),
            wake: Notify::new(),
            next_id: AtomicU64::new(1),
            queue: queue.max(1),
            max_per_user,
        })
    }

    /// Registers a socket of `user`. `cursor` is the user's latest event id
    /// as the socket read it just before; it becomes the hub's cursor when this
    /// is the user's first socket here.
    pub fn subscribe(self: &Arc<Self>, user: Uuid, cursor: i64) -> Result<Subscription, TooMany> {
        let (tx, rx) = mpsc::channel(self.queue);
        let lagged = CancellationToken::new();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut users = self.users.lock().expect("hub lock poisoned");
            let entry = users.entry(user).or_insert_with(|| UserEntry {
                cursor,
                subs: Vec::new(),
            });
            if entry.subs.len() >= self.max_per_user {
                if entry.subs.is_empty() {
                    users.remove(&user);
                }
                return Err(TooMany(self.max_per_user));
            }
            entry.subs.push(Subscriber {
                id,
                tx,
                lagged: lagged.clone(),
            });
        }
        metrics::gauge!("api_ws_connections").increment(1.0);
        // Events may have committed between the socket's read and now.
        self.mark_dirty(user);
        Ok(Subscription {
            rx,
            lagged,
            hub: self.clone(),
            user,
            id,
        })
    }

    fn unsubscribe(&self, user: Uuid, id: u64) {
        let mut users = self.users.lock().expect("hub lock poisoned");
        if let Some(entry) = users.get_mut(&user) {
            let before = entry.subs.len();
            entry.subs.retain(|s| s.id != id);
            if entry.subs.len() < before {
                metrics::gauge!("api_ws_connections").decrement(1.0);
            }
            if entry.subs.is_empty() {
                users.remove(&user);
            }
        }
    }

    /// Number of sockets registered here (all users).
    pub fn connections(&self) -> usize {
        let users = self.users.lock().expect("hub lock poisoned");
        users.values().map(|e| e.subs.len()).sum()
    }

    /// Asks the fetcher to read `user`'s new events.
    pub fn mark_dirty(&self, user: Uuid) {
        self.dirty
            .lock()
            .expect("hub lock poisoned")
            .users
            .insert(user);
        self.wake.notify_one();
    }

    /// Asks the fetcher to read these users' new events.
    pub fn mark_many_dirty(&self, users: impl IntoIterator<Item = Uuid>) {
        self.dirty
            .lock()
            .expect("hub lock poisoned")
            .users
            .extend(users);
        self.wake.notify_one();
    }

    /// Asks the fetcher to read every subscribed user's new events.
    pub fn mark_all_dirty(&self) {
        self.dirty.lock().expect("hub lock poisoned").all = true;
        self.wake.notify_one();
    }

    /// Hands events (ordered by user, then id) to their subscribers, and
    /// advances cursors. A subscriber whose queue is full is removed and its
    /// `lagged` token cancelled; the others keep receiving. Public so that
    /// tests can drive sockets without a database.
    pub fn fan_out(&self, events: Vec<EventRow>) {
        let mut users = self.users.lock().expect("hub lock poisoned");
        for row in events {
            let Some(entry) = users.get_mut(&row.user_id) else {
                continue;
            };
            if row.event_id <= entry.cursor {
                continue;
            }
            entry.cursor = row.event_id;
            let event = Arc::new(HubEvent::from(row));
            entry.subs.retain(|sub| match sub.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!(user = %event.user_id, "closing a WebSocket that reads too slowly");
                    metrics::counter!("api_ws_slow_closed_total").increment(1);
                    metrics::gauge!("api_ws_connections").decrement(1.0);
                    sub.lagged.cancel();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    metrics::gauge!("api_ws_connections").decrement(1.0);
                    false
                }
            });
        }
        users.retain(|_, e| !e.subs.is_empty());
    }

    /// The (user, cursor) pairs to read: the dirty ones, or all.
    fn targets(&self, all: bool) -> (Vec<Uuid>, Vec<i64>) {
        let dirty = {
            let mut d = self.dirty.lock().expect("hub lock poisoned");
            let all = all || std::mem::take(&mut d.all);
            let users = std::mem::take(&mut d.users);
            if all { None } else { Some(users) }
        };
        let users = self.users.lock().expect("hub lock poisoned");
        let mut ids = Vec::new();
        let mut cursors = Vec::new();
        for (user, entry) in users.iter() {
            if dirty.as_ref().is_none_or(|d| d.contains(user)) {
                ids.push(*user);
                cursors.push(entry.cursor);
            }
        }
        (ids, cursors)
    }

    /// Runs the listener and the fetcher until `shutdown`.
    pub async fn run(self: Arc<Self>, pool: PgPool, poll: Duration, shutdown: CancellationToken) {
        let listener = tokio::spawn(self.clone().listen(pool.clone(), shutdown.clone()));
        self.fetch_loop(pool, poll, shutdown).await;
        let _ = listener.await;
    }

    async fn fetch_loop(&self, pool: PgPool, poll: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let all = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => false,
                _ = tick.tick() => true,
            };
            let (users, cursors) = self.targets(all);
            if users.is_empty() {
                continue;
            }
            let page = (self.queue as i64).clamp(1, MAX_FETCH_PAGE);
            match store::events_after_many(&pool, &users, &cursors, page).await {
                Ok(rows) => {
                    let full = rows.len() as i64 == page;
                    self.fan_out(rows);
                    if full {
                        // The page may have cut off any of these users, not
                        // only those it reached: read them all again.
                        self.dirty
                            .lock()
                            .expect("hub lock poisoned")
                            .users
                            .extend(users);
                        // A burst: give sockets a moment to drain the page
                        // before the next one, so only stalled ones overflow.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        self.wake.notify_one();
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "hub could not read the event log; retrying");
                    self.dirty
                        .lock()
                        .expect("hub lock poisoned")
                        .users
                        .extend(users);
                }
            }
        }
    }

    /// Holds a LISTEN connection, reconnecting after failures.
    async fn listen(self: Arc<Self>, pool: PgPool, shutdown: CancellationToken) {
        let mut failures = 0;
        loop {
            let connected = async {
                let mut l = PgListener::connect_with(&pool).await?;
                l.ignore_pool_close_event(false);
                l.listen(store::EVENTS_CHANNEL).await?;
                Ok::<_, sqlx::Error>(l)
            };
            let mut listener = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = connected => match r {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(LISTEN_RETRY.delay(failures)) => {}
                        }
                        failures = failures.saturating_add(1);
                        continue;
                    }
                },
            };
            failures = 0;
            // Whatever was notified while we were not listening is lost.
            self.mark_all_dirty();
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = listener.try_recv() => n,
                };
                match next {
                    Ok(Some(n)) => match parse_wakeup(n.payload()) {
                        Some(users) => self.mark_many_dirty(users),
                        None => self.mark_all_dirty(),
                    },
                    Ok(None) => {
                        tracing::warn!("LISTEN connection lost; reconnecting");
                        self.mark_all_dirty();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection failed; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}

/// Reconnecting a lost LISTEN connection: 100 ms doubling up to 5 s.
const LISTEN_RETRY: service::backoff::Exponential =
    service::backoff::Exponential::new(Duration::from_millis(100), Duration::from_secs(5));

/// `"{user}:{event_id}"`, comma separated (one per user of a batch) → the
/// users; `None` for anything else (`*` included): read everyone.
fn parse_wakeup(payload: &str) -> Option<Vec<Uuid>> {
    payload
        .split(',')
        .map(|entry| {
            let (user, _) = entry.split_once(':')?;
            Uuid::parse_str(user).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakeups_name_one_user_or_a_batch_of_them() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(parse_wakeup(&format!("{a}:7")), Some(vec![a]));
        assert_eq!(parse_wakeup(&format!("{a}:7,{b}:1")), Some(vec![a, b]));
        assert_eq!(parse_wakeup("*"), None);
        assert_eq!(parse_wakeup(&format!("{a}:7,junk")), None);
    }
}
