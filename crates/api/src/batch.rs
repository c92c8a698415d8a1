//! A batch of webhook deliveries as one unit of work: read once, decide in
//! memory, write once.
//!
//! [`crate::group_commit`] gathers the deliveries that queue up while a
//! lane's previous batch runs; this module applies them inside one
//! transaction with a fixed number of statements, whatever the batch's size:
//!
//! 1. **Read once.** The batch's jobs are locked in one statement (by our id
//!    or the worker's, `FOR UPDATE`, in id order), then one statement finds
//!    which of its `webhook-id`s are recorded already. The second comes
//!    after the first on purpose: a delivery of a locked job that another
//!    transaction was applying has committed by then, so its receipt shows.
//! 2. **Decide in memory.** Deliveries are taken in arrival order. Each is a
//!    duplicate if its `webhook-id` was recorded before or appeared earlier
//!    in the batch; otherwise the pure [`jobs::decide`] runs on the job *as
//!    the batch has left it so far* ([`jobs::after_plan`]), so that several
//!    deliveries of one job chain exactly as they would one transaction
//!    after another.
//! 3. **Write once.** Clips of completed jobs (and their read-back, so that
//!    the browser is told what is stored), then one statement with the
//!    receipts, the jobs' final states, each user's counter bumped by its
//!    number of events, the events numbered from that contiguous range, and
//!    one NOTIFY for the batch ([`store::write_batch`]). The caller commits
//!    and answers every delivery.
//!
//! Locks are taken in one global order: jobs by id, then user counters by
//! id, then receipts by `webhook-id`. Every other writer (a delivery applied
//! alone, the submitter, the reconciler) locks one job and then its owner,
//! which fits the same order, so lanes and instances wait for each other
//! but do not deadlock. A batch that fails anyway is rolled back by the
//! caller and its deliveries are applied one at a time by
//! [`receiver::process_in`], the reference this module must agree with.

use std::collections::{HashMap, HashSet};

use sqlx::PgConnection;
use uuid::Uuid;
use webhook_types::WebhookPayload;

use crate::error::Error;
use crate::jobs::{self, Decision, Notify, WriteCtx};
use crate::receiver::{self, Outcome};
use crate::store::{self, JobRow, JobWrite, NewClip, NewEvent, NewReceipt, ReceiptOutcome};

/// One delivery of a batch: what the receiver verified and parsed.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The `webhook-id` header; `None` only for unsigned deliveries.
    pub webhook_id: Option<&'a str>,
    /// The parsed body.
    pub payload: &'a WebhookPayload,
}

/// Applies `deliveries` in the caller's transaction, as many calls of
/// [`receiver::process_in`] in the same order would; returns each one's
/// outcome, in order. The caller commits (or rolls back on an error).
pub async fn apply(
    conn: &mut PgConnection,
    deliveries: &[Delivery<'_>],
    ctx: WriteCtx<'_>,
) -> Result<Vec<Outcome>, Error> {
    let read = read(conn, deliveries).await?;
    let decided = decide(deliveries, read, ctx);
    write(conn, &decided).await?;
    Ok(decided.outcomes)
}

// ---------------------------------------------------------------- 1. read once

/// What the database said about a batch before anything was decided.
struct Read {
    /// The batch's jobs, locked, in id order.
    jobs: Vec<JobRow>,
    /// Its `webhook-id`s that were recorded before.
    recorded: HashSet<String>,
}

async fn read(conn: &mut PgConnection, deliveries: &[Delivery<'_>]) -> Result<Read, Error> {
    let ids: Vec<Uuid> = deliveries
        .iter()
        .filter_map(|d| our_id(d.payload))
        .collect();
    let worker_ids: Vec<String> = deliveries
        .iter()
        .map(|d| jobs::pg_text(&d.payload.job_id).into_owned())
        .collect();
    let locked = store::lock_jobs_for_batch(conn, &ids, &worker_ids).await?;
    let webhook_ids: Vec<String> = deliveries
        .iter()
        .filter_map(|d| d.webhook_id.map(|id| jobs::pg_text(id).into_owned()))
        .collect();
    let recorded = if webhook_ids.is_empty() {
        HashSet::new()
    } else {
        store::recorded_receipts(conn, &webhook_ids)
            .await?
            .into_iter()
            .collect()
    };
    Ok(Read {
        jobs: locked,
        recorded,
    })
}

/// The API's id of the job, when the webhook names one of that shape.
fn our_id(payload: &WebhookPayload) -> Option<Uuid> {
    payload
        .external_job_id
        .as_deref()
        .and_then(|s| Uuid::parse_str(s).ok())
}

// ---------------------------------------------------------------- 2. decide in memory

/// A locked job as the batch has left it so far.
struct JobState {
    row: JobRow,
    /// A change was applied: the row's values are new.
    applied: bool,
    /// The worker was heard of (applied or stale): `last_heard_at` moves.
    heard: bool,
}

/// A notification decided, its message still to be built (a completion's
/// needs the clips as stored).
struct Note {
    kind: Notify,
    /// The job as this change left it (what the message shows).
    row: JobRow,
}

/// Everything the batch is to write, and its answers.
struct Decided {
    outcomes: Vec<Outcome>,
    receipts: Vec<NewReceipt>,
    jobs: Vec<JobState>,
    clips: Vec<NewClip>,
    /// In arrival order, which numbers each user's events.
    notes: Vec<Note>,
}

fn decide(deliveries: &[Delivery<'_>], read: Read, ctx: WriteCtx<'_>) -> Decided {
    let Read {
        jobs: locked,
        mut recorded,
    } = read;
    let mut states: Vec<JobState> = locked
        .into_iter()
        .map(|row| JobState {
            row,
            applied: false,
            heard: false,
        })
        .collect();
    let by_id: HashMap<Uuid, usize> = states
        .iter()
        .enumerate()
        .map(|(i, s)| (s.row.id, i))
        .collect();
    let mut decided = Decided {
        outcomes: Vec::with_capacity(deliveries.len()),
        receipts: Vec::with_capacity(deliveries.len()),
        jobs: Vec::new(),
        clips: Vec::new(),
        notes: Vec::new(),
    };

    for d in deliveries {
        let webhook_id = d.webhook_id.map(|id| jobs::pg_text(id).into_owned());
        // Recorded before, or earlier in this batch: nothing changes twice.
        if let Some(id) = &webhook_id
            && !recorded.insert(id.clone())
        {
            decided.outcomes.push(Outcome::Duplicate);
            continue;
        }
        let event = d.payload.event.as_str();
        let sequence = d
            .payload
            .sequence
            .map(|s| i64::try_from(s).unwrap_or(i64::MAX));
        let receipt = |job, outcome| {
            webhook_id.clone().map(|webhook_id| NewReceipt {
                webhook_id,
                job,
                event,
                sequence,
                outcome,
            })
        };

        let Some(i) = find_job(&states, &by_id, d.payload) else {
            decided
                .receipts
                .extend(receipt(None, ReceiptOutcome::UnknownJob));
            decided.outcomes.push(Outcome::UnknownJob);
            continue;
        };
        let state = &mut states[i];
        let change = receiver::change_of(d.payload);
        let (outcome, recorded_as) =
            match jobs::decide(&state.row, &change) {
                Decision::Apply(plan) => {
                    let row = jobs::after_plan(&state.row, &change, &plan);
                    decided.clips.extend(
                        jobs::clips_to_store(&change, &plan, ctx)
                            .into_iter()
                            .map(|clip| NewClip {
                                job: row.id,
                                user: row.user_id,
                                clip,
                            }),
                    );
                    if let Some(kind) = plan.notify {
                        decided.notes.push(Note {
                            kind,
                            row: row.clone(),
                        });
                    }
                    state.row = row;
                    state.applied = true;
                    state.heard = true;
                    (Outcome::Applied, ReceiptOutcome::Applied)
                }
                Decision::Stale => {
                    state.heard = true;
                    (Outcome::Stale, ReceiptOutcome::Stale)
                }
                Decision::Terminal => (Outcome::Terminal, ReceiptOutcome::Terminal),
            };
        decided
            .receipts
            .extend(receipt(Some(state.row.id), recorded_as));
        decided.outcomes.push(outcome);
    }
    decided.jobs = states.into_iter().filter(|s| s.heard).collect();
    decided
}

/// The job a delivery is about, as [`jobs::lock_for_change`] finds it: by
/// our id, else the oldest job with the worker's id, looked up in the
/// batch's current state (an earlier delivery may have recorded that id).
fn find_job(
    states: &[JobState],
    by_id: &HashMap<Uuid, usize>,
    payload: &WebhookPayload,
) -> Option<usize> {
    if let Some(i) = our_id(payload).and_then(|id| by_id.get(&id)) {
        return Some(*i);
    }
    let worker_id = jobs::pg_text(&payload.job_id);
    states
        .iter()
        .enumerate()
        .filter(|(_, s)| s.row.worker_job_id.as_deref() == Some(&*worker_id))
        .min_by_key(|(_, s)| (s.row.created_at, s.row.id))
        .map(|(i, _)| i)
}

// ---------------------------------------------------------------- 3. write once

async fn write(conn: &mut PgConnection, decided: &Decided) -> Result<(), Error> {
    // Completions: their clips, then read back, since the message shows the
    // clips as stored.
    let mut stored_clips: HashMap<Uuid, Vec<store::Clip>> = HashMap::new();
    if !decided.clips.is_empty() {
        store::insert_clips(conn, &decided.clips).await?;
    }
    let completed: Vec<Uuid> = decided
        .notes
        .iter()
        .filter(|n| n.kind == Notify::Completed)
        .map(|n| n.row.id)
        .collect();
    if !completed.is_empty() {
        for c in store::clips_for_jobs(conn, &completed).await? {
            stored_clips.entry(c.job_id).or_default().push(c.clip);
        }
    }
    let events: Vec<NewEvent> = decided
        .notes
        .iter()
        .map(|n| {
            let clips = match n.kind {
                Notify::Completed => stored_clips.get(&n.row.id).cloned().unwrap_or_default(),
                _ => Vec::new(),
            };
            NewEvent {
                user: n.row.user_id,
                job: n.row.id,
                message: jobs::notification(n.kind, &n.row, clips),
            }
        })
        .collect();
    let job_writes: Vec<JobWrite<'_>> = decided
        .jobs
        .iter()
        .map(|s| JobWrite {
            row: &s.row,
            applied: s.applied,
        })
        .collect();
    if decided.receipts.is_empty() && job_writes.is_empty() && events.is_empty() {
        return Ok(());
    }
    let written = store::write_batch(conn, &decided.receipts, &job_writes, &events).await?;
    // A `webhook-id` recorded between the read and the write belongs to a
    // transaction this batch did not wait for (a job-less delivery, or an
    // id reused for another job): the batch's decision may be wrong, so it
    // is undone and its deliveries are applied one at a time.
    if written.receipts != decided.receipts.len() as i64 {
        return Err(Error::Internal(anyhow::anyhow!(
            "a webhook-id of the batch was recorded concurrently"
        )));
    }
    debug_assert_eq!(written.events, events.len() as i64);
    Ok(())
}
