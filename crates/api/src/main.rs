//! `viewcreator-api`: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = api::config::Cli::parse();
    api::cli::init_tracing(&cli.command);
    service::exit_code(api::cli::run(cli).await)
}
