//! Command line and configuration: every flag of the contract's table, read
//! from the command line or the environment, checked once at start.
//!
//! Secrets (the webhook secrets, the database URL which may carry a password,
//! API tokens given to `watch`) live in types whose `Debug` prints
//! `[redacted]`, so logging a configuration never leaks one.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret as _, SecretString};
use signing::SecretSet;
use url::Url;

/// viewcreator-api: keeps clipping jobs in PostgreSQL, receives the clipping
/// worker's signed webhooks and pushes each job's progress to its owner's
/// browser.
#[derive(Debug, Parser)]
#[command(name = "viewcreator-api", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The sub-commands of the contract.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run migrations, then the HTTP and WebSocket service.
    Serve(ServeArgs),
    /// Run migrations and exit.
    Migrate(DbArgs),
    /// Manage users.
    Users {
        /// What to do with users.
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Follow a job over the WebSocket with a progress bar; exit 0 when it
    /// completes, 1 when it fails.
    Watch(WatchArgs),
    /// Exit 0 when a running API answers its readiness check, 1 otherwise.
    /// For container health checks, where no HTTP client is installed.
    Healthcheck(HealthcheckArgs),
}

/// Arguments of `healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The readiness URL to ask.
    #[arg(long, default_value = "http://127.0.0.1:3000/readyz")]
    pub url: Url,
}

/// `users` sub-commands.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user and an API token; print `{"user_id", "token"}` on one
    /// line. The token is shown only this once: only its hash is stored.
    Create(CreateUserArgs),
}

/// Where the database is; shared by every sub-command that touches it.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// PostgreSQL connection URL.
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: DatabaseUrl,
}

/// A plausible e-mail address: one `@` with something before it and a
/// dotted domain after it, no spaces. (Whether it receives mail is not this
/// command's to know.)
fn parse_email(s: &str) -> Result<String, String> {
    let s = s.trim();
    let plausible = match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if plausible {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not an e-mail address (like name@example.com)"
        ))
    }
}

/// Arguments of `users create`.
#[derive(Debug, Args)]
pub struct CreateUserArgs {
    /// The user's e-mail address, unique.
    #[arg(long, value_parser = parse_email)]
    pub email: String,
    /// A display name.
    #[arg(long)]
    pub name: Option<String>,
    /// The database.
    #[command(flatten)]
    pub db: DbArgs,
}

/// Arguments of `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The API's id of the job to follow.
    pub job_id: uuid::Uuid,
    /// An API token of the job's owner.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub token: Token,
    /// The API's base URL (http, https, ws or wss).
    #[arg(long, env = "API_URL", default_value = "http://127.0.0.1:3000")]
    pub url: Url,
}

/// Arguments of `serve`, exactly the contract's table.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Bind address.
    #[arg(long, env = "API_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// The database.
    #[command(flatten)]
    pub db: DbArgs,
    /// One or more `whsec_…` secrets, comma-separated; a delivery passes when
    /// any signature entry verifies with any secret. Required unless
    /// `--insecure-accept-unsigned`.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<SecretSet>,
    /// Accept webhooks without checking signatures. For local experiments
    /// only: anyone who can reach the API can then forge job updates.
    #[arg(long, env = "API_INSECURE_ACCEPT_UNSIGNED")]
    pub insecure_accept_unsigned: bool,
    /// Where jobs are submitted (the clipping worker's base URL).
    #[arg(
        long,
        env = "CLIPPING_WORKER_URL",
        default_value = "http://127.0.0.1:8000"
    )]
    pub worker_url: Url,
    /// This API's public base URL; builds `callback_url` =
    /// `{API_BASE_URL}/webhooks/clipping`. Defaults to `http://<listen>`.
    #[arg(long, env = "API_BASE_URL")]
    pub public_url: Option<Url>,
    /// Rewrites S3 clip URLs to `https://{domain}/{key}`.
    #[arg(long, env = "MEDIA_CDN_DOMAIN")]
    pub media_cdn_domain: Option<String>,
    /// Browser origins allowed to open the WebSocket, comma-separated.
    /// Defaults to the public URL's origin.
    #[arg(long, env = "API_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// A submitted or processing job with no webhook for this long is
    /// reconciled by asking the worker.
    #[arg(long, env = "API_STALE_AFTER_SECS", default_value_t = 300)]
    pub stale_after_secs: u64,
}

/// A database URL; it may carry a password, so it is kept as a secret
/// (`Debug` prints `[redacted]`, the memory is wiped on drop) and read only
/// through [`DatabaseUrl::expose`].
#[derive(Clone)]
pub struct DatabaseUrl(SecretString);

impl DatabaseUrl {
    /// The URL, for connecting.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(Self(SecretString::from(s)))
        } else {
            Err("expected a postgres:// or postgresql:// URL".to_owned())
        }
    }
}

/// An API token given on the command line, kept as a secret and read only
/// through [`Token::expose`].
#[derive(Clone)]
pub struct Token(SecretString);

impl Token {
    /// The token, for sending.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for Token {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            Err("the token is empty".to_owned())
        } else {
            Ok(Self(SecretString::from(s)))
        }
    }
}

/// Why `serve`'s flags do not make a usable configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither a secret nor the explicit opt-out was given.
    #[error(
        "--webhook-secret (WEBHOOK_SECRET) is required; pass --insecure-accept-unsigned to accept unsigned webhooks"
    )]
    MissingSecret,
    /// An allowed origin is not an origin.
    #[error("--allowed-origins: {0:?} is not an origin such as https://app.example.com")]
    BadOrigin(String),
    /// The CDN domain is not a bare host name.
    #[error(
        "--media-cdn-domain: {0:?} must be a host name such as cdn.example.com, without scheme or path"
    )]
    BadCdnDomain(String),
}

/// The checked configuration the application runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bind address; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// PostgreSQL.
    pub database_url: DatabaseUrl,
    /// The secrets webhooks are verified with; `None` only when the operator
    /// explicitly chose to accept unsigned webhooks.
    pub webhook_secrets: Option<SecretSet>,
    /// The worker's base URL.
    pub worker_url: Url,
    /// This API's public base URL; `None` means `http://<bound address>`,
    /// resolved once the listener is bound.
    pub public_url: Option<Url>,
    /// CDN host that S3 clip URLs are rewritten to.
    pub media_cdn_domain: Option<String>,
    /// Browser origins allowed on `/ws`, normalised (`scheme://host[:port]`);
    /// empty means the public URL's origin.
    pub allowed_origins: Vec<String>,
    /// Quiet time after which an active job is reconciled.
    pub stale_after: Duration,
    /// Intervals and limits not on the command line; tests shorten them.
    pub tuning: Tuning,
}

/// Internal knobs with production defaults. Not flags: the contract fixes the
/// command line, and these only need changing in tests and benchmarks.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// How often the submitter looks for due submissions without being woken.
    pub submit_poll: Duration,
    /// First retry delay of a failed submission; doubles per attempt.
    pub submit_backoff_base: Duration,
    /// Longest delay between two submission attempts.
    pub submit_backoff_max: Duration,
    /// Timeout of one HTTP call to the worker.
    pub worker_timeout: Duration,
    /// How often the reconciler looks for quiet jobs.
    pub reconcile_interval: Duration,
    /// How often the hub reads the event log without a NOTIFY (the fallback
    /// for lost notifications and a dropped LISTEN connection).
    pub hub_poll: Duration,
    /// Server ping period on WebSockets.
    pub ws_ping: Duration,
    /// A WebSocket silent for this long is closed.
    pub ws_idle_timeout: Duration,
    /// Events queued per connection before it counts as too slow (1013).
    pub ws_queue: usize,
    /// Most WebSocket connections one user may hold on one instance.
    pub ws_max_per_user: usize,
    /// Most database connections.
    pub db_max_connections: u32,
    /// Parallel group-commit lanes of the receiver.
    pub commit_lanes: usize,
    /// Most webhook deliveries sharing one commit; 1 turns group commit off
    /// (one transaction per delivery).
    pub commit_batch: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            submit_poll: Duration::from_secs(1),
            submit_backoff_base: Duration::from_secs(1),
            submit_backoff_max: Duration::from_secs(60),
            worker_timeout: Duration::from_secs(10),
            reconcile_interval: Duration::from_secs(15),
            hub_poll: Duration::from_millis(300),
            ws_ping: Duration::from_secs(20),
            ws_idle_timeout: Duration::from_secs(60),
            ws_queue: 256,
            ws_max_per_user: 32,
            db_max_connections: 32,
            commit_lanes: 4,
            commit_batch: 64,
        }
    }
}

impl ServeArgs {
    /// Checks the flags and builds the configuration.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let webhook_secrets = match (self.webhook_secret, self.insecure_accept_unsigned) {
            (Some(set), _) => Some(set),
            (None, true) => None,
            (None, false) => return Err(ConfigError::MissingSecret),
        };
        let allowed_origins = self
            .allowed_origins
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
            .map(|o| normalise_origin(o).ok_or_else(|| ConfigError::BadOrigin(o.to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(domain) = &self.media_cdn_domain
            && (domain.is_empty() || domain.contains(['/', ':', ' ']))
        {
            return Err(ConfigError::BadCdnDomain(domain.clone()));
        }
        Ok(Config {
            listen: self.listen,
            database_url: self.db.database_url,
            webhook_secrets,
            worker_url: self.worker_url,
            public_url: self.public_url,
            media_cdn_domain: self.media_cdn_domain,
            allowed_origins,
            stale_after: Duration::from_secs(self.stale_after_secs),
            tuning: Tuning::default(),
        })
    }
}

/// `scheme://host[:port]` of a URL, lower-cased, default port omitted: the
/// form browsers send in `Origin`.
pub fn normalise_origin(text: &str) -> Option<String> {
    let url = Url::parse(text).ok()?;
    match url.origin() {
        url::Origin::Tuple(..) => Some(url.origin().ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}

#[cfg(test)]
mod email_tests {
    #[test]
    fn e_mail_addresses_are_checked() {
        for ok in ["a@example.com", " demo-1@x.io "] {
            assert!(super::parse_email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "notanemail",
            "@example.com",
            "a@b",
            "a@b@c.com",
            "a b@c.com",
            "a@.com",
            "a@com.",
        ] {
            assert!(super::parse_email(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised() {
        assert_eq!(
            normalise_origin("HTTP://Example.com:80/").as_deref(),
            Some("http://example.com")
        );
        assert_eq!(
            normalise_origin("https://a.b:8443").as_deref(),
            Some("https://a.b:8443")
        );
        assert_eq!(normalise_origin("not an origin"), None);
    }

    #[test]
    fn secret_is_required_unless_opted_out() {
        let args = |extra: &[&str]| {
            let mut argv = vec![
                "viewcreator-api",
                "serve",
                "--database-url",
                "postgres://x/y",
            ];
            argv.extend_from_slice(extra);
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Serve(a) => a,
                _ => unreachable!(),
            }
        };
        assert!(matches!(
            args(&[]).into_config(),
            Err(ConfigError::MissingSecret)
        ));
        assert!(args(&["--insecure-accept-unsigned"]).into_config().is_ok());
        let cfg = args(&["--webhook-secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
            .into_config()
            .unwrap();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("MfKQ9r8G"), "{shown}");
        assert!(!shown.contains("postgres://x/y"), "{shown}");
    }
}
