//! The simulated engine: for demos, tests and load tests only.
//!
//! It fetches nothing and renders nothing. Each stage sleeps `--sim-stage-ms`
//! (each clip of the rendering stage too) and the output is made up but
//! complete and plausible: `max_clips` clips with S3 URLs of the original plan's form.
//! Any http(s) video URL is accepted; so is `sim://<anything>`, whose query
//! can steer it:
//!
//! - `fail_at=<stage>` fails at that stage (`downloading`, `transcribing`,
//!   `planning`, `detecting`, `rendering`, `uploading`) with that stage's
//!   error, e.g. "Failed to download video: Video is unavailable or private";
//! - `stage_ms=<n>` overrides the stage time for this job.
//!
//! It reads no local files, so `file://` URLs are refused.

use std::time::Duration;

use futures_util::future::BoxFuture;
use url::Url;
use webhook_types::{ClipArtifact, JobOutput, PipelineStatus, Timestamp, ViralityScore};

use super::{Engine, JobSpec, StageError};
use crate::reporter::{ProgressHandle, StepReport};

/// The S3 bucket the made-up clips "live" in.
const BUCKET_URL: &str = "https://viewcreator-media.s3.amazonaws.com";

/// The simulated engine.
#[derive(Debug, Clone)]
pub struct SimulatedEngine {
    /// How long each stage takes.
    pub stage: Duration,
}

/// What a `sim://` URL asks for.
#[derive(Debug, Default, Clone, PartialEq)]
struct SimOptions {
    fail_at: Option<PipelineStatus>,
    stage_ms: Option<u64>,
}

fn sim_options(url: &Url) -> Result<SimOptions, String> {
    let mut opts = SimOptions::default();
    if url.scheme() != "sim" {
        return Ok(opts);
    }
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "fail_at" => {
                let stage = PipelineStatus::parse(&v)
                    .filter(|s| !s.is_terminal())
                    .ok_or_else(|| {
                        let stages: Vec<String> = PipelineStatus::ALL
                            .iter()
                            .filter(|s| !s.is_terminal())
                            .map(ToString::to_string)
                            .collect();
                        format!(
                            "fail_at={v} is not a pipeline stage (one of {})",
                            stages.join(", ")
                        )
                    })?;
                opts.fail_at = Some(stage);
            }
            "stage_ms" => {
                opts.stage_ms = Some(
                    v.parse()
                        .map_err(|_| format!("stage_ms={v} is not a number"))?,
                );
            }
            other => return Err(format!("unknown sim:// option {other}")),
        }
    }
    Ok(opts)
}

/// The error each stage fails with.
fn stage_error(stage: PipelineStatus, clip: Option<(u32, u32)>) -> StageError {
    let message = match stage {
        PipelineStatus::Downloading => {
            "Failed to download video: Video is unavailable or private".to_owned()
        }
        PipelineStatus::Transcribing => "Failed to transcribe audio: no speech detected".to_owned(),
        PipelineStatus::Planning => "Failed to plan clips: no segment long enough".to_owned(),
        PipelineStatus::Detecting => {
            "Failed to detect layout: no faces or screens found".to_owned()
        }
        PipelineStatus::Rendering => {
            let (i, n) = clip.unwrap_or((1, 1));
            format!("Failed to render clip {i}/{n}: encoder error")
        }
        PipelineStatus::Uploading => "Failed to upload clips: storage unavailable".to_owned(),
        PipelineStatus::Completed | PipelineStatus::Failed => "Pipeline error".to_owned(),
    };
    StageError { stage, message }
}

impl Engine for SimulatedEngine {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn check_video_url(&self, url: &Url) -> Result<(), String> {
        match url.scheme() {
            "http" | "https" => Ok(()),
            "sim" => sim_options(url).map(|_| ()),
            "file" => Err("the simulated engine does not read local files".to_owned()),
            other => Err(format!("video_url must be http(s), not {other}")),
        }
    }

    fn run<'a>(
        &'a self,
        job: &'a JobSpec,
        progress: &'a ProgressHandle,
    ) -> BoxFuture<'a, Result<JobOutput, StageError>> {
        Box::pin(async move {
            let began = tokio::time::Instant::now();
            let url = Url::parse(&job.request.video_url).ok();
            let opts = url
                .as_ref()
                .and_then(|u| sim_options(u).ok())
                .unwrap_or_default();
            let stage = opts
                .stage_ms
                .map(Duration::from_millis)
                .unwrap_or(self.stage);
            let n = job.request.max_clips.max(1);
            let fail = |s: PipelineStatus| opts.fail_at == Some(s);

            let steps = [
                (PipelineStatus::Downloading, 5.0, "Downloading video..."),
                (
                    PipelineStatus::Transcribing,
                    15.0,
                    "Transcribing audio with Whisper...",
                ),
                (PipelineStatus::Planning, 30.0, "Planning clips with AI..."),
                (
                    PipelineStatus::Detecting,
                    40.0,
                    "Detecting faces and layouts...",
                ),
            ];
            for (status, pct, step) in steps {
                progress.report(StepReport::new(status, pct, step));
                tokio::time::sleep(stage).await;
                if fail(status) {
                    return Err(stage_error(status, None));
                }
            }
            for i in 0..n {
                let pct = 50.0 + 40.0 * f64::from(i) / f64::from(n);
                progress.report(
                    StepReport::new(
                        PipelineStatus::Rendering,
                        pct.round(),
                        format!("Rendering clip {}/{n}...", i + 1),
                    )
                    .with_clips(i, n),
                );
                tokio::time::sleep(stage).await;
                if fail(PipelineStatus::Rendering) {
                    return Err(stage_error(PipelineStatus::Rendering, Some((i + 1, n))));
                }
            }
            progress.report(
                StepReport::new(PipelineStatus::Uploading, 95.0, "Uploading clips...")
                    .with_clips(n, n),
            );
            tokio::time::sleep(stage).await;
            if fail(PipelineStatus::Uploading) {
                return Err(stage_error(PipelineStatus::Uploading, None));
            }
            Ok(make_output(job, began.elapsed()))
        })
    }
}

/// A complete, plausible output of `max_clips` clips.
fn make_output(job: &JobSpec, took: Duration) -> JobOutput {
    let req = &job.request;
    let owner = job.owner_user_id.as_deref().unwrap_or("anonymous");
    let prefix = format!("{BUCKET_URL}/clips/{owner}/{}", job.job_id);
    let n = req.max_clips.max(1);
    let min = u64::from(req.min_clip_duration_seconds) * 1000;
    let max = u64::from(req.max_clip_duration_seconds) * 1000;
    const LAYOUTS: [&str; 3] = ["talking_head", "screen_share", "split_screen"];
    const TOPICS: [[&str; 3]; 4] = [
        ["business", "pricing", "strategy"],
        ["story", "customers", "success"],
        ["product", "demo", "tips"],
        ["growth", "marketing", "lessons"],
    ];
    let mut start = 60_000u64;
    let clips: Vec<ClipArtifact> = (0..n)
        .map(|i| {
            // Spread the lengths over the allowed range, deterministically.
            let span = max - min;
            let duration = min + span * u64::from((i * 7 + 3) % 10) / 10;
            let clip = ClipArtifact {
                clip_index: i,
                s3_url: format!("{prefix}/clip_{i:02}.mp4"),
                duration_ms: duration,
                start_time_ms: start,
                end_time_ms: start + duration,
                virality_score: ViralityScore::new(0.95 - 0.03 * f64::from(i)).unwrap_or_default(),
                layout_type: LAYOUTS[i as usize % LAYOUTS.len()].to_owned(),
                summary: Some(format!("Highlight {} of the video", i + 1)),
                tags: Some(
                    TOPICS[i as usize % TOPICS.len()]
                        .iter()
                        .map(|s| (*s).to_owned())
                        .collect(),
                ),
            };
            start += duration + 45_000;
            clip
        })
        .collect();
    JobOutput {
        job_id: job.job_id.clone(),
        source_video_url: req.video_url.clone(),
        source_video_title: "Simulated source video".to_owned(),
        source_video_duration_seconds: (start as f64 / 1000.0 + 120.0).round(),
        total_clips: n,
        clips,
        transcript_url: Some(format!("{prefix}/transcript.json")),
        plan_url: Some(format!("{prefix}/plan.json")),
        processing_time_seconds: (took.as_secs_f64() * 10.0).round() / 10.0,
        created_at: Timestamp::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webhook_types::{ClippingJobRequest, Validate as _};

    #[test]
    fn output_is_complete_and_valid() {
        let mut request = ClippingJobRequest::new("https://youtube.com/watch?v=x");
        request.max_clips = 20;
        let job = JobSpec {
            job_id: "job-1".into(),
            owner_user_id: Some("user_789".into()),
            request,
        };
        let out = make_output(&job, Duration::from_millis(1234));
        assert_eq!(out.clips.len(), 20);
        assert_eq!(out.total_clips, 20);
        assert_eq!(
            out.clips[0].s3_url,
            "https://viewcreator-media.s3.amazonaws.com/clips/user_789/job-1/clip_00.mp4"
        );
        for c in &out.clips {
            assert!(c.duration_ms >= 15_000 && c.duration_ms <= 90_000);
            assert_eq!(c.end_time_ms - c.start_time_ms, c.duration_ms);
        }
        out.validate().unwrap();
        let json = serde_json::to_string(&out).unwrap();
        assert!(!json.contains("null"), "{json}");
    }

    #[test]
    fn sim_urls_steer_the_engine() {
        let e = SimulatedEngine {
            stage: Duration::ZERO,
        };
        let ok = |s: &str| e.check_video_url(&Url::parse(s).unwrap());
        assert!(ok("https://youtube.com/watch?v=1").is_ok());
        assert!(ok("sim://video?fail_at=rendering").is_ok());
        assert!(ok("sim://video?fail_at=completed").is_err());
        assert_eq!(
            ok("sim://video?fail_at=bogus").unwrap_err(),
            "fail_at=bogus is not a pipeline stage (one of downloading, transcribing, planning, detecting, rendering, uploading)"
        );
        assert!(ok("sim://video?bogus=1").is_err());
        assert!(ok("file:///tmp/x.mp4").is_err());
        assert!(ok("ftp://host/x").is_err());
        assert_eq!(
            sim_options(&Url::parse("sim://v?fail_at=downloading&stage_ms=5").unwrap()).unwrap(),
            SimOptions {
                fail_at: Some(PipelineStatus::Downloading),
                stage_ms: Some(5)
            }
        );
    }
}
