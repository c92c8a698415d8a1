//! The `clipping-worker` binary: parses the command line and hands over to
//! the library (see `lib.rs`).

use clap::Parser as _;
use worker::config::{Cli, Command, WebhooksCommand};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    worker::telemetry::init_tracing();
    match cli.command {
        Command::Serve(config) => worker::cli::serve(*config).await,
        Command::Submit(args) => worker::cli::submit(args).await,
        Command::Listen(args) => worker::cli::listen(args).await,
        Command::Webhooks(WebhooksCommand::List(args)) => worker::cli::list(args).await,
        Command::Webhooks(WebhooksCommand::Redeliver(args)) => worker::cli::redeliver(args).await,
        Command::Healthcheck(args) => worker::cli::healthcheck(args).await,
    }
}
