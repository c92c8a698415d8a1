//! Pipeline engines: what turns a video into clips.
//!
//! An engine runs the original plan's stages (downloading, transcribing, planning,
//! detecting, rendering each clip, uploading) and reports each through the
//! job's [`ProgressHandle`]. It does not emit events itself: `job.started`
//! and the terminal event are the runner's, and the reporter decides what
//! each report becomes (see [`crate::reporter`]). An engine only returns the
//! output, or the error of the stage that failed.

pub mod ffmpeg;
pub mod simulated;

use std::fmt;

use futures_util::future::BoxFuture;
use url::Url;
use webhook_types::{ClippingJobRequest, JobOutput, PipelineStatus};

use crate::reporter::ProgressHandle;

/// What an engine gets to work on.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The worker's id of the job.
    pub job_id: String,
    /// The user the submitter acted for, if given (used in storage paths).
    pub owner_user_id: Option<String>,
    /// The accepted request.
    pub request: ClippingJobRequest,
}

/// A stage failed; the job fails with `message` as its error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct StageError {
    /// The stage that failed.
    pub stage: PipelineStatus,
    /// The error for the job's `job.failed` event, e.g. "Failed to download
    /// video: Video is unavailable or private".
    pub message: String,
}

/// A pipeline engine.
pub trait Engine: Send + Sync + fmt::Debug + 'static {
    /// The engine's name, as `--engine` spells it.
    fn name(&self) -> &'static str;

    /// Whether the engine can work on `video_url`: its scheme is one the
    /// engine fetches (`file://` only for engines that read local files).
    /// The error is shown to the submitter (422, field `video_url`).
    fn check_video_url(&self, video_url: &Url) -> Result<(), String>;

    /// Runs the pipeline, reporting progress through `progress`.
    fn run<'a>(
        &'a self,
        job: &'a JobSpec,
        progress: &'a ProgressHandle,
    ) -> BoxFuture<'a, Result<JobOutput, StageError>>;
}
