//! The ffmpeg engine: real clips from a real video, stage by stage.
//!
//! | stage (status) | what happens | progress |
//! |---|---|---|
//! | downloading | [`fetch`]: the source into the job's work directory; then `ffprobe` ([`probe`]): length, streams, title; a file with no video stream fails here | 1–9 % (by bytes when the size is known) |
//! | transcribing | with `--transcriber-cmd`: the audio as 16 kHz WAV, the command, its output read into `transcript.json` ([`transcript`]); without, or with no audio, skipped | 10–19 % |
//! | planning | one decoding pass ([`analysis`]) for loudness, silences, scene cuts and small frames; then [`plan`] picks the windows | 20–34 % |
//! | detecting | [`layout`] per clip, from the small frames | 35 % |
//! | rendering | [`render`]: each clip cut, framed, captioned and encoded, and its poster frame taken; "Rendering clip 3/5..." | 40–90 % |
//! | uploading | clips, posters, `transcript.json` and `plan.json` to the object store ([`crate::storage`]) | 91–99 % |
//!
//! Each tool runs as a child process with a time limit and is killed if the
//! job is dropped (shutdown); at most one decoding or encoding `ffmpeg` per
//! core runs at once across all jobs (a semaphore). The work directory is
//! removed when the run ends, however it ends; a failed job's partial
//! uploads are removed from the store.
//!
//! Stored objects, under `clips/{owner}/{job_id}/`: `clip_NN.mp4`, its
//! poster `clip_NN.jpg` (the clip's URL with `.jpg` for `.mp4`: the web page
//! shows it before the video loads), `plan.json` (the plan: every clip's
//! window, score and its parts, layout and picture statistics, and the
//! signals' summary) and, with a transcript, `transcript.json`.

pub mod analysis;
pub mod fetch;
pub mod layout;
pub mod plan;
pub mod probe;
pub mod process;
pub mod render;
pub mod transcript;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::Semaphore;
use url::Url;
use webhook_types::{ClipArtifact, JobOutput, PipelineStatus, Timestamp, ViralityScore};

use self::fetch::FetchConfig;
use self::layout::{Layout, PictureStats};
use self::plan::{PlanRequest, PlannedClip};
use self::process::{ToolCommand, ToolRunner};
use self::transcript::Transcript;
use super::{Engine, JobSpec, StageError};
use crate::reporter::{ProgressHandle, StepReport};
use crate::storage::MediaStore;

/// How the engine is set up (from `serve`'s flags).
#[derive(Debug, Clone)]
pub struct FfmpegConfig {
    /// The `ffmpeg` program.
    pub ffmpeg: PathBuf,
    /// The `ffprobe` program.
    pub ffprobe: PathBuf,
    /// `--transcriber-cmd`.
    pub transcriber_cmd: Option<String>,
    /// Download rules.
    pub fetch: FetchConfig,
    /// Longest any one tool may run.
    pub tool_timeout: Duration,
    /// The x264 preset.
    pub preset: String,
    /// Where job work directories are made.
    pub work_root: PathBuf,
    /// Most decoding or encoding `ffmpeg` runs at once.
    pub encoders: usize,
}

/// The ffmpeg engine.
#[derive(Debug)]
pub struct FfmpegEngine {
    config: FfmpegConfig,
    client: reqwest::Client,
    media: MediaStore,
    encoders: Arc<Semaphore>,
    tools: ToolRunner,
}

/// Why the engine cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EngineSetupError {
    /// A required program is missing.
    #[error(
        "--engine ffmpeg needs `{program}`, which could not be run ({reason}); install FFmpeg (Debian and Ubuntu: apt-get install ffmpeg) or use --engine simulated"
    )]
    Missing {
        /// The program.
        program: String,
        /// Why it could not run.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the download client: {0}")]
    Client(#[from] reqwest::Error),
    /// The work directory could not be prepared.
    #[error("cannot prepare the work directory {path}: {source}")]
    WorkDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl FfmpegEngine {
    /// Checks that the tools run, clears work directories a crash left
    /// behind, and builds the engine.
    pub async fn new(config: FfmpegConfig, media: MediaStore) -> Result<Self, EngineSetupError> {
        Self::with_runner(config, media, ToolRunner::default()).await
    }

    /// As [`FfmpegEngine::new`], with a runner that may record commands.
    pub async fn with_runner(
        config: FfmpegConfig,
        media: MediaStore,
        tools: ToolRunner,
    ) -> Result<Self, EngineSetupError> {
        for program in [&config.ffmpeg, &config.ffprobe] {
            check_runs(program).await?;
        }
        if config.work_root.exists() {
            // Jobs a crash interrupted are failed at start, never resumed:
            // nothing in here is needed any more.
            tokio::fs::remove_dir_all(&config.work_root)
                .await
                .map_err(|source| EngineSetupError::WorkDir {
                    path: config.work_root.clone(),
                    source,
                })?;
        }
        tokio::fs::create_dir_all(&config.work_root)
            .await
            .map_err(|source| EngineSetupError::WorkDir {
                path: config.work_root.clone(),
                source,
            })?;
        // Tools run inside the work directory, so every path handed to them
        // must not depend on the worker's own current directory.
        let mut config = config;
        config.work_root = tokio::fs::canonicalize(&config.work_root)
            .await
            .map_err(|source| EngineSetupError::WorkDir {
                path: config.work_root.clone(),
                source,
            })?;
        let client = fetch::build_client(config.fetch.policy.clone())?;
        Ok(FfmpegEngine {
            encoders: Arc::new(Semaphore::new(config.encoders.max(1))),
            config,
            client,
            media,
            tools,
        })
    }
}

async fn check_runs(program: &Path) -> Result<(), EngineSetupError> {
    let dir = std::env::temp_dir();
    let cmd = ToolCommand::new(program, &dir, Duration::from_secs(20)).arg("-version");
    ToolRunner::default()
        .output(&cmd)
        .await
        .map(|_| ())
        .map_err(|e| EngineSetupError::Missing {
            program: program.display().to_string(),
            reason: e.to_string(),
        })
}

/// The job's work directory, removed when dropped, however the run ends.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.0.display(), error = %e, "could not remove a work directory");
        }
    }
}

/// A storage key segment ([`crate::storage::key_segment`]) short enough to
/// be a directory name too: ids may be up to 2 KiB long.
fn safe_segment(s: &str) -> String {
    let mut segment = crate::storage::key_segment(s);
    segment.truncate(128); // ASCII only, so any byte is a char boundary
    segment
}

fn fail(stage: PipelineStatus, what: &str, reason: impl std::fmt::Display) -> StageError {
    StageError {
        stage,
        message: format!("{what}: {reason}"),
    }
}

const DOWNLOAD: &str = "Failed to download video";
const TRANSCRIBE: &str = "Failed to transcribe audio";
const PLAN: &str = "Failed to plan clips";
const UPLOAD: &str = "Failed to upload clips";

/// One clip on its way through rendering and upload.
#[derive(Debug, Clone, Serialize)]
struct ClipWork {
    index: u32,
    #[serde(flatten)]
    planned: PlannedClip,
    layout: Layout,
    picture: PictureStats,
    #[serde(skip)]
    video: String,
    #[serde(skip)]
    poster: String,
    #[serde(skip)]
    captions: Option<String>,
}

/// What `plan.json` holds.
#[derive(Debug, Serialize)]
struct PlanDocument<'a> {
    job_id: &'a str,
    source_video_url: &'a str,
    source_duration_seconds: f64,
    transcript_available: bool,
    silences: usize,
    scene_cuts: &'a [f64],
    request: PlanRequestDoc,
    clips: &'a [ClipWork],
}

#[derive(Debug, Serialize)]
struct PlanRequestDoc {
    max_clips: u32,
    min_seconds: f64,
    max_seconds: f64,
    ranges: Vec<(f64, f64)>,
    target_platform: String,
    include_captions: bool,
}

/// Reports progress within a stage's share of the bar.
fn report(progress: &ProgressHandle, status: PipelineStatus, pct: f64, step: impl Into<String>) {
    progress.report(StepReport::new(status, pct.clamp(0.0, 99.0).floor(), step));
}

impl FfmpegEngine {
    async fn run_job(
        &self,
        job: &JobSpec,
        progress: &ProgressHandle,
    ) -> Result<JobOutput, StageError> {
        let began = Instant::now();
        let work_path = self.config.work_root.join(safe_segment(&job.job_id));
        let _ = tokio::fs::remove_dir_all(&work_path).await;
        tokio::fs::create_dir_all(&work_path).await.map_err(|e| {
            fail(
                PipelineStatus::Downloading,
                DOWNLOAD,
                format!("cannot make a work directory: {e}"),
            )
        })?;
        let work = WorkDir(work_path);
        let dir = work.0.as_path();
        let request = &job.request;

        // Downloading, then probing.
        report(
            progress,
            PipelineStatus::Downloading,
            1.0,
            "Downloading video...",
        );
        let url = Url::parse(&request.video_url)
            .map_err(|e| fail(PipelineStatus::Downloading, DOWNLOAD, e))?;
        let fetched = fetch::fetch(
            &self.config.fetch,
            &self.client,
            &self.tools,
            &url,
            dir,
            |done, total| {
                if let Some(total) = total.filter(|t| *t > 0) {
                    let share = done as f64 / total as f64;
                    report(
                        progress,
                        PipelineStatus::Downloading,
                        1.0 + 7.0 * share,
                        format!("Downloading video... {}%", (share * 100.0).floor()),
                    );
                }
            },
        )
        .await
        .map_err(|e| fail(PipelineStatus::Downloading, DOWNLOAD, e))?;
        report(
            progress,
            PipelineStatus::Downloading,
            9.0,
            "Checking the video...",
        );
        let probe_cmd = ToolCommand::new(&self.config.ffprobe, dir, self.config.tool_timeout)
            .args(probe::probe_args(&fetched.path));
        let probed = self.tools.output(&probe_cmd).await.map_err(|e| {
            fail(
                PipelineStatus::Downloading,
                DOWNLOAD,
                format!("the file is not a video that can be read ({e})"),
            )
        })?;
        let info = probe::parse_probe(&probed, &fetched.file_name).map_err(|e| {
            fail(
                PipelineStatus::Downloading,
                DOWNLOAD,
                format!("the file is not a usable video: {e}"),
            )
        })?;
        let input = fetched.path.to_string_lossy().into_owned();
        tracing::info!(job_id = %job.job_id, duration_s = info.duration_seconds, width = info.width, height = info.height, audio = info.has_audio, "source probed");

        // Transcribing.
        let transcript = self
            .transcribe(job, progress, dir, &input, info.has_audio)
            .await?;

        // Planning.
        report(
            progress,
            PipelineStatus::Planning,
            20.0,
            "Analysing sound and scenes...",
        );
        let signals = self.analyse(dir, &input, &info, progress).await?;
        let plan_request = PlanRequest::new(
            request.max_clips,
            request.min_clip_duration_seconds,
            request.max_clip_duration_seconds,
            request.duration_ranges.as_deref(),
        );
        let planned = plan::plan(&signals, transcript.as_ref(), &plan_request)
            .map_err(|e| fail(PipelineStatus::Planning, PLAN, e))?;
        let n = planned.len() as u32;
        report(
            progress,
            PipelineStatus::Planning,
            34.0,
            format!("Planned {n} clips"),
        );

        // Detecting.
        report(
            progress,
            PipelineStatus::Detecting,
            35.0,
            "Detecting layouts...",
        );
        let with_captions = request.include_captions && transcript.is_some();
        let mut clips: Vec<ClipWork> = Vec::with_capacity(planned.len());
        for (i, p) in planned.into_iter().enumerate() {
            let picture = layout::measure(&signals.frames, p.start, p.end);
            let captions = if with_captions {
                transcript
                    .as_ref()
                    .and_then(|t| t.srt_for((p.start * 1000.0) as u64, (p.end * 1000.0) as u64))
            } else {
                None
            };
            clips.push(ClipWork {
                index: i as u32,
                layout: layout::classify(picture),
                picture,
                video: format!("clip_{i:02}.mp4"),
                poster: format!("clip_{i:02}.jpg"),
                captions,
                planned: p,
            });
        }

        // Rendering.
        let size = render::frame_size(&request.target_platform);
        for clip in &clips {
            let i = clip.index;
            let base = 40.0 + 50.0 * f64::from(i) / f64::from(n);
            let step = format!("Rendering clip {}/{n}...", i + 1);
            progress.report(
                StepReport::new(PipelineStatus::Rendering, base.floor(), step.clone())
                    .with_clips(i, n),
            );
            let srt_name = format!("clip_{i:02}.srt");
            if let Some(srt) = &clip.captions {
                tokio::fs::write(dir.join(&srt_name), srt)
                    .await
                    .map_err(|e| self.render_error(i, n, format!("cannot write captions: {e}")))?;
            }
            let spec = render::RenderSpec {
                input: &input,
                source_size: (info.width, info.height),
                has_audio: info.has_audio,
                start: clip.planned.start,
                end: clip.planned.end,
                size,
                layout: clip.layout,
                captions: clip.captions.as_ref().map(|_| srt_name.as_str()),
                preset: &self.config.preset,
                output: &clip.video,
            };
            let length = clip.planned.end - clip.planned.start;
            let cmd = ToolCommand::new(&self.config.ffmpeg, dir, self.config.tool_timeout)
                .args(render::render_args(&spec));
            let _permit = self
                .encoders
                .acquire()
                .await
                .map_err(|_| self.render_error(i, n, "the worker is shutting down"))?;
            self.tools
                .with_progress(&cmd, |t| {
                    let share = (t.as_secs_f64() / length).clamp(0.0, 1.0);
                    progress.report(
                        StepReport::new(
                            PipelineStatus::Rendering,
                            (base + 50.0 / f64::from(n) * share).floor(),
                            step.clone(),
                        )
                        .with_clips(i, n),
                    );
                })
                .await
                .map_err(|e| self.render_error(i, n, e))?;
            let poster = ToolCommand::new(&self.config.ffmpeg, dir, self.config.tool_timeout)
                .args(render::poster_args(&clip.video, length, &clip.poster));
            self.tools
                .output(&poster)
                .await
                .map_err(|e| self.render_error(i, n, format!("poster frame: {e}")))?;
        }

        // Uploading.
        progress.report(
            StepReport::new(PipelineStatus::Uploading, 91.0, "Uploading clips...").with_clips(n, n),
        );
        let prefix = format!(
            "clips/{}/{}",
            safe_segment(job.owner_user_id.as_deref().unwrap_or("anonymous")),
            safe_segment(&job.job_id)
        );
        let uploaded = self
            .upload(
                job,
                &prefix,
                dir,
                &clips,
                transcript.as_ref(),
                &signals,
                &plan_request,
                progress,
                n,
            )
            .await;
        let (clip_urls, transcript_url, plan_url) = match uploaded {
            Ok(u) => u,
            Err(e) => {
                if let Err(cleanup) = self.media.delete_prefix(&prefix).await {
                    tracing::warn!(job_id = %job.job_id, error = %cleanup, "could not remove a failed job's uploads");
                }
                return Err(fail(PipelineStatus::Uploading, UPLOAD, e));
            }
        };

        let artifacts = clips
            .iter()
            .zip(clip_urls)
            .map(|(c, url)| {
                let start_ms = (c.planned.start * 1000.0).round() as u64;
                let end_ms = (c.planned.end * 1000.0).round() as u64;
                ClipArtifact {
                    clip_index: c.index,
                    s3_url: url,
                    duration_ms: end_ms - start_ms,
                    start_time_ms: start_ms,
                    end_time_ms: end_ms,
                    virality_score: ViralityScore::new(c.planned.score).unwrap_or_default(),
                    layout_type: c.layout.as_str().to_owned(),
                    summary: c.planned.summary.clone(),
                    tags: (!c.planned.tags.is_empty()).then(|| c.planned.tags.clone()),
                }
            })
            .collect();
        Ok(JobOutput {
            job_id: job.job_id.clone(),
            source_video_url: request.video_url.clone(),
            source_video_title: info.title.clone(),
            source_video_duration_seconds: (info.duration_seconds * 100.0).round() / 100.0,
            total_clips: n,
            clips: artifacts,
            transcript_url,
            plan_url: Some(plan_url),
            processing_time_seconds: (began.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            created_at: Timestamp::now(),
        })
    }

    fn render_error(&self, i: u32, n: u32, reason: impl std::fmt::Display) -> StageError {
        fail(
            PipelineStatus::Rendering,
            &format!("Failed to render clip {}/{n}", i + 1),
            reason,
        )
    }

    async fn transcribe(
        &self,
        job: &JobSpec,
        progress: &ProgressHandle,
        dir: &Path,
        input: &str,
        has_audio: bool,
    ) -> Result<Option<Transcript>, StageError> {
        let Some(template) = &self.config.transcriber_cmd else {
            report(
                progress,
                PipelineStatus::Transcribing,
                10.0,
                "No transcriber configured; going on without a transcript",
            );
            return Ok(None);
        };
        if !has_audio {
            report(
                progress,
                PipelineStatus::Transcribing,
                10.0,
                "The video has no sound; going on without a transcript",
            );
            return Ok(None);
        }
        report(
            progress,
            PipelineStatus::Transcribing,
            10.0,
            "Transcribing audio...",
        );
        let wav = dir.join("audio.wav");
        let extract = ToolCommand::new(&self.config.ffmpeg, dir, self.config.tool_timeout).args([
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            input,
            "-vn",
            "-ac",
            "1",
            "-ar",
            "16000",
            "-c:a",
            "pcm_s16le",
            "-y",
            "audio.wav",
        ]);
        self.tools.output(&extract).await.map_err(|e| {
            fail(
                PipelineStatus::Transcribing,
                TRANSCRIBE,
                format!("cannot extract the audio: {e}"),
            )
        })?;
        let out = dir.join("transcript.out");
        let words =
            transcript::command_line(template, &wav.to_string_lossy(), &out.to_string_lossy())
                .map_err(|e| fail(PipelineStatus::Transcribing, TRANSCRIBE, e))?;
        let (program, args) = words
            .split_first()
            .expect("command_line never returns empty");
        let cmd = ToolCommand::new(program, dir, self.config.tool_timeout).args(args);
        self.tools.output(&cmd).await.map_err(|e| {
            fail(
                PipelineStatus::Transcribing,
                TRANSCRIBE,
                format!("the transcriber failed: {e}"),
            )
        })?;
        let mut text = None;
        for candidate in [
            out.clone(),
            out.with_extension("out.json"),
            out.with_extension("out.srt"),
        ] {
            if let Ok(t) = tokio::fs::read_to_string(&candidate).await {
                text = Some(t);
                break;
            }
        }
        let text = text.ok_or_else(|| {
            fail(
                PipelineStatus::Transcribing,
                TRANSCRIBE,
                "the transcriber wrote nothing to {output}",
            )
        })?;
        let parsed = Transcript::parse(&text)
            .map_err(|e| fail(PipelineStatus::Transcribing, TRANSCRIBE, e))?;
        tracing::info!(job_id = %job.job_id, segments = parsed.segments.len(), "transcript read");
        report(
            progress,
            PipelineStatus::Transcribing,
            19.0,
            "Transcript ready",
        );
        Ok(Some(parsed))
    }

    async fn analyse(
        &self,
        dir: &Path,
        input: &str,
        info: &probe::SourceInfo,
        progress: &ProgressHandle,
    ) -> Result<analysis::Signals, StageError> {
        let cmd = ToolCommand::new(&self.config.ffmpeg, dir, self.config.tool_timeout)
            .args(analysis::analysis_args(input, info.has_audio));
        let _permit = self.encoders.acquire().await.map_err(|_| {
            fail(
                PipelineStatus::Planning,
                PLAN,
                "the worker is shutting down",
            )
        })?;
        self.tools
            .with_progress(&cmd, |t| {
                let share = (t.as_secs_f64() / info.duration_seconds).clamp(0.0, 1.0);
                report(
                    progress,
                    PipelineStatus::Planning,
                    20.0 + 13.0 * share,
                    "Analysing sound and scenes...",
                );
            })
            .await
            .map_err(|e| {
                fail(
                    PipelineStatus::Planning,
                    PLAN,
                    format!("the analysis pass failed: {e}"),
                )
            })?;
        let read = |name: &str| {
            let path = dir.join(name);
            async move { tokio::fs::read(path).await.unwrap_or_default() }
        };
        let pcm = read(analysis::AUDIO_FILE).await;
        let frames = read(analysis::FRAMES_FILE).await;
        let scenes = String::from_utf8_lossy(&read(analysis::SCENES_FILE).await).into_owned();
        Ok(analysis::Signals::from_outputs(
            info.duration_seconds,
            &pcm,
            &frames,
            &scenes,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    async fn upload(
        &self,
        job: &JobSpec,
        prefix: &str,
        dir: &Path,
        clips: &[ClipWork],
        transcript: Option<&Transcript>,
        signals: &analysis::Signals,
        plan_request: &PlanRequest,
        progress: &ProgressHandle,
        n: u32,
    ) -> anyhow::Result<(Vec<String>, Option<String>, String)> {
        let mut urls = Vec::with_capacity(clips.len());
        for c in clips {
            let url = self
                .media
                .put_file(
                    &format!("{prefix}/{}", c.video),
                    &dir.join(&c.video),
                    "video/mp4",
                )
                .await?;
            self.media
                .put_file(
                    &format!("{prefix}/{}", c.poster),
                    &dir.join(&c.poster),
                    "image/jpeg",
                )
                .await?;
            urls.push(url);
            let done = c.index + 1;
            progress.report(
                StepReport::new(
                    PipelineStatus::Uploading,
                    (91.0 + 7.0 * f64::from(done) / f64::from(n.max(1))).floor(),
                    format!("Uploading clips... {done}/{n}"),
                )
                .with_clips(n, n),
            );
        }
        let transcript_url = match transcript {
            Some(t) => {
                let path = dir.join("transcript.json");
                tokio::fs::write(&path, serde_json::to_vec_pretty(t)?).await?;
                Some(
                    self.media
                        .put_file(
                            &format!("{prefix}/transcript.json"),
                            &path,
                            "application/json",
                        )
                        .await?,
                )
            }
            None => None,
        };
        let doc = PlanDocument {
            job_id: &job.job_id,
            source_video_url: &job.request.video_url,
            source_duration_seconds: signals.duration,
            transcript_available: transcript.is_some(),
            silences: signals.silences.len(),
            scene_cuts: &signals.scene_cuts,
            request: PlanRequestDoc {
                max_clips: plan_request.max_clips,
                min_seconds: plan_request.min_seconds,
                max_seconds: plan_request.max_seconds,
                ranges: plan_request.ranges.clone(),
                target_platform: job.request.target_platform.clone(),
                include_captions: job.request.include_captions,
            },
            clips,
        };
        let plan_path = dir.join("plan.json");
        tokio::fs::write(&plan_path, serde_json::to_vec_pretty(&doc)?).await?;
        let plan_url = self
            .media
            .put_file(
                &format!("{prefix}/plan.json"),
                &plan_path,
                "application/json",
            )
            .await?;
        Ok((urls, transcript_url, plan_url))
    }
}

impl Engine for FfmpegEngine {
    fn name(&self) -> &'static str {
        "ffmpeg"
    }

    fn check_video_url(&self, url: &Url) -> Result<(), String> {
        match url.scheme() {
            "http" | "https" => Ok(()),
            "file" if self.config.fetch.allow_file_urls => Ok(()),
            "file" => {
                Err("file:// video URLs need a worker started with --allow-file-urls".to_owned())
            }
            other => Err(format!(
                "video_url must be an http or https URL, not {other}://"
            )),
        }
    }

    fn run<'a>(
        &'a self,
        job: &'a JobSpec,
        progress: &'a ProgressHandle,
    ) -> BoxFuture<'a, Result<JobOutput, StageError>> {
        Box::pin(self.run_job(job, progress))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_segments_are_safe() {
        assert_eq!(safe_segment("user_789"), "user_789");
        assert_eq!(safe_segment("../etc"), "_._etc");
        assert_eq!(safe_segment(""), "_");
        assert_eq!(safe_segment("a/b c"), "a_b_c");
        assert_eq!(safe_segment(&"x".repeat(3000)).len(), 128);
    }
}
