//! `p4fabric bench write`: install N host routes on one switch through the
//! controller's agent, and with a minimal raw client sending the same,
//! pre-encoded entries in the best of several batch sizes; prints both
//! rates and their ratio from one run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use p4runtime_proto::v1 as p4;
use p4runtime_proto::v1::set_forwarding_pipeline_config_request::Action as PipelineAction;

use super::machine;
use crate::agent::{self, AgentConfig, Desired};
use crate::compile::names::*;
use crate::p4rt::{
    ActionCall, Client, ClientOptions, Entity, Match, Pipeline, SwitchEntities, TableAction,
    TableEntry, TableKey,
};

#[derive(Debug, clap::Args)]
pub struct WriteArgs {
    /// Host routes to install (comma separated for several runs).
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    pub entries: Vec<usize>,
    /// Raw-client batch sizes to try; the best one is the raw limit.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000,2000")]
    pub batch_sizes: Vec<usize>,
    /// Start a bmv2 switch for the run (needs simple_switch_grpc and root).
    #[arg(long, conflicts_with = "address")]
    pub bmv2: bool,
    /// An already running switch (it is wiped: the pipeline is pushed).
    #[arg(long)]
    pub address: Option<String>,
    #[arg(long, default_value_t = 1)]
    pub device_id: u64,
    #[arg(long)]
    pub pipeline_dir: Option<std::path::PathBuf>,
    /// Multiply the pipeline's table sizes (bmv2 JSON `max_size`, P4Info
    /// `size`): the compiled program's IPv4 table holds 16384 routes, so
    /// 50k host routes need `--table-scale 4`.
    #[arg(long, default_value_t = 1)]
    pub table_scale: u64,
    /// Rounds of every measurement (raw at each batch size, then the
    /// controller), interleaved; the figures are the medians. One run of
    /// each swings 20-30% on a shared machine, and the best of four noisy
    /// raw runs alone would bias the raw limit upwards.
    #[arg(long, default_value_t = 7)]
    pub rounds: usize,
    /// The agent's updates per Write (the daemon's default unless given).
    #[arg(long, default_value_t = crate::p4rt::switch::DEFAULT_BATCH)]
    pub agent_batch: usize,
}

/// `n` /32 host routes in VRF 0.
pub fn host_routes(n: usize) -> Vec<Entity> {
    (0..n)
        .map(|i| {
            let ip = 0x0a00_0000u32 + i as u32;
            Entity::Table(TableEntry {
                key: TableKey::new(T_IPV4).exact(F_VRF_ID, 0u32).with(
                    F_IPV4_DST,
                    Match::Lpm {
                        value: u128::from(ip),
                        prefix_len: 32,
                    },
                ),
                action: TableAction::Direct(
                    ActionCall::new(A_ROUTE_DIRECT)
                        .param(P_DMAC, 0x0200_0000_0000u64 + i as u64)
                        .param(P_SMAC, 0x0200_00fa_b001u64)
                        .param(P_VLAN_ID, 10u32),
                ),
                idle_timeout_ns: 0,
            })
        })
        .collect()
}

async fn fresh(client: &Client, pipeline: &Pipeline) -> anyhow::Result<()> {
    client
        .set_pipeline(
            PipelineAction::VerifyAndCommit,
            pipeline.registry.p4info().clone(),
            pipeline.device_config.to_vec(),
            pipeline.cookie,
        )
        .await?;
    Ok(())
}

/// Raw: pre-encoded updates, one Write per batch, back to back.
async fn raw_rate(
    address: &str,
    device_id: u64,
    pipeline: &Pipeline,
    entities: &[Entity],
    batch: usize,
) -> anyhow::Result<f64> {
    let client =
        Client::connect(ClientOptions::new(address, device_id, next_election_id())).await?;
    let mut session = client.open_session().await?;
    session.wait_primary(Duration::from_secs(5)).await?;
    fresh(&client, pipeline).await?;
    let updates: Vec<p4::Update> = entities
        .iter()
        .map(|e| {
            Ok(p4::Update {
                r#type: p4::update::Type::Insert as i32,
                entity: Some(pipeline.registry.encode_entity(e, false)?),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let t = Instant::now();
    for chunk in updates.chunks(batch) {
        client
            .write(chunk.to_vec())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(entities.len() as f64 / t.elapsed().as_secs_f64())
}

/// Each connection of the run gets a higher election id than the last: a
/// previous client's stream may not be torn down on the switch yet, and
/// an equal id is refused ("Election id already exists").
fn next_election_id() -> u128 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    u128::from(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Through the controller's agent: desired state in, converged out.
async fn controller_rate(
    address: &str,
    device_id: u64,
    pipeline: Arc<Pipeline>,
    entities: &[Entity],
    batch: usize,
) -> anyhow::Result<(f64, f64)> {
    {
        // Same starting point as the raw runs: an empty switch that runs
        // our pipeline (so the agent does not push it again).
        let client =
            Client::connect(ClientOptions::new(address, device_id, next_election_id())).await?;
        let mut s = client.open_session().await?;
        s.wait_primary(Duration::from_secs(5)).await?;
        fresh(&client, &pipeline).await?;
    }
    let desired: SwitchEntities = entities.iter().map(|e| (e.key(), e.clone())).collect();
    let mut cfg = AgentConfig::new(
        "bench",
        ClientOptions::new(address, device_id, next_election_id()),
        pipeline,
    );
    cfg.batch_size = batch;
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    // First the session (connect, arbitration, pipeline cookie, read-back)
    // with nothing to write, then the write itself: the raw client's time
    // does not include a session either.
    let t = Instant::now();
    let handle = agent::spawn(cfg, tx);
    if !handle.wait_converged(0, Duration::from_secs(60)).await {
        bail!("agent did not start: {:?}", handle.status().last_error);
    }
    let session = t.elapsed();
    let t = Instant::now();
    handle.set_desired(Desired {
        generation: 1,
        entities: Arc::new(desired).into(),
    });
    if !handle.wait_converged(1, Duration::from_secs(600)).await {
        bail!("agent did not converge: {:?}", handle.status().last_error);
    }
    let write = t.elapsed();
    handle.stop().await;
    let n = entities.len() as f64;
    Ok((n / write.as_secs_f64(), n / (write + session).as_secs_f64()))
}

pub async fn run(args: &WriteArgs) -> anyhow::Result<()> {
    let dir = args
        .pipeline_dir
        .clone()
        .unwrap_or_else(Pipeline::default_dir);
    let _scaled = if args.table_scale > 1 {
        println!(
            "table sizes x{} (bmv2 JSON max_size and P4Info size)",
            args.table_scale
        );
        Some(super::scaled_pipeline(&dir, args.table_scale)?)
    } else {
        None
    };
    let dir = _scaled.as_ref().map_or(dir, |t| t.path().to_path_buf());
    let pipeline = if args.bmv2 || args.address.is_some() {
        Arc::new(
            Pipeline::load(&dir, "fabric").context("compiled fabric pipeline (p4/compile.sh)")?,
        )
    } else {
        let (p, contract) = crate::compile::contract::simulation_pipeline(&dir);
        if contract {
            println!("note: compiled pipeline missing; the simulated switch checks against the contract P4Info");
        }
        Arc::new(p)
    };
    let mut _lab = None;
    let mut _sim = None;
    let (address, device_id, what) = if args.bmv2 {
        if let Some(why) = crate::lab::missing_prerequisite() {
            bail!("cannot start bmv2: {why}");
        }
        let sw = crate::lab::Bmv2Switch::start(crate::lab::SwitchOptions {
            device_id: args.device_id,
            ports: vec![1, 2],
            json: None,
        })?;
        let addr = sw.grpc_addr.clone();
        _lab = Some(sw);
        (addr, args.device_id, "bmv2 simple_switch_grpc")
    } else if let Some(a) = &args.address {
        (a.clone(), args.device_id, "the switch at --address")
    } else {
        let sims = super::sim::SimSwitches::spawn(&[args.device_id])?;
        let addr = sims
            .addresses
            .get(&args.device_id)
            .context("sim address")?
            .clone();
        _sim = Some(sims);
        (
            addr,
            args.device_id,
            "in-process P4Runtime target (SIMULATED, child process)",
        )
    };
    println!(
        "write throughput on {what} at {address}; {}; load average {}",
        machine(),
        super::load_average()
    );
    let rounds = args.rounds.max(1);
    for &n in &args.entries {
        let entities = host_routes(n);
        let mut raw: Vec<Vec<f64>> = vec![Vec::new(); args.batch_sizes.len()];
        let mut controller = Vec::new();
        let mut with_session = Vec::new();
        for round in 1..=rounds {
            let mut line = format!("  round {round}/{rounds}, entries/s: raw");
            for (i, &b) in args.batch_sizes.iter().enumerate() {
                let r = raw_rate(&address, device_id, &pipeline, &entities, b).await?;
                line += &format!(" {r:.0} (batch {b})");
                raw[i].push(r);
            }
            let (c, s) = controller_rate(
                &address,
                device_id,
                pipeline.clone(),
                &entities,
                args.agent_batch,
            )
            .await?;
            println!("{line}; controller {c:.0}");
            controller.push(c);
            with_session.push(s);
        }
        let mut best = (0usize, 0.0f64);
        for (&b, rates) in args.batch_sizes.iter().zip(&mut raw) {
            let m = median(rates);
            println!("  raw client, batch {b:>5}: {n} entries at {m:>9.0} entries/s (median of {rounds})");
            if m > best.1 {
                best = (b, m);
            }
        }
        let c = median(&mut controller);
        let s = median(&mut with_session);
        println!("  controller (agent)     : {n} entries at {c:>9.0} entries/s (batch {}, median of {rounds}; diff + encode + write; {s:.0}/s counting the session setup and read-back)", args.agent_batch);
        println!(
            "  => {n} entries: controller {c:.0}/s vs raw best {:.0}/s (batch {}): ratio {:.2}",
            best.1,
            best.0,
            c / best.1
        );
    }
    Ok(())
}
