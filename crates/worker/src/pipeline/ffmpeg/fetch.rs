//! Downloading the source video into the job's work directory.
//!
//! - `http(s)`: streamed to disk (never held in memory), within
//!   `--max-download-bytes` (checked against `Content-Length` first, then
//!   while streaming) and `--download-timeout-secs`. The callback policy's
//!   address rules apply to the video URL too, on the address actually
//!   connected to (the policy's DNS resolver) and on every redirect (at most
//!   [`MAX_REDIRECTS`], each checked), so a `video_url` cannot reach the
//!   worker's own network.
//! - Pages of video sites (YouTube and the like), recognised by host or by
//!   an HTML answer, go through `yt-dlp` when `--ytdlp-path` is set; yt-dlp
//!   fetches by itself, outside the policy's reach, so only enable it where
//!   that is acceptable. Without it such a URL fails clearly.
//! - `file://` only with `--allow-file-urls`; the file is read in place.
//!
//! Every failure is a message for "Failed to download video: …".

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use url::Url;

use super::process::{ToolCommand, ToolRunner};
use crate::policy::{CallbackPolicy, PolicyError};

/// Most redirects followed for one download.
pub const MAX_REDIRECTS: usize = 5;

/// Hosts whose URLs are web pages about a video, not video files.
const PAGE_HOSTS: &[&str] = &[
    "youtube.com",
    "youtu.be",
    "vimeo.com",
    "tiktok.com",
    "instagram.com",
    "twitch.tv",
    "dailymotion.com",
    "facebook.com",
    "x.com",
    "twitter.com",
];

/// How downloads are made.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// The policy's address rules.
    pub policy: Arc<CallbackPolicy>,
    /// Largest source accepted.
    pub max_bytes: u64,
    /// Longest a download may take.
    pub timeout: Duration,
    /// Whether `file://` URLs may be read.
    pub allow_file_urls: bool,
    /// yt-dlp, for pages of video sites.
    pub ytdlp: Option<PathBuf>,
}

/// A source ready to probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// Where it is.
    pub path: PathBuf,
    /// The name it came with (the URL's last path segment), for its title.
    pub file_name: String,
}

/// The HTTP client of downloads: the policy's resolver, checked redirects,
/// no proxy (a proxy would resolve names out of the policy's reach).
pub fn build_client(policy: Arc<CallbackPolicy>) -> reqwest::Result<reqwest::Client> {
    let for_redirects = policy.clone();
    reqwest::Client::builder()
        .user_agent(concat!("clipping-worker/", env!("CARGO_PKG_VERSION")))
        .no_proxy()
        .dns_resolver(Arc::new(crate::policy::PolicyResolver { policy }))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            if !matches!(attempt.url().scheme(), "http" | "https") {
                return attempt.error("a redirect left http(s)");
            }
            match for_redirects.check_literal(attempt.url()) {
                Ok(_) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        }))
        .connect_timeout(Duration::from_secs(10))
        .build()
}

/// Whether `url` is a video site's page rather than a file.
pub fn is_page_url(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    PAGE_HOSTS
        .iter()
        .any(|p| host == *p || host.ends_with(&format!(".{p}")))
}

/// The last path segment of `url`, decoded, or "video".
pub fn file_name_of(url: &Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.next_back().map(str::to_owned))
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(&s))
        .unwrap_or_else(|| "video".to_owned())
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

/// Fetches `url` into `work`, calling `on_progress(bytes, total)` as bytes
/// arrive. The error is the reason, for "Failed to download video: …".
pub async fn fetch(
    cfg: &FetchConfig,
    client: &reqwest::Client,
    tools: &ToolRunner,
    url: &Url,
    work: &Path,
    mut on_progress: impl FnMut(u64, Option<u64>),
) -> Result<Fetched, String> {
    match url.scheme() {
        "file" => return local_file(cfg, url).await,
        "http" | "https" => {}
        other => return Err(format!("{other}:// URLs cannot be fetched")),
    }
    if is_page_url(url) {
        return via_ytdlp(cfg, tools, url, work, &mut on_progress).await;
    }
    cfg.policy.check_literal(url).map_err(|e| refusal(&e))?;
    let download = async {
        let mut response = client.get(url.clone()).send().await.map_err(describe)?;
        let status = response.status();
        if !status.is_success() {
            let reason = status.canonical_reason().unwrap_or_default();
            return Err(
                format!("the server answered HTTP {} {reason}", status.as_str())
                    .trim_end()
                    .to_owned(),
            );
        }
        let is_html = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
        if is_html {
            return Ok(None);
        }
        let total = response.content_length();
        if let Some(len) = total.filter(|len| *len > cfg.max_bytes) {
            return Err(too_large(cfg.max_bytes, Some(len)));
        }
        let file_name = file_name_of(response.url());
        let path = work.join(source_name(&file_name));
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| format!("cannot write the download: {e}"))?;
        let mut done: u64 = 0;
        on_progress(0, total);
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            done += chunk.len() as u64;
            if done > cfg.max_bytes {
                return Err(too_large(cfg.max_bytes, None));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("cannot write the download: {e}"))?;
            on_progress(done, total);
        }
        file.flush()
            .await
            .map_err(|e| format!("cannot write the download: {e}"))?;
        if done == 0 {
            return Err("the server sent an empty file".to_owned());
        }
        Ok(Some(Fetched { path, file_name }))
    };
    let finished = tokio::time::timeout(cfg.timeout, download).await;
    match finished {
        Err(_) => Err(format!(
            "no complete download within {} s (--download-timeout-secs)",
            cfg.timeout.as_secs()
        )),
        Ok(Err(e)) => Err(e),
        Ok(Ok(Some(fetched))) => Ok(fetched),
        // An HTML page: a video site yt-dlp may know.
        Ok(Ok(None)) => via_ytdlp(cfg, tools, url, work, &mut on_progress).await,
    }
}

fn too_large(limit: u64, size: Option<u64>) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    match size {
        Some(s) => format!(
            "the video is {:.1} MiB, over the limit of {:.1} MiB (--max-download-bytes)",
            mib(s),
            mib(limit)
        ),
        None => format!(
            "the video is over the limit of {:.1} MiB (--max-download-bytes)",
            mib(limit)
        ),
    }
}

/// A safe local name for the download: `source` plus the URL's extension
/// when it is a plain one.
fn source_name(file_name: &str) -> String {
    match file_name.rsplit_once('.') {
        Some((_, ext))
            if !ext.is_empty()
                && ext.len() <= 5
                && ext.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            format!("source.{}", ext.to_ascii_lowercase())
        }
        _ => "source".to_owned(),
    }
}

/// Words for a refused address: the policy speaks of callbacks.
fn refusal(e: &PolicyError) -> String {
    e.to_string().replace("callback host", "video host")
}

/// Words for a failed request: a policy refusal anywhere in its causes
/// (from the resolver or a redirect check) wins; otherwise its kind and its
/// innermost cause.
fn describe(e: reqwest::Error) -> String {
    let mut innermost = e.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(cause) = source {
        if let Some(p) = cause.downcast_ref::<PolicyError>() {
            return refusal(p);
        }
        innermost = cause.to_string();
        source = cause.source();
    }
    let host = e
        .url()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    if e.is_timeout() {
        format!("{host} did not answer in time")
    } else if e.is_connect() {
        format!("could not connect to {host}: {innermost}")
    } else if e.is_redirect() {
        format!("a redirect was refused: {innermost}")
    } else {
        format!("the download from {host} broke off: {e}")
    }
}

async fn local_file(cfg: &FetchConfig, url: &Url) -> Result<Fetched, String> {
    if !cfg.allow_file_urls {
        return Err("file:// URLs need --allow-file-urls".to_owned());
    }
    let path = url
        .to_file_path()
        .map_err(|()| "the file:// URL is not a local path".to_owned())?;
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    if meta.len() > cfg.max_bytes {
        return Err(too_large(cfg.max_bytes, Some(meta.len())));
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "video".to_owned());
    Ok(Fetched { path, file_name })
}

/// yt-dlp's download percentage in one of its `--newline` progress lines.
pub fn ytdlp_percent(line: &str) -> Option<f64> {
    let rest = line.trim().strip_prefix("[download]")?.trim_start();
    let pct = rest.split('%').next()?.trim();
    pct.parse::<f64>()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
}

async fn via_ytdlp(
    cfg: &FetchConfig,
    tools: &ToolRunner,
    url: &Url,
    work: &Path,
    on_progress: &mut impl FnMut(u64, Option<u64>),
) -> Result<Fetched, String> {
    let Some(ytdlp) = &cfg.ytdlp else {
        return Err(format!(
            "{url} is a web page, not a video file; start the worker with --ytdlp-path to fetch such pages with yt-dlp"
        ));
    };
    let cmd = ToolCommand::new(ytdlp, work, cfg.timeout).args([
        "--no-playlist".to_owned(),
        "--newline".to_owned(),
        "--no-part".to_owned(),
        "--format".to_owned(),
        "bv*[height<=1080]+ba/b[height<=1080]/b".to_owned(),
        "--merge-output-format".to_owned(),
        "mp4".to_owned(),
        "--max-filesize".to_owned(),
        cfg.max_bytes.to_string(),
        "--output".to_owned(),
        "source.%(ext)s".to_owned(),
        "--".to_owned(),
        url.to_string(),
    ]);
    tools
        .with_lines(&cmd, |line| {
            if let Some(p) = ytdlp_percent(line) {
                on_progress((p * 10.0) as u64, Some(1000));
            }
        })
        .await
        .map_err(|e| format!("yt-dlp could not fetch {url}: {e}"))?;
    let mut found: Option<PathBuf> = None;
    let mut entries = tokio::fs::read_dir(work)
        .await
        .map_err(|e| format!("cannot read the work directory: {e}"))?;
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("source.") {
            found = Some(entry.path());
        }
    }
    let path = found.ok_or_else(|| format!("yt-dlp wrote no video for {url}"))?;
    let size = tokio::fs::metadata(&path)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    if size > cfg.max_bytes {
        return Err(too_large(cfg.max_bytes, Some(size)));
    }
    Ok(Fetched {
        path,
        file_name: file_name_of(url),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_video_site_pages() {
        for page in [
            "https://www.youtube.com/watch?v=abc",
            "https://youtu.be/abc",
            "https://m.youtube.com/watch?v=1",
            "https://vimeo.com/123",
        ] {
            assert!(is_page_url(&Url::parse(page).unwrap()), "{page}");
        }
        for file in [
            "https://cdn.example.com/a.mp4",
            "https://notyoutube.com/x",
            "https://youtube.com.evil.example/x",
        ] {
            assert!(!is_page_url(&Url::parse(file).unwrap()), "{file}");
        }
    }

    #[test]
    fn names_come_from_the_url() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            file_name_of(&u("https://h/a/My%20Talk.mp4?x=1")),
            "My Talk.mp4"
        );
        assert_eq!(file_name_of(&u("https://h/")), "video");
        assert_eq!(source_name("My Talk.MP4"), "source.mp4");
        assert_eq!(source_name("../../etc/passwd"), "source");
        assert_eq!(source_name("clip.tar.gz;rm"), "source");
    }

    #[test]
    fn reads_ytdlp_progress() {
        assert_eq!(
            ytdlp_percent("[download]  42.5% of   10.00MiB at  1.00MiB/s ETA 00:05"),
            Some(42.5)
        );
        assert_eq!(ytdlp_percent("[download] Destination: source.mp4"), None);
        assert_eq!(ytdlp_percent("[info] something"), None);
    }
}
