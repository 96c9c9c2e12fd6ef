//! `p4fabric bench ...`: load commands that print figures.

use crate::bench;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Many simulated switches, a large fabric: cold-start convergence,
    /// controller CPU and RSS, single-change latency.
    Scale(bench::scale::ScaleArgs),
    /// Write throughput through the controller vs a raw client.
    Write(bench::write::WriteArgs),
    /// Config-to-wire latency on bmv2: etcd commit -> entries readable on
    /// every affected switch, over N single-key changes.
    Converge(bench::converge::ConvergeArgs),
    /// A MAC flood from one edge port with discovery, status and real
    /// etcd on: link state changes, the controller's answer time to a
    /// bystander, learned hosts, status writes.
    LearnFlood(bench::learn_flood::LearnFloodArgs),
}

pub async fn run(cmd: &BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Scale(a) => bench::scale::run(a).await,
        BenchCommand::Write(a) => bench::write::run(a).await,
        BenchCommand::Converge(a) => bench::converge::run(a).await,
        BenchCommand::LearnFlood(a) => bench::learn_flood::run(a).await,
    }
}
