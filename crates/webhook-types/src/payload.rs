//! The webhook body: what the worker sends to a `callback_url` at each step
//! of a job.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{ParseError, Timestamp, Validate};

/// Which moment of a job a webhook reports. Serialised as the original plan's names
/// (`job.started`, …), which also travel in the `X-Webhook-Event` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Event {
    /// The job left the queue: always the first event of a job.
    #[serde(rename = "job.started")]
    Started,
    /// A pipeline stage moved on.
    #[serde(rename = "job.progress")]
    Progress,
    /// The job finished with its clips: a terminal event.
    #[serde(rename = "job.completed")]
    Completed,
    /// The job stopped with an error: a terminal event.
    #[serde(rename = "job.failed")]
    Failed,
}

impl Event {
    /// Every event, in the order a job meets them.
    pub const ALL: [Event; 4] = [
        Event::Started,
        Event::Progress,
        Event::Completed,
        Event::Failed,
    ];

    /// The wire name, as in the `event` field and `X-Webhook-Event` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Started => "job.started",
            Event::Progress => "job.progress",
            Event::Completed => "job.completed",
            Event::Failed => "job.failed",
        }
    }

    /// Completed and failed end a job; nothing follows them.
    pub fn is_terminal(self) -> bool {
        matches!(self, Event::Completed | Event::Failed)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The pipeline stage a job is in, as the worker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PipelineStatus {
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

impl PipelineStatus {
    /// Every status, pipeline order first, then the two terminal ones.
    pub const ALL: [PipelineStatus; 8] = [
        PipelineStatus::Downloading,
        PipelineStatus::Transcribing,
        PipelineStatus::Planning,
        PipelineStatus::Detecting,
        PipelineStatus::Rendering,
        PipelineStatus::Uploading,
        PipelineStatus::Completed,
        PipelineStatus::Failed,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PipelineStatus::Downloading => "downloading",
            PipelineStatus::Transcribing => "transcribing",
            PipelineStatus::Planning => "planning",
            PipelineStatus::Detecting => "detecting",
            PipelineStatus::Rendering => "rendering",
            PipelineStatus::Uploading => "uploading",
            PipelineStatus::Completed => "completed",
            PipelineStatus::Failed => "failed",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Completed and failed are final.
    pub fn is_terminal(self) -> bool {
        matches!(self, PipelineStatus::Completed | PipelineStatus::Failed)
    }
}

impl fmt::Display for PipelineStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A percentage from 0 to 100 inclusive, finite.
///
/// Whole values are written as JSON integers (`15`, not `15.0`), so that the
/// original plan's examples serialise back to the same JSON.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct ProgressPercent(f64);

impl ProgressPercent {
    /// No progress yet.
    pub const ZERO: ProgressPercent = ProgressPercent(0.0);
    /// Done.
    pub const FULL: ProgressPercent = ProgressPercent(100.0);

    /// Returns `None` outside 0..=100 or for NaN.
    pub fn new(value: f64) -> Option<Self> {
        (value.is_finite() && (0.0..=100.0).contains(&value)).then_some(Self(value))
    }

    /// The value, 0 to 100.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl fmt::Display for ProgressPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for ProgressPercent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_number(self.0, s)
    }
}

impl<'de> Deserialize<'de> for ProgressPercent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Self::new(v).ok_or_else(|| {
            serde::de::Error::custom(format!("progress must be between 0 and 100, got {v}"))
        })
    }
}

/// How likely a clip is to do well, from 0 to 1 inclusive.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct ViralityScore(f64);

impl ViralityScore {
    /// Returns `None` outside 0..=1 or for NaN.
    pub fn new(value: f64) -> Option<Self> {
        (value.is_finite() && (0.0..=1.0).contains(&value)).then_some(Self(value))
    }

    /// The value, 0 to 1.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Serialize for ViralityScore {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_number(self.0, s)
    }
}

impl<'de> Deserialize<'de> for ViralityScore {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Self::new(v).ok_or_else(|| {
            serde::de::Error::custom(format!("virality score must be between 0 and 1, got {v}"))
        })
    }
}

/// Writes whole numbers as JSON integers and the rest as floats.
fn serialize_number<S: Serializer>(v: f64, s: S) -> Result<S::Ok, S::Error> {
    // 2^53: every whole f64 below it is exactly an integer.
    if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        s.serialize_i64(v as i64)
    } else {
        s.serialize_f64(v)
    }
}

/// A non-negative, finite number of seconds.
fn deserialize_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "seconds must be zero or more, got {v}"
        )))
    }
}

fn serialize_seconds<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    serialize_number(*v, s)
}

/// One clip the pipeline produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClipArtifact {
    /// Position in the job's output, from 0; unique within a job.
    pub clip_index: u32,
    /// Where the clip is stored (an S3 URL in production).
    pub s3_url: String,
    /// Length of the clip.
    pub duration_ms: u64,
    /// Where the clip starts in the source.
    pub start_time_ms: u64,
    /// Where the clip ends in the source; never before `start_time_ms`.
    pub end_time_ms: u64,
    /// How likely the clip is to do well.
    pub virality_score: ViralityScore,
    /// The framing chosen (`talking_head`, `screen_share`, …).
    #[cfg_attr(
        feature = "openapi",
        schema(examples("talking_head", "screen_share", "b_roll"))
    )]
    pub layout_type: String,
    /// One line on what the clip is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub summary: Option<String>,
    /// Topic tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub tags: Option<Vec<String>>,
}

/// Everything a finished job produced, sent with `job.completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobOutput {
    /// The worker's id of the job.
    pub job_id: String,
    /// The video the clips were cut from.
    pub source_video_url: String,
    /// Its title.
    pub source_video_title: String,
    /// Its length.
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    #[serde(
        serialize_with = "serialize_seconds",
        deserialize_with = "deserialize_seconds"
    )]
    pub source_video_duration_seconds: f64,
    /// How many clips were made. The original plan's own example lists fewer clips
    /// than this, so it is not checked against `clips.len()`.
    pub total_clips: u32,
    /// The clips, by `clip_index`.
    pub clips: Vec<ClipArtifact>,
    /// Where the transcript is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub transcript_url: Option<String>,
    /// Where the clip plan is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub plan_url: Option<String>,
    /// Wall time the pipeline took.
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    #[serde(
        serialize_with = "serialize_seconds",
        deserialize_with = "deserialize_seconds"
    )]
    pub processing_time_seconds: f64,
    /// When the output was produced.
    pub created_at: Timestamp,
}

impl Validate for JobOutput {
    fn validate(&self) -> Result<(), ParseError> {
        validate_output(self, "output")
    }
}

fn validate_output(output: &JobOutput, at: &str) -> Result<(), ParseError> {
    let mut seen = std::collections::HashSet::new();
    for (i, clip) in output.clips.iter().enumerate() {
        let path = format!("{at}.clips[{i}]");
        if clip.end_time_ms < clip.start_time_ms {
            return Err(ParseError::invalid(
                format!("{path}.end_time_ms"),
                format!(
                    "end_time_ms ({}) is before start_time_ms ({})",
                    clip.end_time_ms, clip.start_time_ms
                ),
            ));
        }
        if !seen.insert(clip.clip_index) {
            return Err(ParseError::invalid(
                format!("{path}.clip_index"),
                format!("clip_index {} appears twice", clip.clip_index),
            ));
        }
    }
    Ok(())
}

/// The body of every webhook: the original plan's `WebhookPayload` plus `sequence`.
///
/// Optional fields are omitted when absent, never written as `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookPayload {
    /// Which moment of the job this reports.
    pub event: Event,
    /// When the worker emitted the event (not when it was delivered).
    pub timestamp: Timestamp,
    /// The worker's id of the job.
    pub job_id: String,
    /// The submitter's own id of the job, echoed back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub external_job_id: Option<String>,
    /// The user the submitter acted for, echoed back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub owner_user_id: Option<String>,
    /// The pipeline stage.
    pub status: PipelineStatus,
    /// Overall progress; never decreases within a job.
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
    /// Why the job failed; present on `job.failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub error: Option<String>,
    /// The result; present on `job.completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub output: Option<JobOutput>,
    /// Per job, 1 for `job.started` and strictly increasing in the order the
    /// worker emitted events, so a receiver can tell a late retry from news.
    ///
    /// Optional on input only so that senders which predate it (the original plan's
    /// examples) still parse; this project's worker always sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, minimum = 1))]
    pub sequence: Option<u64>,
}

impl Validate for WebhookPayload {
    fn validate(&self) -> Result<(), ParseError> {
        let expected = match self.event {
            Event::Completed => Some(PipelineStatus::Completed),
            Event::Failed => Some(PipelineStatus::Failed),
            Event::Started | Event::Progress => None,
        };
        match expected {
            Some(status) if self.status != status => {
                return Err(ParseError::invalid(
                    "status",
                    format!(
                        "{} must carry status {status}, not {}",
                        self.event, self.status
                    ),
                ));
            }
            None if self.status.is_terminal() => {
                return Err(ParseError::invalid(
                    "status",
                    format!(
                        "{} cannot carry the terminal status {}",
                        self.event, self.status
                    ),
                ));
            }
            _ => {}
        }
        if self.event == Event::Completed {
            if self.output.is_none() {
                return Err(ParseError::invalid(
                    "output",
                    "job.completed must carry output",
                ));
            }
            if self.progress_percent != ProgressPercent::FULL {
                return Err(ParseError::invalid(
                    "progress_percent",
                    "job.completed must carry progress 100",
                ));
            }
        }
        if self.event == Event::Failed && self.error.is_none() {
            return Err(ParseError::invalid(
                "error",
                "job.failed must carry an error",
            ));
        }
        if self.job_id.is_empty() {
            return Err(ParseError::invalid("job_id", "job_id must not be empty"));
        }
        if self.sequence == Some(0) {
            return Err(ParseError::invalid("sequence", "sequence starts at 1"));
        }
        if let (Some(done), Some(total)) = (self.clips_completed, self.total_clips)
            && done > total
        {
            return Err(ParseError::invalid(
                "clips_completed",
                format!("clips_completed ({done}) exceeds total_clips ({total})"),
            ));
        }
        if let Some(output) = &self.output {
            validate_output(output, "output")?;
        }
        Ok(())
    }
}
