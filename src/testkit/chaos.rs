//! Chaos for tests: drives faults into simulated switches from a seed —
//! refused writes, failing updates, slow answers, dropped streams and
//! switch restarts — the way dendrite's `chaos` backend shakes its callers.
//! The same seed replays the same sequence.

use std::time::Duration;

use rand::{Rng, SeedableRng};

use super::sim::{Faults, SimSwitch};

#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub seed: u64,
    /// How long each step's faults stay in force.
    pub step: Duration,
    pub steps: usize,
    /// Per step and target, the chance of each fault.
    pub p_refuse_writes: f64,
    pub p_failing_updates: f64,
    pub p_delay: f64,
    pub p_drop_streams: f64,
    pub p_restart: f64,
}

impl ChaosConfig {
    pub fn new(seed: u64) -> Self {
        ChaosConfig {
            seed,
            step: Duration::from_millis(50),
            steps: 20,
            p_refuse_writes: 0.15,
            p_failing_updates: 0.3,
            p_delay: 0.2,
            p_drop_streams: 0.1,
            p_restart: 0.05,
        }
    }
}

/// What happened, for the test's failure message.
#[derive(Debug, Default, Clone, Copy)]
pub struct ChaosLog {
    pub refused: usize,
    pub failing: usize,
    pub delayed: usize,
    pub dropped: usize,
    pub restarted: usize,
}

/// Runs the chaos schedule over `targets`, then clears every fault.
pub async fn run(targets: &[&SimSwitch], cfg: &ChaosConfig) -> ChaosLog {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let mut log = ChaosLog::default();
    for (i, t) in targets.iter().enumerate() {
        t.seed(cfg.seed.wrapping_add(i as u64));
    }
    for _ in 0..cfg.steps {
        for t in targets {
            let mut f = Faults::default();
            if rng.random_bool(cfg.p_refuse_writes) {
                f.refuse_writes = true;
                log.refused += 1;
            }
            if rng.random_bool(cfg.p_failing_updates) {
                f.update_failure_rate = rng.random_range(0.05..0.5);
                log.failing += 1;
            }
            if rng.random_bool(cfg.p_delay) {
                f.delay = Duration::from_millis(rng.random_range(1..30));
                log.delayed += 1;
            }
            t.set_faults(f);
            if rng.random_bool(cfg.p_restart) {
                t.restart();
                log.restarted += 1;
            } else if rng.random_bool(cfg.p_drop_streams) {
                t.drop_streams();
                log.dropped += 1;
            }
        }
        tokio::time::sleep(cfg.step).await;
    }
    for t in targets {
        t.set_faults(Faults::default());
    }
    log
}
