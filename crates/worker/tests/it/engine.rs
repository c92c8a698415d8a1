//! The ffmpeg engine end to end: a video made with ffmpeg's `lavfi` sources,
//! served over loopback HTTP, becomes clips that play, stored where their
//! URLs point; and every way a job can fail ends in exactly one `job.failed`
//! with a clear error and nothing left behind.
//!
//! The source (see [`sample`]) is 30 s of 640x360 picture in three scenes,
//! with a speech-like tone that pauses for 0.6 s every 5 s (at 4.4–5.0 s,
//! 9.4–10 s, …) and is much louder over [`BURSTS`].
//!
//! These tests need `ffmpeg` and `ffprobe`; `scripts/test` installs them and
//! sets `REQUIRE_MEDIA=1`, without which a machine lacking them skips with
//! a notice instead of failing.

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use webhook_types::{Event, JobOutput, PipelineStatus};
use worker::config::EngineKind;

use crate::helpers::{Received, Receiver, StoreKind, TestApp, spawn_app};

/// Where the source is loud, seconds.
const BURSTS: [(f64, f64); 2] = [(6.0, 9.0), (20.0, 23.0)];
/// The source's length, seconds.
const LENGTH: f64 = 30.0;
/// Long enough for a render on a loaded two-core machine.
const JOB_TIME: Duration = Duration::from_secs(240);

fn tools_present() -> bool {
    ["ffmpeg", "ffprobe"].iter().all(|t| {
        StdCommand::new(t)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Whether the tests can run; panics when they must and cannot.
fn media_ready() -> bool {
    if tools_present() {
        return true;
    }
    assert!(
        std::env::var_os("REQUIRE_MEDIA").is_none(),
        "REQUIRE_MEDIA is set but ffmpeg/ffprobe cannot be run (apt-get install ffmpeg)"
    );
    eprintln!("skipping: ffmpeg/ffprobe not installed (set REQUIRE_MEDIA=1 to make this fail)");
    false
}

/// The sample video, made once per test run.
fn sample() -> &'static Path {
    static SAMPLE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = SAMPLE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sample talk.mp4");
        let audio = "aevalsrc=exprs='lt(mod(t\\,5)\\,4.4)*(0.03+0.5*(between(t\\,6\\,9)+between(t\\,20\\,23)))\
                     *sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*4*t))':s=48000:d=30";
        let status = StdCommand::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc2=s=640x360:r=25:d=10"])
            .args(["-f", "lavfi", "-i", "smptebars=s=640x360:r=25:d=10"])
            .args(["-f", "lavfi", "-i", "testsrc=s=640x360:r=25:d=10"])
            .args(["-f", "lavfi", "-i", audio])
            .args([
                "-filter_complex",
                "[0:v][1:v][2:v]concat=n=3:v=1:a=0,format=yuv420p[v]",
                "-map",
                "[v]",
                "-map",
                "3:a",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-c:a",
                "aac",
                "-metadata",
                "title=Sample talk",
            ])
            .arg(&path)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success(), "making the sample video failed");
        (dir, path)
    });
    path
}

/// A loopback server of test inputs.
struct Files {
    addr: std::net::SocketAddr,
    _task: tokio::task::JoinHandle<()>,
}

impl Files {
    async fn start() -> Files {
        let video = std::fs::read(sample()).unwrap();
        let app = axum::Router::new()
            .route(
                "/talk.mp4",
                get(move || {
                    let video = video.clone();
                    async move { ([(header::CONTENT_TYPE, "video/mp4")], video) }
                }),
            )
            .route(
                "/missing.mp4",
                get(|| async { StatusCode::NOT_FOUND.into_response() }),
            )
            .route(
                "/notes.mp4",
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "video/mp4")],
                        "these are meeting notes, not a video\n".repeat(200),
                    )
                }),
            )
            .route(
                // No Content-Length: the limit must hold while streaming.
                "/endless.mp4",
                get(|| async {
                    let chunks = futures_util::stream::iter(
                        (0..10_000).map(|_| Ok::<_, std::io::Error>(vec![0u8; 64 * 1024])),
                    );
                    (
                        [(header::CONTENT_TYPE, "video/mp4")],
                        Body::from_stream(chunks),
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Files { addr, _task: task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn ffmpeg_worker(f: impl FnOnce(&mut worker::ServeConfig)) -> TestApp {
    spawn_app(StoreKind::Sqlite, |c| {
        c.engine = EngineKind::Ffmpeg;
        c.x264_preset = "ultrafast".into();
        c.max_concurrent_jobs = 2;
        f(c);
    })
    .await
}

/// The job's events in sequence order, each delivered once.
fn events(received: &[Received]) -> Vec<webhook_types::WebhookPayload> {
    let mut seen = std::collections::BTreeMap::new();
    for r in received.iter().filter(|r| r.ok()) {
        let p = r.payload().clone();
        seen.insert(p.sequence.expect("a sequence"), p);
    }
    seen.into_values().collect()
}

fn assert_progress_is_monotonic(events: &[webhook_types::WebhookPayload]) {
    let mut last = 0.0;
    for e in events {
        let p = e.progress_percent.get();
        assert!(
            p >= last,
            "progress went down to {p} after {last}: {events:#?}"
        );
        last = p;
    }
}

/// Files under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

struct Probe {
    width: u64,
    height: u64,
    duration: f64,
    codecs: Vec<String>,
}

fn ffprobe(path: &Path) -> Probe {
    let out = StdCommand::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let streams = v["streams"].as_array().unwrap();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("a video stream");
    Probe {
        width: video["width"].as_u64().unwrap(),
        height: video["height"].as_u64().unwrap(),
        duration: v["format"]["duration"].as_str().unwrap().parse().unwrap(),
        codecs: streams
            .iter()
            .map(|s| s["codec_name"].as_str().unwrap().to_owned())
            .collect(),
    }
}

/// Downloads `url` into `dir` and returns the path.
async fn download(client: &reqwest::Client, url: &str, dir: &Path, name: &str) -> PathBuf {
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    let path = dir.join(name);
    std::fs::write(&path, r.bytes().await.unwrap()).unwrap();
    path
}

/// Whether `t` is in one of the sample's pauses (or at its very ends).
fn in_a_pause(t: f64) -> bool {
    const SLACK: f64 = 0.11; // one 100 ms analysis window
    t <= SLACK || t >= LENGTH - SLACK || {
        let m = t % 5.0;
        m >= 4.4 - SLACK || m <= SLACK
    }
}

#[tokio::test]
async fn a_video_becomes_vertical_clips_that_play() {
    if !media_ready() {
        return;
    }
    let files = Files::start().await;
    let mut rx = Receiver::ok().await;
    let app = ffmpeg_worker(|_| {}).await;
    let job_id = app
        .submit_ok(json!({
            "video_url": files.url("/talk.mp4"),
            "callback_url": rx.url("/hook"),
            "owner_user_id": "user_789",
            "max_clips": 2,
            "min_clip_duration_seconds": 5,
            "max_clip_duration_seconds": 12,
            "target_platform": "tiktok",
        }))
        .await;
    let got = rx.until_terminal(&job_id, JOB_TIME).await;
    let events = events(&got);
    let last = events.last().unwrap();
    assert_eq!(last.event, Event::Completed, "{:?}", last.error);
    assert_progress_is_monotonic(&events);
    let statuses: Vec<PipelineStatus> = events.iter().map(|e| e.status).collect();
    for stage in [
        PipelineStatus::Downloading,
        PipelineStatus::Transcribing,
        PipelineStatus::Planning,
        PipelineStatus::Detecting,
        PipelineStatus::Rendering,
        PipelineStatus::Uploading,
    ] {
        assert!(statuses.contains(&stage), "no {stage} event: {statuses:?}");
    }
    let steps: Vec<&str> = events.iter().map(|e| e.current_step.as_str()).collect();
    assert!(steps.contains(&"Rendering clip 1/2..."), "{steps:?}");
    assert!(steps.contains(&"Rendering clip 2/2..."), "{steps:?}");

    let output: &JobOutput = last.output.as_ref().unwrap();
    assert_eq!(output.source_video_title, "Sample talk");
    assert!((output.source_video_duration_seconds - LENGTH).abs() < 0.2);
    assert_eq!(output.clips.len(), 2);
    assert_eq!(output.total_clips, 2);

    // The loud bursts are inside the clips; every cut is in a pause.
    for (a, b) in BURSTS {
        assert!(
            output
                .clips
                .iter()
                .any(|c| c.start_time_ms as f64 / 1000.0 <= a && c.end_time_ms as f64 / 1000.0 >= b),
            "burst {a}–{b} s is in no clip: {:#?}",
            output.clips
        );
    }
    for c in &output.clips {
        for t in [c.start_time_ms, c.end_time_ms] {
            assert!(
                in_a_pause(t as f64 / 1000.0),
                "a cut at {t} ms is mid-sound: {c:#?}"
            );
        }
        assert!(["talking_head", "screen_share", "b_roll"].contains(&c.layout_type.as_str()));
    }

    // Every clip plays: H.264 + AAC, 1080x1920, as long as planned.
    let scratch = tempfile::tempdir().unwrap();
    for c in &output.clips {
        assert!(
            c.s3_url.starts_with(&format!("{}/media/", app.address)),
            "{}",
            c.s3_url
        );
        let path = download(&app.client, &c.s3_url, scratch.path(), "clip.mp4").await;
        let p = ffprobe(&path);
        assert_eq!((p.width, p.height), (1080, 1920));
        assert!(
            p.codecs.contains(&"h264".to_owned()) && p.codecs.contains(&"aac".to_owned()),
            "{:?}",
            p.codecs
        );
        let planned = c.duration_ms as f64 / 1000.0;
        assert!(
            (5.0 - 0.2..=12.0 + 0.2).contains(&p.duration),
            "{}",
            p.duration
        );
        assert!(
            (p.duration - planned).abs() < 0.3,
            "{} vs {planned}",
            p.duration
        );
        // Browsers seek with range requests.
        let r = app
            .client
            .get(&c.s3_url)
            .header("Range", "bytes=0-99")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.bytes().await.unwrap().len(), 100);
        // The poster frame sits beside the clip.
        let poster = c.s3_url.replace(".mp4", ".jpg");
        let r = app.client.get(&poster).send().await.unwrap();
        assert_eq!(r.status(), 200, "{poster}");
        assert_eq!(r.headers()["content-type"], "image/jpeg");
    }
    let plan: Value = app
        .client
        .get(output.plan_url.as_deref().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plan["clips"].as_array().unwrap().len(), 2);
    assert_eq!(plan["transcript_available"], false);
    assert!(output.transcript_url.is_none());

    // Nothing is left in the work directory.
    assert!(files_under(&app.data_dir.join("work")).is_empty());
}

#[tokio::test]
async fn a_page_url_goes_through_ytdlp_and_a_transcript_gives_captions() {
    if !media_ready() {
        return;
    }
    let tools = tempfile::tempdir().unwrap();
    // A stand-in for yt-dlp: "downloads" the sample into the named output.
    let ytdlp = tools.path().join("yt-dlp");
    std::fs::write(
        &ytdlp,
        format!(
            "#!/bin/sh\necho '[download]  50.0% of 1.00MiB'\ncp '{}' source.mp4\necho '[download] 100% of 1.00MiB'\n",
            sample().display()
        ),
    )
    .unwrap();
    // A transcriber that writes a known SRT where it is told to.
    let transcriber = tools.path().join("transcribe");
    std::fs::write(
        &transcriber,
        "#!/bin/sh\nset -e\ntest -s \"$1\"\ncat > \"$2.srt\" <<'SRT'\n\
         1\n00:00:05,000 --> 00:00:09,300\nWhy is pricing the biggest mistake founders make?\n\n\
         2\n00:00:10,000 --> 00:00:14,000\nPricing pricing pricing.\n\nSRT\n",
    )
    .unwrap();
    for f in [&ytdlp, &transcriber] {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut rx = Receiver::ok().await;
    let app = ffmpeg_worker(|c| {
        c.ytdlp_path = Some(ytdlp.clone());
        c.transcriber_cmd = Some(format!("'{}' {{input}} {{output}}", transcriber.display()));
    })
    .await;
    let job_id = app
        .submit_ok(json!({
            "video_url": "https://www.youtube.com/watch?v=sample",
            "callback_url": rx.url("/hook"),
            "max_clips": 1,
            "min_clip_duration_seconds": 5,
            "max_clip_duration_seconds": 10,
            "target_platform": "youtube",
            "include_captions": true,
        }))
        .await;
    let got = rx.until_terminal(&job_id, JOB_TIME).await;
    let events = events(&got);
    let last = events.last().unwrap();
    assert_eq!(last.event, Event::Completed, "{:?}", last.error);
    assert_progress_is_monotonic(&events);
    let output = last.output.as_ref().unwrap();
    let clip = &output.clips[0];
    assert_eq!(
        clip.summary.as_deref(),
        Some("Why is pricing the biggest mistake founders make?")
    );
    assert!(
        clip.tags.as_ref().unwrap().contains(&"pricing".to_owned()),
        "{clip:?}"
    );
    let transcript: Value = app
        .client
        .get(output.transcript_url.as_deref().expect("a transcript URL"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(transcript["segments"][0]["start_ms"], 5000);
    let scratch = tempfile::tempdir().unwrap();
    let path = download(&app.client, &clip.s3_url, scratch.path(), "clip.mp4").await;
    let p = ffprobe(&path);
    assert_eq!((p.width, p.height), (1920, 1080));
    assert!(files_under(&app.data_dir.join("work")).is_empty());
}

/// Submits one job that must fail and returns its single `job.failed` error,
/// after checking nothing was left behind.
async fn fails_with(app: &TestApp, rx: &mut Receiver, video_url: &str, extra: Value) -> String {
    let mut body = json!({
        "video_url": video_url,
        "callback_url": rx.url("/hook"),
        "owner_user_id": "user_789",
        "max_clips": 1,
        "min_clip_duration_seconds": 5,
        "max_clip_duration_seconds": 10,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let job_id = app.submit_ok(body).await;
    let got = rx.until_terminal(&job_id, JOB_TIME).await;
    let events = events(&got);
    let terminal: Vec<_> = events.iter().filter(|e| e.event.is_terminal()).collect();
    assert_eq!(terminal.len(), 1, "{events:#?}");
    assert_eq!(terminal[0].event, Event::Failed);
    assert_progress_is_monotonic(&events);
    // Settle: the ledger shows the failure delivered and nothing pending.
    app.wait_for_ledger(&job_id, Duration::from_secs(10), |l| {
        l.iter().all(|d| d["status"] != "pending")
    })
    .await;
    assert!(
        files_under(&app.data_dir.join("work")).is_empty(),
        "work files left"
    );
    assert!(
        files_under(&app.data_dir.join("media")).is_empty(),
        "media left"
    );
    terminal[0].error.clone().unwrap()
}

#[tokio::test]
async fn every_bad_input_fails_the_job_once_and_clearly() {
    if !media_ready() {
        return;
    }
    let files = Files::start().await;
    let mut rx = Receiver::ok().await;
    let nothing_listens = format!("http://127.0.0.1:{}/talk.mp4", crate::helpers::free_port());
    let app = ffmpeg_worker(|c| c.max_download_bytes = 1024 * 1024).await;
    let cases: [(&str, &str); 5] = [
        (
            &nothing_listens,
            "Failed to download video: could not connect to 127.0.0.1",
        ),
        (
            &files.url("/missing.mp4"),
            "Failed to download video: the server answered HTTP 404 Not Found",
        ),
        (
            &files.url("/notes.mp4"),
            "Failed to download video: the file is not a video",
        ),
        (
            &files.url("/endless.mp4"),
            "Failed to download video: the video is over the limit of 1.0 MiB",
        ),
        (
            "https://www.youtube.com/watch?v=x",
            "Failed to download video: https://www.youtube.com/watch?v=x is a web page",
        ),
    ];
    for (url, want) in cases {
        let error = fails_with(&app, &mut rx, url, json!({})).await;
        assert!(error.starts_with(want), "{url}: {error}");
    }
    // The whole sample is over a 1 MiB limit announced up front too.
    let error = fails_with(&app, &mut rx, &files.url("/talk.mp4"), json!({})).await;
    assert!(error.contains("over the limit of 1.0 MiB"), "{error}");
    // file:// needs --allow-file-urls, at submission.
    let r = app
        .submit(json!({"video_url": "file:///etc/hostname", "callback_url": rx.url("/hook")}))
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("--allow-file-urls"));
}

#[tokio::test]
async fn a_video_url_on_a_private_address_is_refused() {
    if !media_ready() {
        return;
    }
    let files = Files::start().await;
    let mut rx = Receiver::ok().await;
    // Callbacks to "localhost" are allowed by name; nothing else private is.
    let app = ffmpeg_worker(|c| {
        c.allow_private_callbacks = false;
        c.callback_allow = vec!["localhost".parse().unwrap()];
    })
    .await;
    let callback = format!("http://localhost:{}/hook", rx.addr.port());
    let job_id = app
        .submit_ok(json!({
            "video_url": files.url("/talk.mp4"),
            "callback_url": callback,
            "max_clips": 1,
        }))
        .await;
    let got = rx.until_terminal(&job_id, JOB_TIME).await;
    let last = events(&got).pop().unwrap();
    assert_eq!(last.event, Event::Failed);
    let error = last.error.unwrap();
    assert!(
        error.starts_with("Failed to download video: video host 127.0.0.1"),
        "{error}"
    );
}

#[tokio::test]
async fn a_failing_transcriber_or_a_killed_ffmpeg_fails_the_job() {
    if !media_ready() {
        return;
    }
    let files = Files::start().await;
    let mut rx = Receiver::ok().await;
    let tools = tempfile::tempdir().unwrap();
    let transcriber = tools.path().join("transcribe");
    std::fs::write(
        &transcriber,
        "#!/bin/sh\necho 'model not found' >&2\nexit 3\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&transcriber, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let app = ffmpeg_worker(|c| {
        c.transcriber_cmd = Some(format!("{} {{input}} {{output}}", transcriber.display()));
    })
    .await;
    let error = fails_with(&app, &mut rx, &files.url("/talk.mp4"), json!({})).await;
    assert!(
        error.starts_with("Failed to transcribe audio: the transcriber failed: transcribe exited with status 3: model not found"),
        "{error}"
    );
    app.stop().await;

    // ffmpeg killed mid-render: the render is made slow, and killed as soon
    // as its first progress report arrives.
    let app = ffmpeg_worker(|c| {
        c.x264_preset = "veryslow".into();
    })
    .await;
    let job_id = app
        .submit_ok(json!({
            "video_url": files.url("/talk.mp4"),
            "callback_url": rx.url("/hook"),
            "owner_user_id": "user_789",
            "max_clips": 1,
            "min_clip_duration_seconds": 20,
            "max_clip_duration_seconds": 30,
        }))
        .await;
    let mut got = Vec::new();
    loop {
        let r = rx.next(JOB_TIME).await;
        let rendering = r.payload().status == PipelineStatus::Rendering;
        got.push(r);
        if rendering {
            break;
        }
    }
    let work = app.data_dir.join("work");
    let pattern = format!("ffmpeg.*{}.*clip_00.mp4", work.display());
    // The event comes just before the encoder starts: kill it once it runs.
    let deadline = tokio::time::Instant::now() + JOB_TIME;
    while !StdCommand::new("pkill")
        .args(["-KILL", "-f", &pattern])
        .status()
        .unwrap()
        .success()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rendering ffmpeg to kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    got.extend(rx.until_terminal(&job_id, JOB_TIME).await);
    let events = events(&got);
    let terminal: Vec<_> = events.iter().filter(|e| e.event.is_terminal()).collect();
    assert_eq!(terminal.len(), 1);
    let error = terminal[0].error.clone().unwrap();
    assert!(
        error.starts_with("Failed to render clip 1/1: ffmpeg was killed"),
        "{error}"
    );
    app.wait_for_ledger(&job_id, Duration::from_secs(10), |l| {
        l.iter().all(|d| d["status"] != "pending")
    })
    .await;
    assert!(files_under(&work).is_empty());
    assert!(files_under(&app.data_dir.join("media")).is_empty());
}

/// The real binary with `--storage s3://…` against a real S3-compatible
/// server (rclone) on loopback: the job's objects are listed and fetched
/// back from the server, a clip fetched from it plays, and the URLs handed
/// out start with `--public-url` (a CDN in front of the bucket).
#[tokio::test]
async fn a_job_stores_its_media_in_s3() {
    use object_store::path::Path as ObjectPath;
    use object_store::{ObjectStore as _, ObjectStoreExt as _};

    if !media_ready() {
        return;
    }
    let Some(s3) = crate::storage::S3Server::start().await else {
        return;
    };
    std::fs::create_dir(s3.root.path().join("media")).unwrap(); // the bucket
    let files = Files::start().await;
    let mut rx = Receiver::ok().await;
    let data = tempfile::tempdir().unwrap();
    let port = crate::helpers::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_clipping-worker"));
    // A relative --data-dir: the engine must not hand tools paths that only
    // make sense from the worker's own directory.
    cmd.args(["serve", "--listen", &listen, "--data-dir", "worker-data"])
        .current_dir(data.path())
        .args([
            "--engine",
            "ffmpeg",
            "--x264-preset",
            "ultrafast",
            "--allow-private-callbacks",
            "--progress-interval-ms",
            "0",
            "--storage",
            "s3://media/jobs",
            // Browsers fetch through a public server in front of the bucket.
            "--public-url",
            "https://cdn.example.test/m",
            "--webhook-secret",
            crate::helpers::SECRET,
        ])
        .envs(s3.env())
        .env_remove("WORKER_STORAGE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("the worker binary starts");
    let client = reqwest::Client::new();
    let base = format!("http://{listen}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = client
        .post(format!("{base}/ai-clipping/jobs"))
        .json(&json!({
            "video_url": files.url("/talk.mp4"),
            "callback_url": rx.url("/hook"),
            "owner_user_id": "user_789",
            "max_clips": 1,
            "min_clip_duration_seconds": 5,
            "max_clip_duration_seconds": 10,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let job_id = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = rx.until_terminal(&job_id, JOB_TIME).await;
    let last = events(&got).pop().unwrap();
    assert_eq!(last.event, Event::Completed, "{:?}", last.error);
    let output = last.output.unwrap();
    let prefix = format!("jobs/clips/user_789/{job_id}");
    let clip_url = &output.clips[0].s3_url;
    assert_eq!(
        clip_url,
        &format!("https://cdn.example.test/m/{prefix}/clip_00.mp4")
    );
    assert_eq!(
        output.plan_url.as_deref(),
        Some(format!("https://cdn.example.test/m/{prefix}/plan.json").as_str())
    );

    // Listed and fetched back from the server, by an independent client.
    let bucket = s3.client("media");
    let mut names: Vec<String> = bucket
        .list(Some(&ObjectPath::from(prefix.as_str())))
        .map(|m| m.unwrap().location.to_string())
        .collect::<Vec<_>>()
        .await;
    names.sort();
    assert_eq!(
        names,
        [
            format!("{prefix}/clip_00.jpg"),
            format!("{prefix}/clip_00.mp4"),
            format!("{prefix}/plan.json"),
        ]
    );
    let video = bucket
        .get(&ObjectPath::from(format!("{prefix}/clip_00.mp4").as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("clip.mp4");
    std::fs::write(&path, &video).unwrap();
    assert_eq!((ffprobe(&path).width, ffprobe(&path).height), (1080, 1920));
    // Nothing stays in the worker's own directories.
    assert!(files_under(&data.path().join("worker-data/work")).is_empty());
    assert!(files_under(&data.path().join("worker-data/media")).is_empty());
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

#[tokio::test]
async fn without_ffmpeg_the_worker_refuses_to_start_and_names_the_package() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::test_config(dir.path());
    config.engine = EngineKind::Ffmpeg;
    config.ffmpeg_path = dir.path().join("no-ffmpeg-here");
    let err = match worker::Application::build(config).await {
        Ok(_) => panic!("the worker started without ffmpeg"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("no-ffmpeg-here"), "{err}");
    assert!(err.contains("apt-get install ffmpeg"), "{err}");
}
