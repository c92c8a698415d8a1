//! The job request a submitter sends to the worker's `POST /ai-clipping/jobs`.

use serde::{Deserialize, Serialize};

use crate::{ParseError, Validate};

/// What to clip and how, with the original plan's defaults for everything optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClippingJobRequest {
    /// The source video. Its scheme is checked by the worker, which knows
    /// what its engine can fetch.
    pub video_url: String,
    /// A job id chosen by the submitter; the worker makes one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub job_id: Option<String>,
    /// The submitter's own id; submitting the same one again returns the
    /// existing job instead of starting a second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub external_job_id: Option<String>,
    /// The user the submitter acts for; echoed in every webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub owner_user_id: Option<String>,
    /// How many clips to make, 1 to 20.
    #[serde(default = "default_max_clips")]
    #[cfg_attr(feature = "openapi", schema(default = 5, minimum = 1, maximum = 20))]
    pub max_clips: u32,
    /// Shortest clip, in seconds (5 to 600).
    #[serde(default = "default_min_clip")]
    #[cfg_attr(feature = "openapi", schema(default = 15, minimum = 5, maximum = 600))]
    pub min_clip_duration_seconds: u32,
    /// Longest clip, in seconds (5 to 600, at least the minimum).
    #[serde(default = "default_max_clip")]
    #[cfg_attr(feature = "openapi", schema(default = 90, minimum = 5, maximum = 600))]
    pub max_clip_duration_seconds: u32,
    /// Preferred duration buckets, such as `"15-30"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub duration_ranges: Option<Vec<String>>,
    /// Where the clips will be posted.
    #[serde(default = "default_platform")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            default = "tiktok",
            examples("tiktok", "instagram_reels", "youtube_shorts", "youtube")
        )
    )]
    pub target_platform: String,
    /// Whether to burn in captions.
    #[serde(default = "default_true")]
    #[cfg_attr(feature = "openapi", schema(default = true))]
    pub include_captions: bool,
    /// Caption styling, passed through to the engine untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub caption_style: Option<serde_json::Value>,
    /// Where webhooks for this job go; none means no webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub callback_url: Option<String>,
}

fn default_max_clips() -> u32 {
    5
}
fn default_min_clip() -> u32 {
    15
}
fn default_max_clip() -> u32 {
    90
}
fn default_platform() -> String {
    "tiktok".to_owned()
}
fn default_true() -> bool {
    true
}

/// The bounds the contract puts on a request, in one place.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits;

impl RequestLimits {
    /// Fewest clips a job may ask for.
    pub const MIN_CLIPS: u32 = 1;
    /// Most clips a job may ask for.
    pub const MAX_CLIPS: u32 = 20;
    /// Shortest allowed clip bound, seconds.
    pub const MIN_CLIP_SECONDS: u32 = 5;
    /// Longest allowed clip bound, seconds.
    pub const MAX_CLIP_SECONDS: u32 = 600;
    /// Longest id or URL we accept, so that nothing unbounded reaches storage.
    pub const MAX_TEXT_LEN: usize = 2048;
}

impl ClippingJobRequest {
    /// A request for `video_url` with every default of the original plan.
    pub fn new(video_url: impl Into<String>) -> Self {
        Self {
            video_url: video_url.into(),
            job_id: None,
            external_job_id: None,
            owner_user_id: None,
            max_clips: default_max_clips(),
            min_clip_duration_seconds: default_min_clip(),
            max_clip_duration_seconds: default_max_clip(),
            duration_ranges: None,
            target_platform: default_platform(),
            include_captions: true,
            caption_style: None,
            callback_url: None,
        }
    }
}

impl Validate for ClippingJobRequest {
    fn validate(&self) -> Result<(), ParseError> {
        let url = url::Url::parse(&self.video_url)
            .map_err(|e| ParseError::invalid("video_url", format!("not a URL ({e})")))?;
        if url.host_str().is_none() && url.scheme() != "file" {
            return Err(ParseError::invalid("video_url", "the URL has no host"));
        }
        if let Some(cb) = &self.callback_url {
            let u = url::Url::parse(cb)
                .map_err(|e| ParseError::invalid("callback_url", format!("not a URL ({e})")))?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                return Err(ParseError::invalid(
                    "callback_url",
                    "callback_url must be an http or https URL with a host",
                ));
            }
        }
        for (field, value) in [
            ("video_url", Some(&self.video_url)),
            ("callback_url", self.callback_url.as_ref()),
            ("job_id", self.job_id.as_ref()),
            ("external_job_id", self.external_job_id.as_ref()),
            ("owner_user_id", self.owner_user_id.as_ref()),
            ("target_platform", Some(&self.target_platform)),
        ] {
            if let Some(v) = value {
                if v.len() > RequestLimits::MAX_TEXT_LEN {
                    return Err(ParseError::invalid(
                        field,
                        format!("longer than {} bytes", RequestLimits::MAX_TEXT_LEN),
                    ));
                }
                if field != "video_url" && field != "callback_url" && v.is_empty() {
                    return Err(ParseError::invalid(field, "must not be empty"));
                }
            }
        }
        if !(RequestLimits::MIN_CLIPS..=RequestLimits::MAX_CLIPS).contains(&self.max_clips) {
            return Err(ParseError::invalid(
                "max_clips",
                format!(
                    "max_clips must be {} to {}, got {}",
                    RequestLimits::MIN_CLIPS,
                    RequestLimits::MAX_CLIPS,
                    self.max_clips
                ),
            ));
        }
        let bounds = RequestLimits::MIN_CLIP_SECONDS..=RequestLimits::MAX_CLIP_SECONDS;
        for (field, v) in [
            ("min_clip_duration_seconds", self.min_clip_duration_seconds),
            ("max_clip_duration_seconds", self.max_clip_duration_seconds),
        ] {
            if !bounds.contains(&v) {
                return Err(ParseError::invalid(
                    field,
                    format!(
                        "{field} must be {} to {} seconds, got {v}",
                        RequestLimits::MIN_CLIP_SECONDS,
                        RequestLimits::MAX_CLIP_SECONDS
                    ),
                ));
            }
        }
        if self.min_clip_duration_seconds > self.max_clip_duration_seconds {
            return Err(ParseError::invalid(
                "min_clip_duration_seconds",
                "min_clip_duration_seconds is above max_clip_duration_seconds",
            ));
        }
        Ok(())
    }
}
