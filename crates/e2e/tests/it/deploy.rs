//! `docker-compose.yml` and `deploy/Dockerfile`, checked statically.
//!
//! No container engine runs where the tests run, so these tests read the
//! files and hold them against the binaries' own command-line definitions:
//! every environment variable the compose file sets must be one the binary
//! reads, every command it runs must exist, and the network layout must keep
//! webhook traffic internal. A renamed flag fails here, not at deploy time.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::CommandFactory;
use serde_yaml::Value;

fn repo_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn compose() -> Value {
    serde_yaml::from_str(&repo_file("docker-compose.yml")).expect("docker-compose.yml is YAML")
}

fn service<'a>(c: &'a Value, name: &str) -> &'a Value {
    let s = &c["services"][name];
    assert!(!s.is_null(), "service {name} is missing");
    s
}

/// The environment variables a sub-command reads, from its clap definition.
fn env_names(cmd: &clap::Command, sub: &str) -> BTreeSet<String> {
    let sub = cmd
        .find_subcommand(sub)
        .unwrap_or_else(|| panic!("{} has no `{sub}` sub-command", cmd.get_name()));
    sub.get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

/// Variables read by the logging setup rather than by clap.
const LOGGING_ENV: [&str; 2] = ["RUST_LOG", "LOG_FORMAT"];

/// The standard variables S3 storage reads (`--storage s3://…`), rather than
/// clap.
const S3_ENV: [&str; 5] = [
    "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
];

fn compose_env(s: &Value) -> BTreeSet<String> {
    s["environment"]
        .as_mapping()
        .expect("environment is a mapping")
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn check_service_against(c: &Value, name: &str, cli: clap::Command, required: &[&str]) {
    let s = service(c, name);
    let command = strings(&s["command"]);
    assert_eq!(
        command.first().map(String::as_str),
        Some(cli.get_name()),
        "{name} command"
    );
    assert_eq!(
        command.get(1).map(String::as_str),
        Some("serve"),
        "{name} runs serve"
    );

    let known = env_names(&cli, "serve");
    for var in compose_env(s) {
        assert!(
            known.contains(&var)
                || LOGGING_ENV.contains(&var.as_str())
                || (S3_ENV.contains(&var.as_str()) && compose_env(s).contains("WORKER_STORAGE")),
            "{name} sets {var}, which `{} serve` does not read (it reads {known:?})",
            cli.get_name()
        );
    }
    for var in required {
        assert!(compose_env(s).contains(*var), "{name} must set {var}");
    }

    let health = strings(&s["healthcheck"]["test"]);
    assert_eq!(
        health.first().map(String::as_str),
        Some("CMD"),
        "{name} health check"
    );
    assert_eq!(health.get(1).map(String::as_str), Some(cli.get_name()));
    let sub = health.get(2).expect("health check sub-command");
    assert!(
        cli.find_subcommand(sub).is_some(),
        "{name}'s health check runs `{} {sub}`, which does not exist",
        cli.get_name()
    );
}

#[test]
fn compose_services_use_only_flags_the_binaries_read() {
    let c = compose();
    check_service_against(
        &c,
        "api",
        api::config::Cli::command(),
        &[
            "DATABASE_URL",
            "WEBHOOK_SECRET",
            "CLIPPING_WORKER_URL",
            "API_BASE_URL",
            "API_LISTEN",
        ],
    );
    check_service_against(
        &c,
        "worker",
        worker::config::Cli::command(),
        &[
            "WEBHOOK_SECRET",
            "WORKER_LISTEN",
            "WORKER_DATA_DIR",
            "WORKER_STORE",
            "WORKER_CALLBACK_ALLOW",
        ],
    );
}

#[test]
fn only_the_api_and_read_only_media_are_published_and_webhooks_stay_internal() {
    let c = compose();
    assert!(
        !service(&c, "api")["ports"].is_null(),
        "the API is published"
    );
    // Clips are served to browsers read-only, from the store's volume.
    let public = service(&c, "media-public");
    assert!(!public["ports"].is_null(), "clips are published");
    assert!(strings(&public["command"]).contains(&"--read-only".to_owned()));
    assert!(
        strings(&public["volumes"])
            .iter()
            .all(|v| v.ends_with(":ro"))
    );
    for name in ["worker", "worker-db", "postgres", "media"] {
        assert!(
            service(&c, name)["ports"].is_null(),
            "{name} must not be published"
        );
    }
    assert_eq!(c["networks"]["internal"]["internal"], Value::Bool(true));
    for name in ["api", "worker", "postgres"] {
        let nets = strings(&service(&c, name)["networks"]);
        assert!(
            nets.contains(&"internal".to_owned()),
            "{name} is on the internal network"
        );
    }
    // The worker reaches the API by its internal name, and the callback URL
    // the API builds points there too.
    let api = service(&c, "api");
    assert_eq!(api["environment"]["API_BASE_URL"], "http://api:3000");
    assert_eq!(
        api["environment"]["CLIPPING_WORKER_URL"],
        "http://worker:8000"
    );
    assert_eq!(
        service(&c, "worker")["environment"]["WORKER_CALLBACK_ALLOW"],
        "api"
    );
    // Postgres is on no network the outside reaches.
    assert_eq!(
        strings(&service(&c, "postgres")["networks"]),
        vec!["internal"]
    );
}

#[test]
fn every_service_has_a_health_check_and_the_api_waits_for_healthy_dependencies() {
    let c = compose();
    for name in ["api", "worker", "postgres"] {
        assert!(
            !service(&c, name)["healthcheck"]["test"].is_null(),
            "{name} health check"
        );
    }
    for dep in ["postgres", "worker"] {
        assert_eq!(
            service(&c, "api")["depends_on"][dep]["condition"],
            "service_healthy",
            "api waits for {dep}"
        );
    }
    assert!(
        !service(&c, "postgres")["volumes"].is_null(),
        "postgres keeps its data"
    );
    // The workers keep jobs and their outbox in the compose PostgreSQL, in
    // a database of their own, and wait for it.
    let worker = service(&c, "worker");
    let store = worker["environment"]["WORKER_STORE"]
        .as_str()
        .unwrap_or_default();
    assert!(
        store.starts_with("postgres://") && store.ends_with("@postgres:5432/worker"),
        "the workers' store is their own database on the compose PostgreSQL: {store}"
    );
    assert_ne!(
        service(&c, "api")["environment"]["DATABASE_URL"].as_str(),
        Some(store),
        "never the API's database"
    );
    assert_eq!(
        worker["depends_on"]["worker-db"]["condition"],
        "service_completed_successfully"
    );
    assert!(
        worker["deploy"]["replicas"]
            .as_u64()
            .is_some_and(|n| n >= 2),
        "the worker runs as a fleet"
    );
}

#[test]
fn the_secret_comes_from_the_env_file_and_the_example_is_checked_in() {
    let text = repo_file("docker-compose.yml");
    assert!(
        text.contains("${WEBHOOK_SECRET:?"),
        "WEBHOOK_SECRET must be required from .env"
    );
    let example = repo_file(".env.example");
    assert!(
        example
            .lines()
            .any(|l| l.starts_with("WEBHOOK_SECRET=whsec_"))
    );
}

#[test]
fn dockerfile_builds_both_binaries_and_runs_as_non_root() {
    let d = repo_file("deploy/Dockerfile");
    let froms = d.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 3, "multi-stage: deps, build, runtime");
    for bin in ["clipping-worker", "viewcreator-api"] {
        assert!(
            d.contains(&format!("target/release/{bin}")),
            "{bin} is built and copied"
        );
    }
    assert!(
        d.contains("USER app"),
        "the runtime stage runs as a non-root user"
    );
    // Every workspace member's manifest is copied for the dependency layer,
    // or `cargo build` there fails on a missing member.
    let root = repo_file("Cargo.toml");
    let manifest: toml_members::Members = toml_members::parse(&root);
    let stubs = d
        .lines()
        .find(|l| l.starts_with("RUN for c in"))
        .expect("the loop that stubs every member");
    for member in manifest.0 {
        assert!(
            d.contains(&format!("COPY {member}/Cargo.toml")),
            "deploy/Dockerfile does not copy {member}/Cargo.toml"
        );
        assert!(
            stubs
                .split_whitespace()
                .any(|w| w.trim_end_matches(';') == member),
            "deploy/Dockerfile does not stub {member}"
        );
    }
}

/// Reads the `members = [...]` list of the root manifest without a TOML
/// parser: it is one line by this project's convention.
mod toml_members {
    pub struct Members(pub Vec<String>);

    pub fn parse(root: &str) -> Members {
        let line = root
            .lines()
            .find(|l| l.trim_start().starts_with("members"))
            .expect("a members line");
        let inner = &line[line.find('[').unwrap() + 1..line.rfind(']').unwrap()];
        Members(
            inner
                .split(',')
                .map(|s| s.trim().trim_matches('"').to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    }
}
