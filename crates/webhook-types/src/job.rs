//! The worker's view of a job: its acceptance answer and `GET` body.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{JobOutput, ParseError, PipelineStatus, ProgressPercent, Timestamp, Validate};

/// Where a job stands at the worker: waiting in the queue, or in a pipeline
/// status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum JobState {
    /// Accepted, waiting for a free slot.
    Queued,
    /// Fetching the source video.
    Downloading,
    /// Turning speech into text.
    Transcribing,
    /// Choosing the moments worth clipping.
    Planning,
    /// Finding faces, screens and layouts.
    Detecting,
    /// Cutting and encoding the clips.
    Rendering,
    /// Storing the clips.
    Uploading,
    /// Done, with output.
    Completed,
    /// Stopped, with an error.
    Failed,
}

impl JobState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Downloading => "downloading",
            JobState::Transcribing => "transcribing",
            JobState::Planning => "planning",
            JobState::Detecting => "detecting",
            JobState::Rendering => "rendering",
            JobState::Uploading => "uploading",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        if s == "queued" {
            return Some(JobState::Queued);
        }
        PipelineStatus::parse(s).map(Self::from)
    }

    /// The pipeline status, or `None` while queued.
    pub fn pipeline_status(self) -> Option<PipelineStatus> {
        Some(match self {
            JobState::Queued => return None,
            JobState::Downloading => PipelineStatus::Downloading,
            JobState::Transcribing => PipelineStatus::Transcribing,
            JobState::Planning => PipelineStatus::Planning,
            JobState::Detecting => PipelineStatus::Detecting,
            JobState::Rendering => PipelineStatus::Rendering,
            JobState::Uploading => PipelineStatus::Uploading,
            JobState::Completed => PipelineStatus::Completed,
            JobState::Failed => PipelineStatus::Failed,
        })
    }

    /// Completed and failed are final.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Completed | JobState::Failed)
    }
}

impl From<PipelineStatus> for JobState {
    fn from(s: PipelineStatus) -> Self {
        match s {
            PipelineStatus::Downloading => JobState::Downloading,
            PipelineStatus::Transcribing => JobState::Transcribing,
            PipelineStatus::Planning => JobState::Planning,
            PipelineStatus::Detecting => JobState::Detecting,
            PipelineStatus::Rendering => JobState::Rendering,
            PipelineStatus::Uploading => JobState::Uploading,
            PipelineStatus::Completed => JobState::Completed,
            PipelineStatus::Failed => JobState::Failed,
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to a job submission: `202 {"job_id": "...", "status": "queued"}`.
/// A repeated `external_job_id` answers with the existing job's id and state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobAccepted {
    /// The worker's id of the job.
    pub job_id: String,
    /// Its state now.
    pub status: JobState,
}

impl Validate for JobAccepted {
    fn validate(&self) -> Result<(), ParseError> {
        if self.job_id.is_empty() {
            return Err(ParseError::invalid("job_id", "job_id must not be empty"));
        }
        Ok(())
    }
}

/// A job as `GET /ai-clipping/jobs/{job_id}` shows it: the polling fallback,
/// and what the API's reconciler reads when webhooks have gone quiet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobView {
    /// The worker's id of the job.
    pub job_id: String,
    /// The submitter's id, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub external_job_id: Option<String>,
    /// The user the submitter acted for, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub owner_user_id: Option<String>,
    /// Where the job stands.
    pub status: JobState,
    /// Overall progress.
    pub progress_percent: ProgressPercent,
    /// Human-readable description of the step.
    pub current_step: String,
    /// Clips rendered so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub clips_completed: Option<u32>,
    /// Clips the job will produce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub total_clips: Option<u32>,
    /// Why the job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub error: Option<String>,
    /// The result, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub output: Option<JobOutput>,
    /// When the worker accepted the job.
    pub created_at: Timestamp,
    /// When the job last changed.
    pub updated_at: Timestamp,
}

impl Validate for JobView {
    fn validate(&self) -> Result<(), ParseError> {
        if let Some(output) = &self.output {
            output.validate()?;
        }
        Ok(())
    }
}
