//! Where a job's media goes once it is made: rendered clips, poster images,
//! `transcript.json` and `plan.json`, each stored under a *key* such as
//! `clips/{owner}/{job_id}/clip_00.mp4`, and the URL it can be fetched from.
//!
//! `--storage` (`WORKER_STORAGE`) picks the store:
//! - `local` (the default): files under `<data-dir>/media`, served by this
//!   worker at `GET /media/{key}` ([`media_router`]) with their content type
//!   and range requests (`206`), which browsers need to seek in a video. The
//!   URLs handed out start with `--public-url` (`WORKER_PUBLIC_URL`), by
//!   default `http://<the bound address>`.
//! - `s3://bucket/prefix`: any S3-compatible service, through the
//!   `object_store` crate. Credentials, region and endpoint come from the
//!   standard environment variables (`AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` or `AWS_DEFAULT_REGION`,
//!   `AWS_ENDPOINT_URL`, and `AWS_ALLOW_HTTP=true` for a plain-http local
//!   server). Without a custom endpoint the URLs are AWS's virtual-hosted
//!   form, `https://{bucket}.s3.{region}.amazonaws.com/{prefix}/{key}`, which
//!   the API's CDN rewrite recognises; with one they are path style,
//!   `{endpoint}/{bucket}/{prefix}/{key}`.
//!
//! Keys are checked before anything is written: segments of RFC 3986
//! unreserved characters (`A-Z a-z 0-9 - . _ ~`), none empty and none
//! starting with a dot, so a key never needs escaping in a URL, never climbs
//! out of the media directory, and never names the local store's staging
//! directory (`.partial`). [`key_segment`] turns an arbitrary string (an
//! owner id) into a valid segment.
//!
//! Files are streamed, never read whole: locally by a kernel copy into the
//! staging directory and a rename (a reader never sees half a file); on S3
//! by one `PUT` up to [`S3_PART_BYTES`], and above that by a multipart upload
//! of parts that size with at most [`S3_PARTS_IN_FLIGHT`] in flight, so an
//! upload holds at most a few parts in memory whatever the video's size.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures_util::StreamExt as _;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, ObjectStore, PutMultipartOptions, PutOptions, WriteMultipart,
};
use tokio::io::AsyncReadExt as _;
use tower_http::services::ServeDir;
use url::Url;

use crate::error::ApiError;

/// The size of one S3 upload part, and the largest file sent in one `PUT`.
/// S3 wants parts of at least 5 MiB (but the last); 8 MiB keeps the number
/// of requests low and the memory bounded.
pub const S3_PART_BYTES: usize = 8 * 1024 * 1024;

/// Parts of one multipart upload in flight at once.
pub const S3_PARTS_IN_FLIGHT: usize = 2;

/// The local store's staging directory, inside the media root: files are
/// copied here, then renamed into place. Never served (keys cannot start
/// with a dot).
const PARTIAL_DIR: &str = ".partial";

/// Where `--storage` says media goes: `local` or `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageTarget {
    /// Files under `<data-dir>/media`, served at `GET /media/…`.
    Local,
    /// An S3 bucket, every key under `prefix` (which may be empty).
    S3 {
        /// The bucket's name.
        bucket: String,
        /// Segments put before every key, without leading or trailing `/`.
        prefix: String,
    },
}

impl std::str::FromStr for StorageTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "local" {
            return Ok(StorageTarget::Local);
        }
        let Some(rest) = s.strip_prefix("s3://") else {
            return Err(format!(
                "expected `local` or `s3://bucket/prefix`, got `{s}`"
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && !bucket.starts_with(['.', '-'])
            && !bucket.ends_with(['.', '-']);
        if !bucket_ok {
            return Err(format!(
                "`{bucket}` is not an S3 bucket name (3 to 63 lowercase letters, digits, dots and hyphens)"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            check_key(prefix).map_err(|e| format!("the prefix of `{s}`: {e}"))?;
        }
        Ok(StorageTarget::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

impl std::fmt::Display for StorageTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageTarget::Local => f.write_str("local"),
            StorageTarget::S3 { bucket, prefix } if prefix.is_empty() => {
                write!(f, "s3://{bucket}")
            }
            StorageTarget::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// A handle to the configured object store; cheap to clone.
#[derive(Clone)]
pub struct MediaStore {
    inner: Arc<Inner>,
}

enum Inner {
    Local {
        /// `<data-dir>/media`: the file of key `k` is `root/k`.
        root: PathBuf,
        /// `{public_url}/media/`: the URL of key `k` is `base + k`.
        base: String,
    },
    S3 {
        store: Box<dyn ObjectStore>,
        bucket: String,
        /// Without leading or trailing `/`; may be empty.
        prefix: String,
        /// The URL of the object named `p` is `base + p` (`p` includes
        /// `prefix`).
        base: String,
    },
}

/// Never prints credentials: the S3 client's own `Debug` would.
impl std::fmt::Debug for MediaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.inner {
            Inner::Local { root, base } => f
                .debug_struct("MediaStore::Local")
                .field("root", root)
                .field("base", base)
                .finish(),
            Inner::S3 {
                bucket,
                prefix,
                base,
                ..
            } => f
                .debug_struct("MediaStore::S3")
                .field("bucket", bucket)
                .field("prefix", prefix)
                .field("base", base)
                .finish_non_exhaustive(),
        }
    }
}

impl MediaStore {
    /// Opens the store `target` names. Local: the root is
    /// `data_dir/media` (created; leftovers of interrupted copies are
    /// removed) and URLs start with `public_url` + `/media/`. S3: the client
    /// is configured from the `AWS_*` environment; nothing is sent until the
    /// first upload.
    pub async fn open(
        target: &StorageTarget,
        data_dir: &Path,
        public_url: &Url,
    ) -> anyhow::Result<MediaStore> {
        // `vars_os`: `vars` panics on a variable that is not UTF-8.
        let env = std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        });
        MediaStore::open_with_env(target, data_dir, public_url, env).await
    }

    /// [`MediaStore::open`] with the `AWS_*` variables taken from `env`
    /// instead of the process environment (tests, and callers that keep
    /// their credentials elsewhere). Variables not starting with `AWS_` are
    /// ignored.
    pub async fn open_with_env(
        target: &StorageTarget,
        data_dir: &Path,
        public_url: &Url,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<MediaStore> {
        let inner = match target {
            StorageTarget::Local => {
                let root = data_dir.join("media");
                let partial = root.join(PARTIAL_DIR);
                match tokio::fs::remove_dir_all(&partial).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("failed to clear {}", partial.display()));
                    }
                }
                tokio::fs::create_dir_all(&partial)
                    .await
                    .with_context(|| format!("failed to create {}", partial.display()))?;
                let base = format!("{}/media/", public_url.as_str().trim_end_matches('/'));
                Inner::Local { root, base }
            }
            StorageTarget::S3 { bucket, prefix } => {
                let mut builder = AmazonS3Builder::new();
                for (name, value) in env {
                    if !name.starts_with("AWS_") {
                        continue;
                    }
                    // The same mapping as `AmazonS3Builder::from_env`; names
                    // it does not know (AWS_PROFILE…) are left alone.
                    if let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                        builder = builder.with_config(key, value);
                    }
                }
                let builder = builder.with_bucket_name(bucket);
                let config = |key| builder.get_config_value(&key);
                let endpoint = config(AmazonS3ConfigKey::S3Endpoint)
                    .or_else(|| config(AmazonS3ConfigKey::Endpoint));
                let virtual_hosted = config(AmazonS3ConfigKey::VirtualHostedStyleRequest)
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"));
                let region =
                    config(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".to_owned());
                let base = s3_base_url(bucket, &region, endpoint.as_deref(), virtual_hosted);
                let store = builder
                    .build()
                    .context("failed to configure S3 storage from the AWS_* environment")?;
                Inner::S3 {
                    store: Box::new(store),
                    bucket: bucket.clone(),
                    prefix: prefix.clone(),
                    base,
                }
            }
        };
        Ok(MediaStore {
            inner: Arc::new(inner),
        })
    }

    /// S3 only: hands out `{base}/{prefix}/{key}` instead of the bucket's own
    /// URL, for a CDN or a public read-only server in front of the bucket
    /// (`--public-url` given with S3 storage). A local store is returned as
    /// it is: its URLs already start with the public URL.
    pub fn with_public_base(self, base: &Url) -> MediaStore {
        let inner = match Arc::try_unwrap(self.inner) {
            Ok(Inner::S3 {
                store,
                bucket,
                prefix,
                ..
            }) => Inner::S3 {
                store,
                bucket,
                prefix,
                base: format!("{}/", base.as_str().trim_end_matches('/')),
            },
            Ok(other) => other,
            Err(shared) => return MediaStore { inner: shared },
        };
        MediaStore {
            inner: Arc::new(inner),
        }
    }

    /// Stores the file at `path` under `key` with `content_type`, streaming
    /// it (see the module docs), and returns the URL it can be fetched from.
    /// A key stored again is replaced.
    ///
    /// The local store serves a file with the content type its extension
    /// implies (`.mp4` video/mp4, `.jpg` image/jpeg, `.json`
    /// application/json); a `content_type` that disagrees is logged.
    pub async fn put_file(
        &self,
        key: &str,
        path: &Path,
        content_type: &str,
    ) -> anyhow::Result<String> {
        check_key(key).with_context(|| format!("refusing to store `{key}`"))?;
        match &*self.inner {
            Inner::Local { root, base } => {
                let served = mime_guess::from_path(key).first_or_octet_stream();
                let asked = content_type.split(';').next().unwrap_or("").trim();
                if !served.essence_str().eq_ignore_ascii_case(asked) {
                    tracing::warn!(
                        key,
                        content_type,
                        served = %served,
                        "local storage serves this key with the content type of its extension"
                    );
                }
                put_local(root, key, path).await?;
                Ok(format!("{base}{key}"))
            }
            Inner::S3 {
                store,
                prefix,
                base,
                ..
            } => {
                let name = object_name(prefix, key);
                put_s3(store.as_ref(), &name, path, content_type)
                    .await
                    .with_context(|| format!("failed to upload {} to S3", path.display()))?;
                Ok(format!("{base}{name}"))
            }
        }
    }

    /// Removes every object under `prefix` (whole segments: `clips/u/j`
    /// covers `clips/u/j/a.mp4`, not `clips/u/j2/a.mp4`); nothing there is
    /// not an error. An empty prefix is refused: it would mean everything.
    pub async fn delete_prefix(&self, prefix: &str) -> anyhow::Result<()> {
        let prefix = prefix.trim_end_matches('/');
        check_key(prefix).with_context(|| format!("refusing to delete under `{prefix}`"))?;
        match &*self.inner {
            Inner::Local { root, .. } => {
                let target = root.join(prefix);
                let meta = match tokio::fs::symlink_metadata(&target).await {
                    Ok(m) => m,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("failed to inspect {}", target.display()));
                    }
                };
                let removed = if meta.is_dir() {
                    tokio::fs::remove_dir_all(&target).await
                } else {
                    tokio::fs::remove_file(&target).await
                };
                removed.with_context(|| format!("failed to remove {}", target.display()))
            }
            Inner::S3 {
                store, prefix: p, ..
            } => {
                let under = ObjectPath::from(object_name(p, prefix));
                let locations = store
                    .list(Some(&under))
                    .map(|meta| meta.map(|m| m.location))
                    .boxed();
                let mut deleted = store.delete_stream(locations);
                let mut count = 0_usize;
                while let Some(result) = deleted.next().await {
                    match result {
                        Ok(_) => count += 1,
                        Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => {
                            return Err(e).with_context(|| {
                                format!("failed to delete S3 objects under `{under}`")
                            });
                        }
                    }
                }
                tracing::debug!(prefix = %under, count, "deleted S3 objects");
                Ok(())
            }
        }
    }

    /// `"local"` or `"s3"`, for logs.
    pub fn kind(&self) -> &'static str {
        match &*self.inner {
            Inner::Local { .. } => "local",
            Inner::S3 { .. } => "s3",
        }
    }

    /// The local store's media directory (`None` for S3).
    pub fn local_root(&self) -> Option<&Path> {
        match &*self.inner {
            Inner::Local { root, .. } => Some(root),
            Inner::S3 { .. } => None,
        }
    }
}

/// The `/media/{key}` routes of the local store, to merge into the worker's
/// router (any state type, so they sit under the same layers); an empty
/// router for S3, whose objects are fetched from S3.
///
/// Answers GET and HEAD with the file, its content type (from the
/// extension), `Accept-Ranges`, `206` for a satisfiable `Range`, `416` for
/// one that is not, and `Last-Modified`/conditional requests. A path that is
/// not a valid key (`..`, `.partial/…`, an absolute or encoded trick) or
/// names no file is a `404` in the contract's error shape.
pub fn media_router<S>(store: &MediaStore) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let Inner::Local { root, .. } = &*store.inner else {
        return Router::new();
    };
    let files = ServeDir::new(root)
        .append_index_html_on_directories(false)
        .not_found_service(axum::routing::any(not_found));
    Router::new()
        .nest_service("/media", files)
        .layer(middleware::from_fn(only_valid_keys))
}

async fn not_found() -> ApiError {
    ApiError::NoRoute(StatusCode::NOT_FOUND)
}

/// Lets a request reach the files only when its path, decoded, is a valid
/// key: the same rule as for storing, so nothing is served that could not
/// have been stored (the staging directory, dot files, `..`).
async fn only_valid_keys(request: Request<Body>, next: Next) -> Response {
    let path = request.uri().path();
    let valid = path
        .strip_prefix("/media/")
        .and_then(|raw| percent_encoding::percent_decode_str(raw).decode_utf8().ok())
        .is_some_and(|key| check_key(&key).is_ok());
    if valid {
        next.run(request).await
    } else {
        not_found().await.into_response()
    }
}

/// Turns any string into a valid key segment: characters outside
/// `A-Z a-z 0-9 - . _ ~` become `_`, a leading dot becomes `_`, and an empty
/// string becomes `_`. Different inputs may give the same segment, so a key
/// should also hold something unique (a job id).
pub fn key_segment(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .map(|c| if is_key_char(c) { c } else { '_' })
        .collect();
    if out.starts_with('.') {
        out.replace_range(..1, "_");
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

/// The longest key accepted, in bytes (S3's own limit).
const MAX_KEY_BYTES: usize = 1024;

/// Checks a key (or a prefix of whole segments) against the rule in the
/// module docs.
fn check_key(key: &str) -> anyhow::Result<()> {
    if key.is_empty() {
        bail!("a key must not be empty");
    }
    if key.len() > MAX_KEY_BYTES {
        bail!("a key must be at most {MAX_KEY_BYTES} bytes");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            bail!("a key must not have empty segments (`//`, or a leading or trailing `/`)");
        }
        if segment.starts_with('.') {
            bail!("a key segment must not start with a dot");
        }
        if !segment.chars().all(is_key_char) {
            bail!("a key segment may only hold A-Z a-z 0-9 - . _ ~");
        }
    }
    Ok(())
}

/// The object name of `key` under `prefix`.
fn object_name(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}/{key}")
    }
}

/// The URL an object name is appended to, the way `object_store` addresses
/// the bucket: AWS's virtual-hosted form without an endpoint; path style
/// with one, unless virtual-hosted requests were asked for, in which case
/// the endpoint already names the bucket.
fn s3_base_url(bucket: &str, region: &str, endpoint: Option<&str>, virtual_hosted: bool) -> String {
    match endpoint {
        None => format!("https://{bucket}.s3.{region}.amazonaws.com/"),
        Some(e) if virtual_hosted => format!("{}/", e.trim_end_matches('/')),
        Some(e) => format!("{}/{bucket}/", e.trim_end_matches('/')),
    }
}

/// Copies `source` into the staging directory, flushes it, and renames it
/// to `root/key`, so the key holds either the old file or the whole new one.
async fn put_local(root: &Path, key: &str, source: &Path) -> anyhow::Result<()> {
    let dest = root.join(key);
    let parent = dest.parent().expect("a key has a file name under the root");
    tokio::fs::create_dir_all(parent)
        .await
        .with_context(|| format!("failed to create {}", parent.display()))?;
    let staging = root
        .join(PARTIAL_DIR)
        .join(format!("{}.part", uuid::Uuid::new_v4()));
    let copied = async {
        tokio::fs::copy(source, &staging).await.with_context(|| {
            format!(
                "failed to copy {} into the media directory",
                source.display()
            )
        })?;
        let file = tokio::fs::File::open(&staging).await?;
        file.sync_all()
            .await
            .with_context(|| format!("failed to flush {}", staging.display()))?;
        tokio::fs::rename(&staging, &dest)
            .await
            .with_context(|| format!("failed to move a file into {}", dest.display()))
    }
    .await;
    if copied.is_err() {
        let _ = tokio::fs::remove_file(&staging).await;
    }
    copied
}

/// Uploads `source` as `name`: one `PUT` when it fits in a part, else a
/// multipart upload that is aborted on any error (no orphaned parts).
async fn put_s3(
    store: &dyn ObjectStore,
    name: &str,
    source: &Path,
    content_type: &str,
) -> anyhow::Result<()> {
    let location = ObjectPath::from(name);
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, content_type.to_owned().into());
    let mut file = tokio::fs::File::open(source)
        .await
        .with_context(|| format!("failed to open {}", source.display()))?;
    let size = file.metadata().await?.len();
    if size <= S3_PART_BYTES as u64 {
        let body = read_part(&mut file, S3_PART_BYTES).await?;
        let options = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        store.put_opts(&location, body.into(), options).await?;
        return Ok(());
    }
    let options = PutMultipartOptions {
        attributes,
        ..PutMultipartOptions::default()
    };
    let upload = store.put_multipart_opts(&location, options).await?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, S3_PART_BYTES);
    let sent = async {
        loop {
            let part = read_part(&mut file, S3_PART_BYTES).await?;
            if part.is_empty() {
                break;
            }
            writer.wait_for_capacity(S3_PARTS_IN_FLIGHT).await?;
            writer.put(part);
        }
        anyhow::Ok(())
    }
    .await;
    match sent {
        Ok(()) => {
            writer.finish().await?;
            Ok(())
        }
        Err(e) => {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(error = %abort, object = name, "failed to abort a multipart upload");
            }
            Err(e)
        }
    }
}

/// Reads up to `limit` bytes (fewer only at the end of the file).
async fn read_part(file: &mut tokio::fs::File, limit: usize) -> anyhow::Result<bytes::Bytes> {
    let mut buf = BytesMut::with_capacity(limit);
    while buf.len() < limit {
        let want = limit - buf.len();
        let n = (&mut *file)
            .take(want as u64)
            .read_buf(&mut buf)
            .await
            .context("failed to read the file to upload")?;
        if n == 0 {
            break;
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_targets_parse() {
        assert_eq!("local".parse::<StorageTarget>(), Ok(StorageTarget::Local));
        assert_eq!(
            "s3://media-bucket/clips/v1/".parse::<StorageTarget>(),
            Ok(StorageTarget::S3 {
                bucket: "media-bucket".into(),
                prefix: "clips/v1".into()
            })
        );
        assert_eq!(
            "s3://media-bucket".parse::<StorageTarget>(),
            Ok(StorageTarget::S3 {
                bucket: "media-bucket".into(),
                prefix: String::new()
            })
        );
        for bad in [
            "",
            "s3",
            "file:///tmp",
            "s3://",
            "s3://Upper",
            "s3://ab",
            "s3://b/../x",
            "s3://bucket/a//b",
            "s3://bucket/sp ace",
        ] {
            assert!(bad.parse::<StorageTarget>().is_err(), "{bad} parsed");
        }
        assert_eq!(
            "s3://b-1/p".parse::<StorageTarget>().unwrap().to_string(),
            "s3://b-1/p"
        );
    }

    #[test]
    fn the_flags_parse_into_the_serve_config() {
        use clap::Parser as _;

        use crate::config::{Cli, Command};
        let serve = |args: &[&str]| {
            let argv = ["clipping-worker", "serve"].iter().chain(args);
            match Cli::try_parse_from(argv).map(|c| c.command) {
                Ok(Command::Serve(config)) => Ok(*config),
                Ok(other) => panic!("{other:?}"),
                Err(e) => Err(e),
            }
        };
        let defaults = serve(&[]).unwrap();
        assert_eq!(defaults.storage, StorageTarget::Local);
        assert_eq!(defaults.public_url, None);
        let set = serve(&[
            "--storage",
            "s3://clips-bucket/prod",
            "--public-url",
            "https://media.example.com",
        ])
        .unwrap();
        assert_eq!(
            set.storage,
            StorageTarget::S3 {
                bucket: "clips-bucket".into(),
                prefix: "prod".into()
            }
        );
        assert_eq!(
            set.public_url.unwrap().as_str(),
            "https://media.example.com/"
        );
        assert!(serve(&["--storage", "gs://bucket"]).is_err());
        assert!(serve(&["--public-url", "not a url"]).is_err());
    }

    #[test]
    fn keys_are_checked() {
        for good in ["a", "clips/user_789/0190-abc/clip_00.mp4", "a/b.c~d-e"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/abs",
            "a/",
            "a//b",
            "..",
            "a/../b",
            "./a",
            ".partial/x",
            "a/.hidden",
            "a b",
            "a%2fb",
            "a\\b",
            "é",
            "a\0b",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?} passed");
        }
        assert!(check_key(&"a".repeat(MAX_KEY_BYTES + 1)).is_err());
    }

    #[test]
    fn any_string_becomes_a_valid_segment() {
        for raw in [
            "",
            ".",
            "..",
            "user@example.com",
            "a/b",
            "ünï",
            ".x",
            "ok_1",
        ] {
            let s = key_segment(raw);
            assert!(check_key(&s).is_ok(), "{raw:?} -> {s:?}");
            assert!(!s.contains('/'));
        }
        assert_eq!(key_segment("user_789"), "user_789");
    }

    #[test]
    fn s3_urls_follow_the_addressing_style() {
        assert_eq!(
            s3_base_url("b", "eu-west-1", None, false),
            "https://b.s3.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            s3_base_url("b", "x", Some("http://127.0.0.1:9000/"), false),
            "http://127.0.0.1:9000/b/"
        );
        assert_eq!(
            s3_base_url("b", "x", Some("https://b.example.com"), true),
            "https://b.example.com/"
        );
        assert_eq!(object_name("", "k/v.mp4"), "k/v.mp4");
        assert_eq!(object_name("p/q", "k/v.mp4"), "p/q/k/v.mp4");
    }
}
