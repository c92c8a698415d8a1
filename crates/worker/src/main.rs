//! The `clipping-worker` binary: parses the command line and hands over to
//! the library (see `lib.rs`).

use std::process::ExitCode;

use clap::Parser as _;
use service::telemetry::{COMMAND_LOG_FILTER, SERVICE_LOG_FILTER};
use worker::config::{Cli, Command, WebhooksCommand};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    service::init_tracing(match cli.command {
        Command::Serve(_) | Command::Listen(_) => SERVICE_LOG_FILTER,
        _ => COMMAND_LOG_FILTER,
    });
    let result = match cli.command {
        Command::Serve(config) => worker::cli::serve(*config).await,
        Command::Submit(args) => worker::cli::submit(args).await,
        Command::Listen(args) => worker::cli::listen(args).await,
        Command::Webhooks(WebhooksCommand::List(args)) => worker::cli::list(args).await,
        Command::Webhooks(WebhooksCommand::Redeliver(args)) => worker::cli::redeliver(args).await,
        Command::Migrate(args) => worker::cli::migrate(args).await,
        Command::Healthcheck(args) => service::healthcheck(&args.url).await,
    };
    service::exit_code(result.map(|()| ExitCode::SUCCESS))
}
