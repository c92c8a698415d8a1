//! The job state machine, and the one place that writes a job's progress.
//!
//! Webhooks, the reconciler and the submitter all describe what they learned
//! as a [`Change`]. [`decide`] is pure: given the stored job and the change it
//! says whether the change moves the job, and which notification it earns.
//! [`write`] then performs that decision inside the caller's transaction:
//! job row, clips, the user's event log and the NOTIFY commit together.
//!
//! Rules (contract, section 3):
//! - pending → submitted → processing → completed | failed; a webhook may
//!   arrive while the job is still `pending` and moves it like any other;
//! - completed and failed are final;
//! - an event whose `sequence` is not above the last applied one changes
//!   nothing (it is still recorded by the caller);
//! - without `sequence` (legacy senders) events apply in arrival order, but
//!   progress never goes back;
//! - clip counts absent from a progress event keep the stored ones.

use std::borrow::Cow;

use chrono::Utc;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;
use webhook_types::{JobOutput, PipelineStatus, ProgressPercent, Timestamp};

use crate::store::{self, Clip, JobRow, JobUpdate};

/// The API's own job states, stored as text (the table's CHECK lists the
/// same names) and shown under the same names.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    sqlx::Type,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum JobStatus {
    /// Saved, not yet accepted by the worker.
    Pending,
    /// Accepted by the worker, no progress heard yet.
    Submitted,
    /// The worker reported progress.
    Processing,
    /// Done, with clips. Final.
    Completed,
    /// Stopped with an error. Final.
    Failed,
}

impl JobStatus {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Submitted => "submitted",
            JobStatus::Processing => "processing",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
        }
    }

    /// Completed and failed are final.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed)
    }
}

/// What kind of news a [`Change`] brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The job started at the worker.
    Started,
    /// The job moved on.
    Progress,
    /// The job completed (with output when the source had it).
    Completed,
    /// The job failed.
    Failed,
}

/// What was learned about a job, from whichever source.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// The kind of news.
    pub kind: ChangeKind,
    /// The webhook's sequence; `None` for legacy senders and reconciliation.
    pub sequence: Option<u64>,
    /// The worker's pipeline status; `None` when the source has none (a
    /// refusal by the worker at submission).
    pub pipeline_status: Option<PipelineStatus>,
    /// Reported progress, 0 to 100.
    pub progress: f64,
    /// Reported step text.
    pub current_step: &'a str,
    /// Reported clip counts, when present.
    pub clips_completed: Option<u32>,
    /// Reported clip counts, when present.
    pub total_clips: Option<u32>,
    /// Why the job failed.
    pub error: Option<&'a str>,
    /// The output of a completed job.
    pub output: Option<&'a JobOutput>,
    /// The worker's id of the job, recorded when the job has none yet.
    pub worker_job_id: Option<&'a str>,
}

/// The notification a change earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// `clipping.started`
    Started,
    /// `clipping.progress`
    Progress,
    /// `clipping.completed`
    Completed,
    /// `clipping.failed`
    Failed,
}

/// What a change does to a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The job is completed or failed: nothing changes.
    Terminal,
    /// The change is not newer than what was applied: nothing changes.
    Stale,
    /// The job moves to this state.
    Apply(Plan),
}

/// The job's state after a change, and the notification it earns.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// New status.
    pub status: JobStatus,
    /// New progress.
    pub progress: f64,
    /// New pipeline status.
    pub pipeline_status: Option<PipelineStatus>,
    /// New clip counts.
    pub clips_completed: i32,
    /// New clip counts.
    pub total_clips: i32,
    /// New highest applied sequence.
    pub last_sequence: i64,
    /// What to push, if anything.
    pub notify: Option<Notify>,
}

/// Whether a progress update is worth a push: it crosses a 10 % step, or the
/// status or the step text changes. (The original plan meant this; its code compared
/// after assigning, so it fired only on exact multiples of 10.)
pub fn progress_worth_pushing(
    old_progress: f64,
    new_progress: f64,
    old_status: Option<&str>,
    new_status: Option<&str>,
    old_step: Option<&str>,
    new_step: Option<&str>,
) -> bool {
    (new_progress / 10.0).floor() > (old_progress / 10.0).floor()
        || old_status != new_status
        || old_step != new_step
}

fn clamp_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// The pure state machine: what `change` does to `job`.
pub fn decide(job: &JobRow, change: &Change<'_>) -> Decision {
    let status = job.status;
    if status.is_terminal() {
        return Decision::Terminal;
    }
    let last_sequence = match change.sequence {
        Some(seq) => {
            let seq = i64::try_from(seq).unwrap_or(i64::MAX);
            if seq <= job.last_sequence {
                return Decision::Stale;
            }
            seq
        }
        None => job.last_sequence,
    };
    // Progress never goes back, even for legacy events applied in arrival
    // order; completion is 100 by definition.
    let progress = match change.kind {
        ChangeKind::Completed => 100.0,
        _ => job.progress_percent.max(change.progress),
    };
    let pipeline_status = change.pipeline_status.or_else(|| {
        job.pipeline_status
            .as_deref()
            .and_then(PipelineStatus::parse)
    });
    let mut clips_completed = change
        .clips_completed
        .map(clamp_i32)
        .unwrap_or(job.clips_completed);
    let mut total_clips = change.total_clips.map(clamp_i32).unwrap_or(job.total_clips);
    let not_started = matches!(status, JobStatus::Pending | JobStatus::Submitted);
    let (new_status, notify) = match change.kind {
        ChangeKind::Started if not_started => (JobStatus::Processing, Some(Notify::Started)),
        ChangeKind::Started | ChangeKind::Progress => {
            let push = progress_worth_pushing(
                job.progress_percent,
                progress,
                job.pipeline_status.as_deref(),
                pipeline_status.map(PipelineStatus::as_str),
                job.current_step.as_deref(),
                Some(change.current_step),
            );
            (JobStatus::Processing, push.then_some(Notify::Progress))
        }
        ChangeKind::Completed => {
            if let Some(output) = change.output {
                if change.total_clips.is_none() {
                    total_clips = clamp_i32(output.total_clips);
                }
                if change.clips_completed.is_none() {
                    clips_completed = i32::try_from(output.clips.len()).unwrap_or(i32::MAX);
                }
            }
            (JobStatus::Completed, Some(Notify::Completed))
        }
        ChangeKind::Failed => (JobStatus::Failed, Some(Notify::Failed)),
    };
    Decision::Apply(Plan {
        status: new_status,
        progress,
        pipeline_status,
        clips_completed,
        total_clips,
        last_sequence,
        notify,
    })
}

/// Text as PostgreSQL can store it: `text` and `jsonb` refuse U+0000, so it
/// becomes U+FFFD. Everything else (quotes, SQL metacharacters, any Unicode)
/// is stored verbatim through bind parameters.
pub fn pg_text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// Rewrites an S3 URL to `https://{domain}/{key}`, as the original plan's
/// `transformToCdnUrl` meant to. Both virtual-hosted forms are recognised,
/// `bucket.s3.amazonaws.com` (the original plan's own example, which its regex
/// missed) and `bucket.s3.<region>.amazonaws.com` (also the older
/// `bucket.s3-<region>.amazonaws.com`), as well as `s3://bucket/key`.
/// Anything else is returned unchanged.
pub fn cdn_url(url: &str, domain: Option<&str>) -> String {
    let Some(domain) = domain else {
        return url.to_owned();
    };
    if let Some(rest) = url.strip_prefix("s3://") {
        return match rest.split_once('/') {
            Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
                format!("https://{domain}/{key}")
            }
            _ => url.to_owned(),
        };
    }
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return url.to_owned();
    };
    let Some((host, key)) = rest.split_once('/') else {
        return url.to_owned();
    };
    let host = host.to_ascii_lowercase();
    let Some(prefix) = host.strip_suffix(".amazonaws.com") else {
        return url.to_owned();
    };
    let is_s3 = if let Some(bucket) = prefix.strip_suffix(".s3") {
        !bucket.is_empty()
    } else if let Some((bucket, region)) = prefix.rsplit_once(".s3.") {
        !bucket.is_empty() && is_region(region)
    } else if let Some((bucket, region)) = prefix.rsplit_once(".s3-") {
        !bucket.is_empty() && is_region(region)
    } else {
        false
    };
    if is_s3 && !key.is_empty() {
        format!("https://{domain}/{key}")
    } else {
        url.to_owned()
    }
}

fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// What [`write`] needs besides the job and the change.
#[derive(Debug, Clone, Copy)]
pub struct WriteCtx<'a> {
    /// CDN host for clip URLs.
    pub cdn_domain: Option<&'a str>,
}

/// A notification decided inside a transaction and not yet appended to the
/// owner's event log.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    /// The owner, whose counter numbers it.
    pub user: Uuid,
    /// The job.
    pub job: Uuid,
    /// The message, `eventId` still to be filled in.
    pub message: serde_json::Value,
}

/// Performs a decided [`Plan`] in the caller's transaction: updates the job,
/// writes the clips of a completion, and appends the notification to the
/// owner's event log (which queues the NOTIFY). Returns the event id, if a
/// notification was appended.
pub async fn write(
    conn: &mut PgConnection,
    job: &JobRow,
    change: &Change<'_>,
    plan: &Plan,
    ctx: WriteCtx<'_>,
) -> Result<Option<i64>, sqlx::Error> {
    match write_job(conn, job, change, plan, ctx).await? {
        Some(e) => store::append_event(conn, e.user, e.job, &e.message)
            .await
            .map(Some),
        None => Ok(None),
    }
}

/// The first half of [`write`]: the job row and clips, returning the
/// notification for the caller to append before commit. (A batch of
/// webhooks does the same work for many jobs at once: see
/// [`crate::batch`].)
pub async fn write_job(
    conn: &mut PgConnection,
    job: &JobRow,
    change: &Change<'_>,
    plan: &Plan,
    ctx: WriteCtx<'_>,
) -> Result<Option<PendingEvent>, sqlx::Error> {
    let output = change.output;
    let step = pg_text(change.current_step);
    let error = change.error.map(pg_text);
    let title = output.map(|o| pg_text(&o.source_video_title));
    let worker_job_id = change.worker_job_id.map(pg_text);
    let updated = store::update_job(
        conn,
        job.id,
        &JobUpdate {
            status: plan.status,
            worker_job_id: worker_job_id.as_deref(),
            progress_percent: plan.progress,
            current_step: Some(&step),
            pipeline_status: plan.pipeline_status.map(PipelineStatus::as_str),
            clips_completed: plan.clips_completed,
            total_clips: plan.total_clips,
            error: error.as_deref(),
            source_video_title: title.as_deref(),
            source_video_duration_seconds: output.map(|o| o.source_video_duration_seconds),
            processing_time_seconds: output.map(|o| o.processing_time_seconds),
            last_sequence: plan.last_sequence,
        },
    )
    .await?;

    let mut clips = Vec::new();
    if plan.status == JobStatus::Completed {
        for clip in clips_to_store(change, plan, ctx) {
            store::insert_clip(conn, job.id, job.user_id, &clip).await?;
        }
        // Read back: what the browser is told is exactly what is stored.
        clips = store::clips_for_job(&mut *conn, job.id).await?;
    }

    Ok(plan.notify.map(|kind| PendingEvent {
        user: job.user_id,
        job: job.id,
        message: notification(kind, &updated, clips),
    }))
}

/// The clips a decided [`Plan`] writes: those of the output of a change
/// that completes the job, as they are stored (CDN URLs, storable text).
pub fn clips_to_store(change: &Change<'_>, plan: &Plan, ctx: WriteCtx<'_>) -> Vec<Clip> {
    let output = match change.output {
        Some(output) if plan.status == JobStatus::Completed => output,
        _ => return Vec::new(),
    };
    output
        .clips
        .iter()
        .map(|artifact| Clip {
            clip_index: clamp_i32(artifact.clip_index),
            url: pg_text(&cdn_url(&artifact.s3_url, ctx.cdn_domain)).into_owned(),
            duration_ms: i64::try_from(artifact.duration_ms).unwrap_or(i64::MAX),
            start_time_ms: i64::try_from(artifact.start_time_ms).unwrap_or(i64::MAX),
            end_time_ms: i64::try_from(artifact.end_time_ms).unwrap_or(i64::MAX),
            virality_score: artifact.virality_score.get(),
            layout_type: pg_text(&artifact.layout_type).into_owned(),
            summary: artifact.summary.as_deref().map(|s| pg_text(s).into_owned()),
            tags: artifact
                .tags
                .iter()
                .flatten()
                .map(|t| pg_text(t).into_owned())
                .collect(),
        })
        .collect()
}

/// The job as [`store::update_job`] leaves it after a decided [`Plan`]: the
/// same rules (the worker's id and the output's fields are kept once known,
/// an error is kept unless a new one comes), computed without the database,
/// so that a batch can chain several changes of one job in memory. The
/// timestamps are left as they were; the store stamps them on writing.
pub fn after_plan(job: &JobRow, change: &Change<'_>, plan: &Plan) -> JobRow {
    let output = change.output;
    let owned = |s: &str| pg_text(s).into_owned();
    JobRow {
        status: plan.status,
        worker_job_id: job
            .worker_job_id
            .clone()
            .or_else(|| change.worker_job_id.map(owned)),
        progress_percent: plan.progress,
        current_step: Some(owned(change.current_step)),
        pipeline_status: plan
            .pipeline_status
            .map(|p| PipelineStatus::as_str(p).to_owned()),
        clips_completed: plan.clips_completed,
        total_clips: plan.total_clips,
        error: change.error.map(owned).or_else(|| job.error.clone()),
        source_video_title: output
            .map(|o| owned(&o.source_video_title))
            .or_else(|| job.source_video_title.clone()),
        source_video_duration_seconds: output
            .map(|o| o.source_video_duration_seconds)
            .or(job.source_video_duration_seconds),
        processing_time_seconds: output
            .map(|o| o.processing_time_seconds)
            .or(job.processing_time_seconds),
        last_sequence: plan.last_sequence,
        ..job.clone()
    }
}

/// The largest WebSocket frame a notification may become (contract: a
/// `clipping.completed` whose clips would make it larger carries `clipCount`
/// and `clipsOmitted: true` instead, and the client reads the clips over
/// REST). Every stored event must fit, or a client resuming with `since`
/// before it could never get past it.
pub const MAX_FRAME_BYTES: usize = 256 * 1024;

/// The longest a free-text field (`error`, `currentStep`) may be in a frame
/// that is over [`MAX_FRAME_BYTES`] once its clips are gone; the full text
/// stays on the job.
const MAX_FRAME_TEXT_BYTES: usize = 16 * 1024;

/// Makes a message fit one frame: over [`MAX_FRAME_BYTES`], a completed
/// message drops its `clips` for `clipsOmitted: true`, and if that is not
/// enough, long strings are cut. Returns whether anything changed.
pub fn fit_frame(message: &mut serde_json::Value) -> bool {
    let too_big =
        |m: &serde_json::Value| serde_json::to_vec(m).map_or(0, |v| v.len()) > MAX_FRAME_BYTES;
    if !too_big(message) {
        return false;
    }
    let Some(fields) = message.as_object_mut() else {
        return false;
    };
    if fields.get("type").and_then(|t| t.as_str()) == Some("clipping.completed")
        && fields.remove("clips").is_some()
    {
        fields.insert("clipsOmitted".into(), json!(true));
    }
    if too_big(message) {
        for value in message
            .as_object_mut()
            .into_iter()
            .flat_map(|f| f.values_mut())
        {
            if let serde_json::Value::String(text) = value
                && text.len() > MAX_FRAME_TEXT_BYTES
            {
                let mut cut = MAX_FRAME_TEXT_BYTES;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push('…');
            }
        }
    }
    true
}

/// [`fit_frame`] for a message as the event log stores it. The log's text
/// (PostgreSQL's `jsonb` output) is a little longer than the message that
/// was checked when the event was made, and events stored before the limit
/// existed were never checked, so every frame is checked again on its way
/// out. Text that is not JSON passes unchanged.
pub fn fit_frame_text(text: String) -> String {
    if text.len() <= MAX_FRAME_BYTES {
        return text;
    }
    let Ok(mut message) = serde_json::from_str::<serde_json::Value>(&text) else {
        return text;
    };
    if fit_frame(&mut message) {
        message.to_string()
    } else {
        text
    }
}

/// The WebSocket message of a notification, the contract's fields; `eventId`
/// is filled in by the store from the user's counter. Bounded by
/// [`fit_frame`].
pub fn notification(kind: Notify, job: &JobRow, clips: Vec<Clip>) -> serde_json::Value {
    let mut message = notification_unbounded(kind, job, clips);
    fit_frame(&mut message);
    message
}

fn notification_unbounded(kind: Notify, job: &JobRow, clips: Vec<Clip>) -> serde_json::Value {
    use crate::messages::{
        ClippingCompleted, ClippingFailed, ClippingProgress, ClippingStarted, ServerMessage,
    };
    let (event_id, job_id, at) = (0, job.id, Timestamp(Utc::now()));
    let progress_percent =
        ProgressPercent::new(job.progress_percent).unwrap_or(ProgressPercent::ZERO);
    // `status` in started/progress messages is the worker's pipeline status
    // (downloading, rendering, …): that is what the progress bar labels.
    let status = job
        .pipeline_status
        .as_deref()
        .and_then(PipelineStatus::parse);
    let current_step = job.current_step.clone();
    let message = match kind {
        Notify::Started => ServerMessage::Started(ClippingStarted {
            event_id,
            job_id,
            at,
            status,
            progress_percent,
            current_step,
            message: "Your video is being processed".into(),
        }),
        Notify::Progress => ServerMessage::Progress(ClippingProgress {
            event_id,
            job_id,
            at,
            status,
            progress_percent,
            current_step,
            clips_completed: job.clips_completed,
            total_clips: job.total_clips,
        }),
        Notify::Completed => {
            // The count of clips the user actually gets, not the worker's
            // planned total (the original plan's own example lists fewer clips).
            let clip_count = clips.len();
            ServerMessage::Completed(ClippingCompleted {
                event_id,
                job_id,
                at,
                clip_count,
                clips: Some(clips),
                clips_omitted: None,
                message: format!("Your {clip_count} clips are ready!"),
            })
        }
        Notify::Failed => ServerMessage::Failed(ClippingFailed {
            event_id,
            job_id,
            at,
            error: job.error.clone(),
            progress_percent,
            message: "Video processing failed. Please try again.".into(),
        }),
    };
    serde_json::to_value(message).expect("a message serialises")
}

/// Looks a job up as the receiver does: by `external_job_id` when it is one
/// of our ids, else by the worker's id. Locks the row.
pub async fn lock_for_change(
    conn: &mut PgConnection,
    external_job_id: Option<&str>,
    worker_job_id: &str,
) -> Result<Option<JobRow>, sqlx::Error> {
    if let Some(id) = external_job_id.and_then(|s| Uuid::parse_str(s).ok())
        && let Some(job) = store::lock_job(conn, id).await?
    {
        return Ok(Some(job));
    }
    store::lock_job_by_worker_id(conn, &pg_text(worker_job_id)).await
}

/// Applies a change to the job with this id in its own transaction, for
/// sources without a webhook id (the reconciler, the submitter). Returns the
/// decision, or `None` when the job does not exist.
pub async fn apply_by_id(
    pool: &sqlx::PgPool,
    id: Uuid,
    change: &Change<'_>,
    ctx: WriteCtx<'_>,
) -> Result<Option<Decision>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let decision = apply_in(&mut tx, id, change, ctx).await?;
    tx.commit().await?;
    Ok(decision)
}

/// As [`apply_by_id`], inside the caller's transaction, so that the caller
/// can commit other writes with it (the submitter closes its queue row in
/// the same commit that fails the job).
pub async fn apply_in(
    conn: &mut PgConnection,
    id: Uuid,
    change: &Change<'_>,
    ctx: WriteCtx<'_>,
) -> Result<Option<Decision>, sqlx::Error> {
    let Some(job) = store::lock_job(conn, id).await? else {
        return Ok(None);
    };
    let decision = decide(&job, change);
    if let Decision::Apply(plan) = &decision {
        write(conn, &job, change, plan, ctx).await?;
    }
    Ok(Some(decision))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: &str, progress: f64, seq: i64) -> JobRow {
        JobRow {
            id: Uuid::nil(),
            user_id: Uuid::nil(),
            status: serde_json::from_value(json!(status)).expect("a job status"),
            worker_job_id: None,
            video_url: "https://v".into(),
            progress_percent: progress,
            current_step: Some("step".into()),
            pipeline_status: Some("transcribing".into()),
            clips_completed: 2,
            total_clips: 5,
            error: None,
            source_video_title: None,
            source_video_duration_seconds: None,
            processing_time_seconds: None,
            last_sequence: seq,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            completed_at: None,
            failed_at: None,
        }
    }

    fn progress(p: f64, seq: Option<u64>) -> Change<'static> {
        Change {
            kind: ChangeKind::Progress,
            sequence: seq,
            pipeline_status: Some(PipelineStatus::Transcribing),
            progress: p,
            current_step: "step",
            clips_completed: None,
            total_clips: None,
            error: None,
            output: None,
            worker_job_id: None,
        }
    }

    #[test]
    fn push_rule_crosses_ten_percent_steps() {
        assert!(progress_worth_pushing(15.0, 25.0, None, None, None, None));
        assert!(!progress_worth_pushing(21.0, 29.0, None, None, None, None));
        assert!(progress_worth_pushing(29.0, 30.0, None, None, None, None));
        assert!(progress_worth_pushing(
            21.0,
            22.0,
            Some("a"),
            Some("b"),
            None,
            None
        ));
        assert!(progress_worth_pushing(
            21.0,
            22.0,
            None,
            None,
            Some("x"),
            Some("y")
        ));
    }

    #[test]
    fn terminal_is_final_and_stale_sequences_do_not_move() {
        assert_eq!(
            decide(&job("completed", 100.0, 9), &progress(50.0, Some(10))),
            Decision::Terminal
        );
        assert_eq!(
            decide(&job("processing", 10.0, 5), &progress(50.0, Some(5))),
            Decision::Stale
        );
        let Decision::Apply(plan) = decide(&job("processing", 21.0, 5), &progress(29.0, Some(6)))
        else {
            panic!()
        };
        assert_eq!(plan.notify, None);
        // Counts absent from a progress event keep the stored ones.
        assert_eq!((plan.clips_completed, plan.total_clips), (2, 5));
        assert_eq!(plan.last_sequence, 6);
    }

    #[test]
    fn legacy_events_never_move_progress_back() {
        let Decision::Apply(plan) = decide(&job("processing", 40.0, 0), &progress(20.0, None))
        else {
            panic!()
        };
        assert_eq!(plan.progress, 40.0);
        assert_eq!(plan.last_sequence, 0);
    }

    #[test]
    fn started_while_pending_starts() {
        let mut change = progress(0.0, Some(1));
        change.kind = ChangeKind::Started;
        let Decision::Apply(plan) = decide(&job("pending", 0.0, 0), &change) else {
            panic!()
        };
        assert_eq!(plan.status, JobStatus::Processing);
        assert_eq!(plan.notify, Some(Notify::Started));
    }

    #[test]
    fn cdn_rewrites_both_s3_forms() {
        let d = Some("cdn.example.com");
        assert_eq!(
            cdn_url(
                "https://viewcreator-media.s3.amazonaws.com/clips/u/a/clip_00.mp4",
                d
            ),
            "https://cdn.example.com/clips/u/a/clip_00.mp4"
        );
        assert_eq!(
            cdn_url("https://b.s3.us-east-1.amazonaws.com/k/x.mp4", d),
            "https://cdn.example.com/k/x.mp4"
        );
        assert_eq!(
            cdn_url("https://b.s3-eu-west-1.amazonaws.com/k", d),
            "https://cdn.example.com/k"
        );
        assert_eq!(
            cdn_url("s3://b/k/x.mp4", d),
            "https://cdn.example.com/k/x.mp4"
        );
        assert_eq!(
            cdn_url("https://example.com/x.mp4", d),
            "https://example.com/x.mp4"
        );
        assert_eq!(
            cdn_url("https://evil.com/.s3.amazonaws.com/x", d),
            "https://evil.com/.s3.amazonaws.com/x"
        );
        assert_eq!(
            cdn_url("https://b.s3.amazonaws.com/k", None),
            "https://b.s3.amazonaws.com/k"
        );
    }

    #[test]
    fn nul_becomes_replacement_character() {
        assert_eq!(pg_text("a\0b"), "a\u{FFFD}b");
        assert!(matches!(pg_text("'; DROP TABLE x; --"), Cow::Borrowed(_)));
    }
}
