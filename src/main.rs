//! The `p4fabric` command: one clap subcommand per job, each implemented in
//! `p4fabric::cli`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use p4fabric::cli;

#[derive(Parser)]
#[command(name = "p4fabric", version, about = "P4Runtime fabric controller")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a fabric file and write it to etcd in one transaction.
    Apply(cli::apply::ApplyArgs),
    /// Print configuration keys from etcd.
    Get(cli::get::GetArgs),
    /// Check a fabric file without touching etcd.
    Validate(cli::validate::ValidateArgs),
    /// Show the status controllers report in etcd.
    Status(cli::status::StatusArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Apply(a) => cli::apply::run(&a).await,
        Command::Get(a) => cli::get::run(&a).await,
        Command::Validate(a) => cli::validate::run(&a),
        Command::Status(a) => cli::status::run(&a).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
