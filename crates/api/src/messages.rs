//! The messages `GET /ws` sends: one JSON text frame per event, the original
//! plan's notification types with the contract's fields.
//!
//! One type for every side: the server builds its notifications from it
//! ([`crate::jobs::notification`]), `viewcreator-api watch` and the tests
//! read frames into it, and the OpenAPI document describes it (the
//! messages are named schemas, referenced from `GET /ws`). The JSON is the
//! contract's: `type`, then camelCase fields, absent values as `null`,
//! except `clips` and `clipsOmitted`, of which a completion carries one.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use webhook_types::{PipelineStatus, ProgressPercent, Timestamp};

use crate::store::Clip;

/// A message from the server, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type")]
pub enum ServerMessage {
    /// The worker started the job.
    #[serde(rename = "clipping.started")]
    Started(ClippingStarted),
    /// The job moved on.
    #[serde(rename = "clipping.progress")]
    Progress(ClippingProgress),
    /// The job finished with its clips.
    #[serde(rename = "clipping.completed")]
    Completed(ClippingCompleted),
    /// The job stopped with an error.
    #[serde(rename = "clipping.failed")]
    Failed(ClippingFailed),
}

impl ServerMessage {
    /// The `type` of this message.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerMessage::Started(_) => "clipping.started",
            ServerMessage::Progress(_) => "clipping.progress",
            ServerMessage::Completed(_) => "clipping.completed",
            ServerMessage::Failed(_) => "clipping.failed",
        }
    }

    /// The event's id: increasing per user, what `?since=` takes.
    pub fn event_id(&self) -> i64 {
        match self {
            ServerMessage::Started(m) => m.event_id,
            ServerMessage::Progress(m) => m.event_id,
            ServerMessage::Completed(m) => m.event_id,
            ServerMessage::Failed(m) => m.event_id,
        }
    }

    /// The job the event is about.
    pub fn job_id(&self) -> Uuid {
        match self {
            ServerMessage::Started(m) => m.job_id,
            ServerMessage::Progress(m) => m.job_id,
            ServerMessage::Completed(m) => m.job_id,
            ServerMessage::Failed(m) => m.job_id,
        }
    }

    /// Whether the job ends with this message.
    pub fn is_terminal(&self) -> bool {
        matches!(self, ServerMessage::Completed(_) | ServerMessage::Failed(_))
    }
}

/// `clipping.started`: the worker started the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClippingStarted {
    /// Increasing per user; what `?since=` takes.
    pub event_id: i64,
    /// The job.
    pub job_id: Uuid,
    /// When the API recorded the event.
    pub at: Timestamp,
    /// The worker's pipeline status.
    #[schema(required = true)]
    pub status: Option<PipelineStatus>,
    /// Overall progress.
    pub progress_percent: ProgressPercent,
    /// The worker's description of the step.
    #[schema(required = true)]
    pub current_step: Option<String>,
    /// For people: "Your video is being processed".
    pub message: String,
}

/// `clipping.progress`: pushed when progress crosses a 10 % step or the
/// status or step text changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClippingProgress {
    /// Increasing per user; what `?since=` takes.
    pub event_id: i64,
    /// The job.
    pub job_id: Uuid,
    /// When the API recorded the event.
    pub at: Timestamp,
    /// The worker's pipeline status.
    #[schema(required = true)]
    pub status: Option<PipelineStatus>,
    /// Overall progress.
    pub progress_percent: ProgressPercent,
    /// The worker's description of the step.
    #[schema(required = true)]
    pub current_step: Option<String>,
    /// Clips rendered so far.
    pub clips_completed: i32,
    /// Clips the job will produce.
    pub total_clips: i32,
}

/// `clipping.completed`: the job's clips are ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClippingCompleted {
    /// Increasing per user; what `?since=` takes.
    pub event_id: i64,
    /// The job.
    pub job_id: Uuid,
    /// When the API recorded the event.
    pub at: Timestamp,
    /// How many clips the job has.
    pub clip_count: usize,
    /// The clips; absent when they would make the frame larger than 256 KiB
    /// (then `clipsOmitted` is true: read them with
    /// `GET /api/clipping-jobs/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub clips: Option<Vec<Clip>>,
    /// Present, and true, only when `clips` was left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub clips_omitted: Option<bool>,
    /// For people: "Your 3 clips are ready!".
    pub message: String,
}

/// `clipping.failed`: the job stopped with an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClippingFailed {
    /// Increasing per user; what `?since=` takes.
    pub event_id: i64,
    /// The job.
    pub job_id: Uuid,
    /// When the API recorded the event.
    pub at: Timestamp,
    /// Why (the first 16 KiB when the whole text would not fit a frame).
    #[schema(required = true)]
    pub error: Option<String>,
    /// The progress the job reached.
    pub progress_percent: ProgressPercent,
    /// For people: "Video processing failed. Please try again.".
    pub message: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at() -> Timestamp {
        Timestamp(
            chrono::DateTime::parse_from_rfc3339("2025-01-15T10:38:00Z")
                .unwrap()
                .into(),
        )
    }

    /// Each message is exactly the contract's JSON, and reads back.
    #[test]
    fn messages_are_the_contracts_json() {
        let job = Uuid::nil();
        let cases = [
            (
                ServerMessage::Started(ClippingStarted {
                    event_id: 1,
                    job_id: job,
                    at: at(),
                    status: Some(PipelineStatus::Downloading),
                    progress_percent: ProgressPercent::ZERO,
                    current_step: None,
                    message: "Your video is being processed".into(),
                }),
                json!({"type": "clipping.started", "eventId": 1, "jobId": job, "at": "2025-01-15T10:38:00Z",
                       "status": "downloading", "progressPercent": 0, "currentStep": null,
                       "message": "Your video is being processed"}),
            ),
            (
                ServerMessage::Progress(ClippingProgress {
                    event_id: 2,
                    job_id: job,
                    at: at(),
                    status: None,
                    progress_percent: ProgressPercent::new(29.5).unwrap(),
                    current_step: Some("Rendering".into()),
                    clips_completed: 1,
                    total_clips: 3,
                }),
                json!({"type": "clipping.progress", "eventId": 2, "jobId": job, "at": "2025-01-15T10:38:00Z",
                       "status": null, "progressPercent": 29.5, "currentStep": "Rendering",
                       "clipsCompleted": 1, "totalClips": 3}),
            ),
            (
                ServerMessage::Completed(ClippingCompleted {
                    event_id: 3,
                    job_id: job,
                    at: at(),
                    clip_count: 0,
                    clips: Some(vec![]),
                    clips_omitted: None,
                    message: "Your 0 clips are ready!".into(),
                }),
                json!({"type": "clipping.completed", "eventId": 3, "jobId": job, "at": "2025-01-15T10:38:00Z",
                       "clipCount": 0, "clips": [], "message": "Your 0 clips are ready!"}),
            ),
            (
                ServerMessage::Completed(ClippingCompleted {
                    event_id: 4,
                    job_id: job,
                    at: at(),
                    clip_count: 900,
                    clips: None,
                    clips_omitted: Some(true),
                    message: "Your 900 clips are ready!".into(),
                }),
                json!({"type": "clipping.completed", "eventId": 4, "jobId": job, "at": "2025-01-15T10:38:00Z",
                       "clipCount": 900, "clipsOmitted": true, "message": "Your 900 clips are ready!"}),
            ),
            (
                ServerMessage::Failed(ClippingFailed {
                    event_id: 5,
                    job_id: job,
                    at: at(),
                    error: None,
                    progress_percent: ProgressPercent::new(40.0).unwrap(),
                    message: "Video processing failed. Please try again.".into(),
                }),
                json!({"type": "clipping.failed", "eventId": 5, "jobId": job, "at": "2025-01-15T10:38:00Z",
                       "error": null, "progressPercent": 40,
                       "message": "Video processing failed. Please try again."}),
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(serde_json::to_value(&message).unwrap(), expected);
            let back: ServerMessage = serde_json::from_value(expected).unwrap();
            assert_eq!(back, message);
        }
    }
}
