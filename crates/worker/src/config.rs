//! The command line: sub-commands and their flags, each also read from the
//! environment variable named beside it (a flag given on the command line
//! wins). `--help` is generated from the `///` lines below.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use signing::SecretSet;
use url::Url;

use crate::backoff::{DEFAULT_SCHEDULE, RetrySchedule};
use crate::clock::Clock;
use crate::pipeline::ffmpeg::FfmpegConfig;
use crate::pipeline::ffmpeg::fetch::FetchConfig;
use crate::policy::{AllowRule, CallbackPolicy};
use crate::storage::StorageTarget;
use crate::store::{DeliveryStatus, Durability, StoreUrl};

/// clipping-worker: turns long videos into short clips and reports each job's
/// progress to its callback URL with signed, retried, per-job ordered
/// webhooks.
#[derive(Debug, Parser)]
#[command(name = "clipping-worker", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service, the job pipeline and the webhook sender.
    Serve(Box<ServeConfig>),
    /// Submit a job to a running worker and print its JSON answer.
    Submit(SubmitArgs),
    /// Receive webhooks locally, for development: accept POST on any path,
    /// verify each delivery's signature and print it as one JSON line;
    /// answer 200, or 401 on a bad signature.
    Listen(ListenArgs),
    /// Inspect or act on the webhook delivery ledger in the worker's store.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Create the worker's store if needed and apply its migrations, then
    /// exit (`serve` does the same at start).
    Migrate(MigrateArgs),
    /// Exit 0 when a running worker answers its readiness check, 1 otherwise.
    /// For container health checks, where no HTTP client is installed.
    Healthcheck(HealthcheckArgs),
}

/// Arguments of `clipping-worker healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The readiness URL to ask.
    #[arg(long, default_value = "http://127.0.0.1:8000/readyz")]
    pub url: String,
}

/// Which pipeline engine does the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// Real clips: downloads the video, analyses it and renders vertical
    /// clips with `ffmpeg`/`ffprobe` (which must be installed), then stores
    /// them with `--storage`.
    Ffmpeg,
    /// Pretends to process videos: each stage sleeps `--sim-stage-ms` and the
    /// output is made up. For demos, tests and load tests only; it never
    /// fetches the video. A `sim://…?fail_at=<stage>` video URL makes it fail
    /// at that stage.
    Simulated,
}

/// A bearer token whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// The token, for comparing and sending; the only way to read it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for ApiToken {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("the API token must not be empty".to_owned());
        }
        Ok(ApiToken(s.to_owned()))
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

fn parse_secrets(s: &str) -> Result<SecretSet, String> {
    SecretSet::parse_list(s).map_err(|e| e.to_string())
}

/// Configuration of `clipping-worker serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "WORKER_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// Directory of the embedded store (SQLite) and local media.
    #[arg(long, env = "WORKER_DATA_DIR", default_value = "./data/worker")]
    pub data_dir: PathBuf,

    /// Where jobs and the webhook outbox live: `sqlite` (a file under
    /// `--data-dir`, for one worker), `sqlite://PATH`, or
    /// `postgres://user:password@host:port/database`, which any number of
    /// workers share (its tables go in the schema `clipping_worker`).
    #[arg(
        long,
        env = "WORKER_STORE",
        default_value = "sqlite",
        hide_env_values = true
    )]
    pub store: StoreUrl,

    /// One or more `whsec_…` secrets, comma-separated; every one signs each
    /// webhook (key rotation). Without it webhooks are sent unsigned, with a
    /// warning at start.
    #[arg(long, env = "WEBHOOK_SECRET", value_parser = parse_secrets, hide_env_values = true)]
    pub webhook_secret: Option<SecretSet>,

    /// Which pipeline engine does the work: `ffmpeg` makes real clips;
    /// `simulated` is for demos, tests and load tests: it fetches nothing
    /// and makes up its output.
    #[arg(long, env = "WORKER_ENGINE", value_enum, default_value = "ffmpeg")]
    pub engine: EngineKind,

    /// Jobs processed at once; the rest wait, queued.
    #[arg(long, env = "WORKER_MAX_CONCURRENT_JOBS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_jobs: u32,

    /// At most one `job.progress` per job per interval, in milliseconds,
    /// unless the status changed; 0 sends every progress event.
    #[arg(long, env = "WORKER_PROGRESS_INTERVAL_MS", default_value_t = 1000)]
    pub progress_interval_ms: u64,

    /// Hosts, `*.suffix` patterns or CIDRs that callback URLs may point at
    /// even when they resolve to loopback or private addresses;
    /// comma-separated.
    #[arg(long, env = "WORKER_CALLBACK_ALLOW", value_delimiter = ',')]
    pub callback_allow: Vec<AllowRule>,

    /// Allow loopback and private addresses for every callback (development).
    /// Link-local, metadata, multicast and unspecified addresses stay refused.
    #[arg(long, env = "WORKER_ALLOW_PRIVATE_CALLBACKS")]
    pub allow_private_callbacks: bool,

    /// When set, job submission, redelivery and the delivery ledger need
    /// `Authorization: Bearer <token>`.
    #[arg(long, env = "WORKER_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<ApiToken>,

    /// Simulated engine only: how long each stage takes, in milliseconds.
    #[arg(long, env = "WORKER_SIM_STAGE_MS", default_value_t = 300)]
    pub sim_stage_ms: u64,

    /// ffmpeg engine: the `ffmpeg` program.
    #[arg(long, env = "WORKER_FFMPEG_PATH", default_value = "ffmpeg")]
    pub ffmpeg_path: PathBuf,

    /// ffmpeg engine: the `ffprobe` program.
    #[arg(long, env = "WORKER_FFPROBE_PATH", default_value = "ffprobe")]
    pub ffprobe_path: PathBuf,

    /// ffmpeg engine: a command line that transcribes, split like a shell
    /// would but run without one; `{input}` becomes a 16 kHz mono WAV of the
    /// audio and `{output}` the file to write (JSON segments or SRT; the
    /// same name plus `.json` or `.srt` is read too). Without it, clips are
    /// planned from sound and picture alone, with no captions.
    #[arg(long, env = "WORKER_TRANSCRIBER_CMD")]
    pub transcriber_cmd: Option<String>,

    /// ffmpeg engine: the `yt-dlp` program, to fetch pages of video sites
    /// (YouTube and the like). yt-dlp makes its own connections, outside the
    /// callback policy's address checks. Without it such URLs fail.
    #[arg(long, env = "WORKER_YTDLP_PATH")]
    pub ytdlp_path: Option<PathBuf>,

    /// ffmpeg engine: accept `file://` video URLs, read from this machine.
    #[arg(long, env = "WORKER_ALLOW_FILE_URLS")]
    pub allow_file_urls: bool,

    /// ffmpeg engine: a source video larger than this many bytes fails the
    /// job.
    #[arg(long, env = "WORKER_MAX_DOWNLOAD_BYTES", default_value_t = 2 * 1024 * 1024 * 1024)]
    pub max_download_bytes: u64,

    /// ffmpeg engine: longest a download may take, in seconds.
    #[arg(long, env = "WORKER_DOWNLOAD_TIMEOUT_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub download_timeout_secs: u64,

    /// ffmpeg engine: longest any one ffmpeg, ffprobe, yt-dlp or transcriber
    /// run may take, in seconds.
    #[arg(long, env = "WORKER_TOOL_TIMEOUT_SECS", default_value_t = 1800,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub tool_timeout_secs: u64,

    /// ffmpeg engine: the x264 preset clips are encoded with (`ultrafast`
    /// … `veryslow`): faster presets make larger files for the same
    /// quality.
    #[arg(long, env = "WORKER_X264_PRESET", default_value = "veryfast",
          value_parser = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"])]
    pub x264_preset: String,

    /// Base delays before each delivery attempt, comma-separated (`0`, `50ms`,
    /// `5s`, `2m`, `1h`); its length is the number of attempts. Each delay is
    /// drawn at random between zero and its base (full jitter).
    #[arg(long, env = "WORKER_RETRY_SCHEDULE", default_value = DEFAULT_SCHEDULE)]
    pub retry_schedule: RetrySchedule,

    /// Most webhook requests in flight at once, across all jobs.
    #[arg(long, env = "WORKER_MAX_IN_FLIGHT_DELIVERIES", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight_deliveries: u32,

    /// Timeout of one webhook request, in milliseconds (the contract's 10 s).
    #[arg(
        long,
        env = "WORKER_WEBHOOK_TIMEOUT_MS",
        default_value_t = 10_000,
        hide = true
    )]
    pub webhook_timeout_ms: u64,

    /// On shutdown, how long in-flight webhook attempts may take to finish,
    /// in milliseconds; what is left stays in the store for the next start.
    #[arg(long, env = "WORKER_SHUTDOWN_GRACE_MS", default_value_t = 5_000)]
    pub shutdown_grace_ms: u64,

    /// Where rendered clips, posters, transcripts and plans go: `local`
    /// (`<data-dir>/media`, served at `GET /media/…`) or `s3://bucket/prefix`
    /// (credentials, region and endpoint from the standard `AWS_*`
    /// environment variables).
    #[arg(long, env = "WORKER_STORAGE", default_value = "local")]
    pub storage: StorageTarget,

    /// The base of the URLs handed out for media (what browsers can reach).
    /// Local storage: media is served by this worker at `{public-url}/media/`,
    /// by default `http://<the address listened on>`. S3 storage: when given,
    /// object URLs are `{public-url}/{prefix}/{key}` (a CDN or a public
    /// read-only server in front of the bucket) instead of the bucket's own.
    #[arg(long, env = "WORKER_PUBLIC_URL")]
    pub public_url: Option<Url>,

    /// How far each store commit is pushed to disk: `full` survives a power
    /// cut or OS crash; `normal` survives a process crash only, and saves an
    /// fsync per commit.
    #[arg(long, env = "WORKER_DURABILITY", value_enum, default_value_t = Durability::Full)]
    pub durability: Durability,

    /// How long a worker's claim on a job lasts without renewal, in
    /// milliseconds; it is renewed every third of that while the job runs.
    /// A worker that dies is noticed this long after its last renewal: its
    /// job is then failed by another worker (PostgreSQL) or at the next start
    /// (SQLite).
    #[arg(long, env = "WORKER_JOB_LEASE_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(30..))]
    pub job_lease_ms: u64,

    /// How often an idle worker looks at the queue without being woken, in
    /// milliseconds: only the fallback for a lost wake-up (PostgreSQL's
    /// notifications wake idle workers at once).
    #[arg(long, env = "WORKER_QUEUE_POLL_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub queue_poll_ms: u64,

    /// The clock job leases are judged by: the system's, except in tests.
    #[arg(skip)]
    pub clock: Clock,
}

impl ServeConfig {
    /// The defaults of every flag, with the store in `data_dir` and listening
    /// on a free loopback port: the starting point of tests and benchmarks.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        ServeConfig {
            listen: "127.0.0.1:0".parse().expect("a valid address"),
            data_dir: data_dir.into(),
            store: StoreUrl::default(),
            webhook_secret: None,
            engine: EngineKind::Simulated,
            max_concurrent_jobs: 2,
            progress_interval_ms: 1000,
            callback_allow: Vec::new(),
            allow_private_callbacks: false,
            api_token: None,
            sim_stage_ms: 300,
            ffmpeg_path: "ffmpeg".into(),
            ffprobe_path: "ffprobe".into(),
            transcriber_cmd: None,
            ytdlp_path: None,
            allow_file_urls: false,
            max_download_bytes: 2 * 1024 * 1024 * 1024,
            download_timeout_secs: 600,
            tool_timeout_secs: 1800,
            x264_preset: "veryfast".to_owned(),
            retry_schedule: RetrySchedule::default(),
            max_in_flight_deliveries: 256,
            webhook_timeout_ms: 10_000,
            shutdown_grace_ms: 5_000,
            storage: StorageTarget::Local,
            public_url: None,
            durability: Durability::Full,
            job_lease_ms: 30_000,
            queue_poll_ms: 5_000,
            clock: Clock::system(),
        }
    }

    /// The callback policy these flags describe.
    pub fn policy(&self) -> CallbackPolicy {
        CallbackPolicy {
            allow_private: self.allow_private_callbacks,
            allow: self.callback_allow.clone(),
        }
    }

    /// The ffmpeg engine's settings these flags describe; downloads follow
    /// `policy`, the callback policy.
    pub fn ffmpeg_config(&self, policy: Arc<CallbackPolicy>) -> FfmpegConfig {
        FfmpegConfig {
            ffmpeg: self.ffmpeg_path.clone(),
            ffprobe: self.ffprobe_path.clone(),
            transcriber_cmd: self.transcriber_cmd.clone(),
            fetch: FetchConfig {
                policy,
                max_bytes: self.max_download_bytes,
                timeout: Duration::from_secs(self.download_timeout_secs),
                allow_file_urls: self.allow_file_urls,
                ytdlp: self.ytdlp_path.clone(),
            },
            tool_timeout: Duration::from_secs(self.tool_timeout_secs),
            preset: self.x264_preset.clone(),
            work_root: self.data_dir.join("work"),
            // One encoder per core: x264 already spreads one encode over
            // several threads, and more at once only adds memory.
            encoders: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// The progress throttle interval.
    pub fn progress_interval(&self) -> Duration {
        Duration::from_millis(self.progress_interval_ms)
    }
}

/// Arguments of `clipping-worker submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The video to clip (http(s); `sim://…` for the simulated engine).
    #[arg(long)]
    pub video_url: String,
    /// Where the job's webhooks go.
    #[arg(long)]
    pub callback_url: Option<String>,
    /// How many clips to make, 1 to 20.
    #[arg(long)]
    pub max_clips: Option<u32>,
    /// Your own id of the job; submitting it again returns the same job.
    #[arg(long)]
    pub external_job_id: Option<String>,
    /// The user you act for; echoed in every webhook.
    #[arg(long)]
    pub owner_user_id: Option<String>,
    /// The worker to submit to.
    #[arg(
        long,
        env = "CLIPPING_WORKER_URL",
        default_value = "http://127.0.0.1:8000"
    )]
    pub worker_url: String,
    /// Bearer token, when the worker was started with `--api-token`.
    #[arg(long, env = "WORKER_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<ApiToken>,
}

/// Arguments of `clipping-worker listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// The `whsec_…` secret(s) to verify with, comma-separated.
    #[arg(long, env = "WEBHOOK_SECRET", value_parser = parse_secrets, hide_env_values = true)]
    pub secret: SecretSet,
}

/// `clipping-worker webhooks …`.
#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// List deliveries from the worker's store, oldest first.
    List(ListArgs),
    /// Queue a delivery again (a running worker on the same store picks it
    /// up within a second; otherwise it goes out at the next start).
    Redeliver(RedeliverArgs),
}

/// Arguments of `webhooks list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only deliveries in this state: pending, delivered, failed or
    /// superseded.
    #[arg(long)]
    pub status: Option<DeliveryStatus>,
    /// Only this job's deliveries.
    #[arg(long)]
    pub job: Option<String>,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Which store to read.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Arguments of `webhooks redeliver`.
#[derive(Debug, Args)]
pub struct RedeliverArgs {
    /// The delivery (its `msg_…` webhook id).
    pub delivery_id: String,
    /// Which store to read.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Arguments of `clipping-worker migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Which store to create or bring up to date.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// The store a sub-command other than `serve` works on, named as `serve`
/// names it.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Directory of the worker's store, when it is `sqlite`.
    #[arg(long, env = "WORKER_DATA_DIR", default_value = "./data/worker")]
    pub data_dir: PathBuf,
    /// The worker's store, as `serve --store` names it.
    #[arg(
        long,
        env = "WORKER_STORE",
        default_value = "sqlite",
        hide_env_values = true
    )]
    pub store: StoreUrl,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let cfg = Cli::try_parse_from([
            "clipping-worker",
            "serve",
            "--api-token",
            "tok-very-secret",
            "--webhook-secret",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ])
        .unwrap();
        let text = format!("{cfg:?}");
        assert!(!text.contains("tok-very-secret"), "{text}");
        assert!(!text.contains("MfKQ9r8G"), "{text}");
        assert!(text.contains("[redacted]"));
    }
}
