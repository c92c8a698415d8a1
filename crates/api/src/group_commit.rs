//! Group commit for the webhook receiver: concurrent deliveries share one
//! transaction and one commit.
//!
//! A durable commit costs about a millisecond and every notifying commit
//! takes PostgreSQL's cluster-wide NOTIFY lock, so one transaction per
//! delivery caps the receiver near the database's own ceiling. Here each
//! delivery goes to one of a few *lanes* (by a hash of the key its job is
//! looked up by, so one job always meets one lane and its deliveries keep
//! their arrival order). A lane's task takes whatever has queued while its
//! previous batch ran (no timer: an idle receiver adds no latency) and runs
//! it in one transaction:
//!
//! 1. each delivery as [`receiver::process_deferred`] would alone (lock the
//!    job, record the webhook-id, update the job, write clips), in order;
//! 2. the batch's notifications, appended last and sorted by user, so that
//!    concurrent lanes take the per-user counter locks in one global order
//!    and cannot deadlock on them;
//! 3. one commit, after which every delivery of the batch is answered.
//!
//! If the batch fails for any reason (a deadlock with another instance, a
//! lost connection, a bug tripped by one delivery) it is rolled back and each
//! delivery is retried alone in its own transaction, so one bad delivery
//! never fails its neighbours and each gets its own answer.

use std::hash::{DefaultHasher, Hash as _, Hasher as _};

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use webhook_types::WebhookPayload;

use crate::error::Error;
use crate::jobs::WriteCtx;
use crate::receiver::{self, Outcome};
use crate::store;

/// Deliveries waiting per lane before senders wait in turn.
const LANE_QUEUE: usize = 1024;

struct Delivery {
    webhook_id: Option<String>,
    payload: WebhookPayload,
    reply: oneshot::Sender<Result<Outcome, Error>>,
}

/// The receiver's way into the database: batched lanes, or one transaction
/// per delivery when group commit is off.
#[derive(Debug, Clone)]
pub struct Committer {
    pool: PgPool,
    cdn_domain: Option<String>,
    /// Empty when group commit is off.
    lanes: Vec<mpsc::Sender<Delivery>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("webhook_id", &self.webhook_id)
            .finish_non_exhaustive()
    }
}

impl Committer {
    /// Starts `lanes` lane tasks taking up to `max_batch` deliveries each;
    /// `lanes == 0` or `max_batch <= 1` means one transaction per delivery.
    /// Lane tasks end when the last `Committer` clone is dropped, after
    /// answering what was queued.
    pub fn start(pool: PgPool, cdn_domain: Option<String>, lanes: usize, max_batch: usize) -> Self {
        let lanes = if max_batch <= 1 { 0 } else { lanes };
        let senders = (0..lanes)
            .map(|_| {
                let (tx, rx) = mpsc::channel(LANE_QUEUE);
                tokio::spawn(lane(pool.clone(), cdn_domain.clone(), rx, max_batch));
                tx
            })
            .collect();
        Self {
            pool,
            cdn_domain,
            lanes: senders,
        }
    }

    /// Applies one delivery, alone or batched with others; returns once its
    /// transaction has committed.
    pub async fn apply(
        &self,
        webhook_id: Option<String>,
        payload: WebhookPayload,
    ) -> Result<Outcome, Error> {
        if self.lanes.is_empty() {
            let ctx = WriteCtx {
                cdn_domain: self.cdn_domain.as_deref(),
            };
            return receiver::process(&self.pool, webhook_id.as_deref(), &payload, ctx).await;
        }
        let lane = &self.lanes[lane_of(&payload, self.lanes.len())];
        let (reply, answer) = oneshot::channel();
        lane.send(Delivery {
            webhook_id,
            payload,
            reply,
        })
        .await
        .map_err(|_| Error::Internal(anyhow::anyhow!("the receiver's commit lane stopped")))?;
        answer
            .await
            .map_err(|_| Error::Internal(anyhow::anyhow!("the receiver's commit lane stopped")))?
    }
}

/// Which lane a delivery belongs to: by the key its job is found by.
fn lane_of(payload: &WebhookPayload, lanes: usize) -> usize {
    let mut h = DefaultHasher::new();
    match payload
        .external_job_id
        .as_deref()
        .and_then(|s| Uuid::parse_str(s).ok())
    {
        Some(id) => id.hash(&mut h),
        None => payload.job_id.hash(&mut h),
    }
    (h.finish() % lanes as u64) as usize
}

async fn lane(
    pool: PgPool,
    cdn_domain: Option<String>,
    mut rx: mpsc::Receiver<Delivery>,
    max_batch: usize,
) {
    let ctx = WriteCtx {
        cdn_domain: cdn_domain.as_deref(),
    };
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        metrics::histogram!("api_webhook_batch_size").record(batch.len() as f64);
        if batch.len() > 1 {
            match run_batch(&pool, &batch, ctx).await {
                Ok(outcomes) => {
                    for (d, outcome) in batch.drain(..).zip(outcomes) {
                        let _ = d.reply.send(Ok(outcome));
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, size = batch.len(), "webhook batch failed; applying one by one");
                }
            }
        }
        for d in batch.drain(..) {
            let r = receiver::process(&pool, d.webhook_id.as_deref(), &d.payload, ctx).await;
            let _ = d.reply.send(r);
        }
    }
}

async fn run_batch(
    pool: &PgPool,
    batch: &[Delivery],
    ctx: WriteCtx<'_>,
) -> Result<Vec<Outcome>, Error> {
    let mut tx = pool.begin().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut events = Vec::new();
    for d in batch {
        let (outcome, event) =
            receiver::process_deferred(&mut tx, d.webhook_id.as_deref(), &d.payload, ctx).await?;
        outcomes.push(outcome);
        events.extend(event);
    }
    // Stable: one user's events keep the deliveries' order.
    events.sort_by_key(|e| e.user);
    for e in events {
        store::append_event(&mut tx, e.user, e.job, &e.message).await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}
