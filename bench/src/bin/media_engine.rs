//! Benchmark of the ffmpeg engine: how long a real job takes, stage by
//! stage, and what the engine adds over the bare tools it runs.
//!
//! A source is made with ffmpeg's `lavfi` sources (1280x720, 30 fps, four
//! scenes, a speech-like tone with pauses and loud bursts; 60 s by default)
//! and clipped into 3 clips of 15 to 30 s for TikTok (1080x1920) with no
//! transcriber, read through a `file://` URL (no network in the figure).
//! Stores clips in a local media directory.
//!
//! Each run has two halves, interleaved run by run (A B A B):
//! - **engine**: the engine runs the job; stage times come from its progress
//!   reports (the time from a stage's first report to the next stage's);
//! - **bare**: every `ffmpeg`/`ffprobe` command the engine ran in that job,
//!   recorded with its arguments, is run again alone, in order, with nothing
//!   around it.
//!
//! The engine's overhead is `engine total / bare total − 1`.
//!
//! Run: `cargo run --release -p bench --bin media_engine -- --runs 2`

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use webhook_types::{ClippingJobRequest, PipelineStatus};
use worker::pipeline::ffmpeg::fetch::FetchConfig;
use worker::pipeline::ffmpeg::process::{RecordedCommand, ToolRunner};
use worker::pipeline::ffmpeg::{FfmpegConfig, FfmpegEngine};
use worker::pipeline::{Engine as _, JobSpec};
use worker::policy::CallbackPolicy;
use worker::reporter::ProgressHandle;
use worker::storage::{MediaStore, StorageTarget};

#[derive(Debug, Parser)]
#[command(about = "Wall time and overhead of clipping-worker's ffmpeg engine")]
struct Args {
    /// Length of the generated source, seconds.
    #[arg(long, default_value_t = 60)]
    source_seconds: u32,
    /// Clips to make.
    #[arg(long, default_value_t = 3)]
    clips: u32,
    /// Shortest clip, seconds.
    #[arg(long, default_value_t = 15)]
    min_seconds: u32,
    /// Longest clip, seconds.
    #[arg(long, default_value_t = 30)]
    max_seconds: u32,
    /// The x264 preset.
    #[arg(long, default_value = "veryfast")]
    preset: String,
    /// Engine and bare runs, interleaved.
    #[arg(long, default_value_t = 2)]
    runs: u32,
}

fn make_source(path: &Path, seconds: u32) -> anyhow::Result<()> {
    let scene = seconds.div_ceil(4);
    let audio = format!(
        "aevalsrc=exprs='lt(mod(t\\,5)\\,4.4)*(0.03+0.5*(between(t\\,11\\,14)+between(t\\,36\\,39)))\
         *sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*4*t))':s=48000:d={seconds}"
    );
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=s=1280x720:r=30:d={scene}"),
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("smptehdbars=s=1280x720:r=30:d={scene}"),
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc=s=1280x720:r=30:d={scene}"),
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("rgbtestsrc=s=1280x720:r=30:d={scene}"),
        ])
        .args(["-f", "lavfi", "-i", &audio])
        .args([
            "-filter_complex",
            "[0:v][1:v][2:v][3:v]concat=n=4:v=1:a=0,format=yuv420p[v]",
            "-map",
            "[v]",
            "-map",
            "4:a",
            "-t",
            &seconds.to_string(),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "23",
            "-c:a",
            "aac",
        ])
        .arg(path)
        .status()
        .context("running ffmpeg")?;
    anyhow::ensure!(status.success(), "making the source failed");
    Ok(())
}

/// Seconds spent in each stage, from the progress reports' arrival times.
fn stage_times(marks: &[(Instant, PipelineStatus)], end: Instant) -> Vec<(PipelineStatus, f64)> {
    let mut out: Vec<(PipelineStatus, f64)> = Vec::new();
    for (i, (at, status)) in marks.iter().enumerate() {
        if i > 0 && marks[i - 1].1 == *status {
            continue;
        }
        let next = marks[i + 1..]
            .iter()
            .find(|(_, s)| s != status)
            .map(|(t, _)| *t)
            .unwrap_or(end);
        out.push((*status, (next - *at).as_secs_f64()));
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("source.mp4");
    make_source(&source, args.source_seconds)?;
    let media = MediaStore::open(
        &StorageTarget::Local,
        dir.path(),
        &"http://127.0.0.1:8000".parse()?,
    )
    .await?;
    let encoders = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "source: {} s 1280x720 30 fps; {} clips of {}-{} s for tiktok; preset {}; {} encoder slot(s)",
        args.source_seconds, args.clips, args.min_seconds, args.max_seconds, args.preset, encoders
    );
    let mut engine_totals = Vec::new();
    let mut bare_totals = Vec::new();
    for run in 1..=args.runs {
        let log: Arc<Mutex<Vec<RecordedCommand>>> = Arc::default();
        let engine = FfmpegEngine::with_runner(
            FfmpegConfig {
                ffmpeg: "ffmpeg".into(),
                ffprobe: "ffprobe".into(),
                transcriber_cmd: None,
                fetch: FetchConfig {
                    policy: Arc::new(CallbackPolicy::default()),
                    max_bytes: u64::MAX,
                    timeout: Duration::from_secs(600),
                    allow_file_urls: true,
                    ytdlp: None,
                },
                tool_timeout: Duration::from_secs(1800),
                preset: args.preset.clone(),
                work_root: dir.path().join("work"),
                encoders,
            },
            media.clone(),
            ToolRunner::recording(log.clone()),
        )
        .await?;
        let mut request = ClippingJobRequest::new(format!("file://{}", source.display()));
        request.max_clips = args.clips;
        request.min_clip_duration_seconds = args.min_seconds;
        request.max_clip_duration_seconds = args.max_seconds;
        request.include_captions = false;
        let job = JobSpec {
            job_id: format!("bench-{run}"),
            owner_user_id: Some("bench".into()),
            request,
        };
        let (handle, mut reports) = ProgressHandle::standalone();
        let marks = tokio::spawn(async move {
            let mut marks = Vec::new();
            while let Some(r) = reports.next().await {
                marks.push((Instant::now(), r.status));
            }
            marks
        });
        let began = Instant::now();
        let output = engine
            .run(&job, &handle)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let end = Instant::now();
        let took = (end - began).as_secs_f64();
        drop(handle);
        let marks = marks.await?;
        println!(
            "\nrun {run}, engine: {:.1} s for {:.0} s of source = {:.2}x; clips {:?}",
            took,
            output.source_video_duration_seconds,
            took / output.source_video_duration_seconds,
            output
                .clips
                .iter()
                .map(|c| format!(
                    "{:.1}-{:.1}",
                    c.start_time_ms as f64 / 1e3,
                    c.end_time_ms as f64 / 1e3
                ))
                .collect::<Vec<_>>()
        );
        for (status, secs) in stage_times(&marks, end) {
            println!("  {status:<13} {secs:>6.2} s");
        }
        engine_totals.push(took);

        // The same commands, bare, in order.
        let commands = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let began = Instant::now();
        for c in &commands {
            std::fs::create_dir_all(&c.cwd)?;
            let status = std::process::Command::new(&c.program)
                .args(&c.args)
                .current_dir(&c.cwd)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .status()?;
            anyhow::ensure!(status.success(), "a bare re-run failed: {c:?}");
        }
        let bare = began.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(dir.path().join("work"));
        let in_engine: f64 = commands.iter().map(|c| c.took.as_secs_f64()).sum();
        println!(
            "run {run}, bare: {} commands in {bare:.1} s (the same commands took {in_engine:.1} s inside the engine)",
            commands.len()
        );
        bare_totals.push(bare);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (engine, bare) = (mean(&engine_totals), mean(&bare_totals));
    println!(
        "\nmean over {} runs: engine {engine:.1} s = {:.2}x the source; bare tools {bare:.1} s; engine overhead {:+.1} %",
        args.runs,
        engine / f64::from(args.source_seconds),
        (engine / bare - 1.0) * 100.0
    );
    Ok(())
}
