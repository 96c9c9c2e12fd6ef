//! The `p4fabric` command: one clap subcommand per job, each implemented in
//! `p4fabric::cli`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use p4fabric::cli;

// The controller and the simulated switches allocate and free many small
// objects per table entry across threads; glibc's malloc spent a quarter of
// their CPU in malloc/free and in faulting trimmed memory back in
// (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "p4fabric", version, about = "P4Runtime fabric controller")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log as JSON lines (for log collectors) instead of text.
    #[arg(long, global = true, env = "P4FABRIC_LOG_JSON")]
    log_json: bool,
    /// Log filter, e.g. `info` or `p4fabric=debug` (also RUST_LOG).
    #[arg(long, global = true, env = "RUST_LOG")]
    log: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller: watch the configuration, program every switch.
    Run(cli::run::RunArgs),
    /// A whole demo fabric on this machine: bmv2 switches (or simulated
    /// ones, where bmv2 is missing), etcd, the controller, a ping matrix.
    Demo(cli::demo::DemoArgs),
    /// Follow a frame from one host to another through the installed
    /// entries of every switch: where it goes, or where and why it drops.
    Trace(cli::trace::TraceArgs),
    /// Run the controller on simulated switches against the configuration
    /// in etcd: rejected keys, convergence, and whether host A reaches B.
    Check(cli::check::CheckArgs),
    /// Draw the fabric (Graphviz dot, or SVG through `dot`).
    Topology(cli::topology::TopologyArgs),
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// Serve simulated switches (used by the benchmarks).
    #[command(hide = true)]
    SimSwitches(p4fabric::bench::sim::SimArgs),
    /// Validate a fabric file and write it to etcd in one transaction.
    Apply(cli::apply::ApplyArgs),
    /// Print configuration keys from etcd.
    Get(cli::get::GetArgs),
    /// Check a fabric file without touching etcd.
    Validate(cli::validate::ValidateArgs),
    /// Show the status controllers report in etcd.
    Status(cli::status::StatusArgs),
    /// Take a switch out of service without losing traffic (`maintenance/<switch>`).
    Drain(cli::drain::DrainArgs),
    /// Bring a drained switch back into service.
    Undrain(cli::drain::UndrainArgs),
    /// Roll a new pipeline build across the fabric, switch by switch (`upgrade`).
    Upgrade(cli::upgrade::UpgradeArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon logs what it does; one-shot commands only warnings.
    let default_level = if matches!(cli.command, Command::Run(_)) {
        "info"
    } else {
        "warn"
    };
    let filter =
        tracing_subscriber::EnvFilter::try_new(cli.log.as_deref().unwrap_or(default_level))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let result = match cli.command {
        Command::Run(a) => cli::run::run(&a).await,
        Command::Demo(a) => cli::demo::run(&a).await,
        Command::Trace(a) => cli::trace::run(&a).await,
        Command::Check(a) => cli::check::run(&a).await,
        Command::Topology(a) => cli::topology::run(&a).await,
        Command::Bench(c) => cli::bench::run(&c).await,
        Command::SimSwitches(a) => p4fabric::bench::sim::run(&a).await,
        Command::Apply(a) => cli::apply::run(&a).await,
        Command::Get(a) => cli::get::run(&a).await,
        Command::Validate(a) => cli::validate::run(&a),
        Command::Status(a) => cli::status::run(&a).await,
        Command::Drain(a) => cli::drain::drain(&a).await,
        Command::Undrain(a) => cli::drain::undrain(&a).await,
        Command::Upgrade(a) => cli::upgrade::run(&a).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
