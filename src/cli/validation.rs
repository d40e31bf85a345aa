//! The validation probe `train` checks the policy with: the validation files at every training
//! bandwidth scale, the deployable baselines run once on the same requests. It gives the
//! time-to-quality figures (`sched/regret_ratio`) and picks the checkpoint; the reported test
//! sets never enter it.

use std::sync::Arc;

use anyhow::Result;
use rlsched_env::eval::{evaluate, evaluate_against, regret_ratio, EvalReport, SchedulerResult};
use rlsched_env::schedulers::{self, Scheduler};
use rlsched_env::{EnvConfig, ReplayEnv, Scenario};

/// Episodes per scale and check (200 requests each).
const PROBE_EPISODES: usize = 10;
/// Seed of the probe's requests, the same at every check.
const PROBE_SEED: u64 = 7;

/// One scale of the probe.
pub struct ProbeCell {
    pub scale: f64,
    scenario: Arc<Scenario>,
    /// The best deployable baseline on these requests, and its regret.
    pub best_name: String,
    pub best_reward: f64,
    pub best_regret: f64,
    /// Every deployable baseline's mean reward.
    pub deployable_rewards: Vec<f64>,
    /// The clairvoyant oracle's, the reference of every regret.
    oracle_reward: f64,
}

pub struct ValidationProbe {
    pub cells: Vec<ProbeCell>,
}

/// The policy on the probe.
pub struct ProbeResult {
    /// Per cell, the policy's result (its `regret_ratio` against that cell's best baseline).
    pub cells: Vec<SchedulerResult>,
    /// Σ policy regret / Σ best-baseline regret over the cells (NaN when the baselines' regret
    /// sums to zero or less: the greedy oracle is no bound under contention).
    pub regret_ratio: f64,
    /// Mean over cells of the policy's reward minus the best baseline's.
    pub margin: f64,
    /// Whether the policy beat every deployable baseline in every cell.
    pub beats_all: bool,
}

impl ValidationProbe {
    /// The validation files at each scale of `training_bandwidth_scales` (or at
    /// `bandwidth_scale` alone); `best-static` is fitted on the training traces at that scale,
    /// as `eval` fits it.
    pub fn new(config: &EnvConfig, seed: u64) -> Result<Self> {
        let mut scales = config.training_bandwidth_scales.clone();
        if scales.is_empty() {
            scales.push(config.bandwidth_scale);
        }
        let mut cells = Vec::new();
        for scale in scales {
            let scaled = EnvConfig { bandwidth_scale: scale, ..config.clone() };
            let scenario = Arc::new(Scenario::load(&scaled, &config.validation_traces)?);
            let mut fit_env = ReplayEnv::new(Arc::new(Scenario::load(&scaled, &config.traces)?));
            let mut baselines = schedulers::BASELINES
                .iter()
                .map(|n| schedulers::by_name(n, &mut fit_env, seed))
                .collect::<Result<Vec<_>, _>>()?;
            let report = evaluate(scenario.clone(), &mut baselines, PROBE_EPISODES, PROBE_SEED, "validation")?;
            let best = report.schedulers.iter().find(|r| r.name == report.best_baseline).expect("best baseline present");
            cells.push(ProbeCell {
                scale,
                scenario,
                best_name: best.name.clone(),
                best_reward: best.mean_reward,
                best_regret: best.regret,
                deployable_rewards: report.schedulers.iter().filter(|r| r.deployable).map(|r| r.mean_reward).collect(),
                oracle_reward: report.oracle_mean_reward,
            });
        }
        Ok(Self { cells })
    }

    /// Evaluates `policy` on every cell.
    pub fn check(&self, policy: Box<dyn Scheduler>) -> Result<ProbeResult> {
        let mut list = vec![policy];
        let mut cells = Vec::new();
        let (mut regret, mut best_regret, mut margin, mut beats_all) = (0.0, 0.0, 0.0, true);
        for cell in &self.cells {
            let report: EvalReport =
                evaluate_against(cell.scenario.clone(), &mut list, PROBE_EPISODES, PROBE_SEED, "validation", Some(cell.oracle_reward))?;
            let mut result = report.schedulers.into_iter().next().expect("one scheduler");
            result.regret_ratio = regret_ratio(result.regret, cell.best_regret);
            regret += result.regret;
            best_regret += cell.best_regret;
            margin += result.mean_reward - cell.best_reward;
            beats_all &= cell.deployable_rewards.iter().all(|&b| result.mean_reward > b);
            cells.push(result);
        }
        Ok(ProbeResult { cells, regret_ratio: regret_ratio(regret, best_regret), margin: margin / self.cells.len() as f64, beats_all })
    }
}
