//! The validation probe `train` checks the policy with: the validation files at every training
//! bandwidth scale, plus the held-out cells the config asks for (Markov traces with outages
//! from a validation seed, `[env.validation_synthetic]`; generated models never trained on,
//! `[env.procedural] validation_models`), the deployable baselines run once on the same
//! requests. It gives the time-to-quality figures (`sched/regret_ratio`) and picks the
//! checkpoint; the reported test sets never enter it.

use std::sync::Arc;

use anyhow::Result;
use rlsched_env::eval::{evaluate, evaluate_against, regret_ratio, EvalReport, SchedulerResult};
use rlsched_env::schedulers::{self, Scheduler};
use rlsched_env::{EnvConfig, ReplayEnv, Scenario};

/// Seed of the probe's requests, the same at every check.
const PROBE_SEED: u64 = 7;

/// One cell of the probe: a trace family at a scale, with a request mix.
pub struct ProbeCell {
    /// `x5`, `markov-outages`, `held-out-models`: the TensorBoard tag under `sched/`.
    pub name: String,
    pub scale: f64,
    scenario: Arc<Scenario>,
    /// The best deployable baseline on these requests, and its regret.
    pub best_name: String,
    pub best_reward: f64,
    pub best_regret: f64,
    pub best_p99_ms: f64,
    /// Every deployable baseline's mean reward.
    pub deployable_rewards: Vec<f64>,
    /// The clairvoyant oracle's, the reference of every regret.
    oracle_reward: f64,
}

pub struct ValidationProbe {
    pub cells: Vec<ProbeCell>,
    /// Episodes per cell and check (`env.validation_episodes`).
    episodes: usize,
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
    /// Mean over cells of the policy's regret ratio against the cell's best baseline (cells
    /// whose baselines have no regret left out): scale-free, so a slow link's whole units do
    /// not drown a fast link's hundredths, and one catastrophic cell shows. The checkpoint is
    /// the policy with the lowest.
    pub score: f64,
    /// Whether the policy beat every deployable baseline in every cell.
    pub beats_all: bool,
}

impl ProbeCell {
    /// The deployable baselines (with `best-static` fitted on `fit`) run once on `scenario`.
    fn new(name: String, scale: f64, scenario: Scenario, fit: Scenario, seed: u64, episodes: usize) -> Result<Self> {
        let scenario = Arc::new(scenario);
        let mut fit_env = ReplayEnv::new(Arc::new(fit));
        let mut baselines = schedulers::BASELINES
            .iter()
            .map(|n| schedulers::by_name(n, &mut fit_env, seed))
            .collect::<Result<Vec<_>, _>>()?;
        let report = evaluate(scenario.clone(), &mut baselines, episodes, PROBE_SEED, "validation")?;
        let best = report.schedulers.iter().find(|r| r.name == report.best_baseline).expect("best baseline present");
        Ok(Self {
            name,
            scale,
            scenario,
            best_name: best.name.clone(),
            best_reward: best.mean_reward,
            best_regret: best.regret,
            best_p99_ms: best.latency_ms_p99,
            deployable_rewards: report.schedulers.iter().filter(|r| r.deployable).map(|r| r.mean_reward).collect(),
            oracle_reward: report.oracle_mean_reward,
        })
    }
}

impl ValidationProbe {
    /// One line per cell: the policy's margin over the cell's best baseline, its regret ratio
    /// and its p99 against the baseline's.
    pub fn summary(&self, result: &ProbeResult) -> String {
        let mut out = String::new();
        for (cell, r) in self.cells.iter().zip(&result.cells) {
            out.push_str(&format!(
                "  {:<16} margin {:+.3} over {} ({:.3}), regret ratio {:.2}, p99 {:.0} ms vs {:.0} ms\n",
                cell.name,
                r.mean_reward - cell.best_reward,
                cell.best_name,
                cell.best_reward,
                r.regret_ratio,
                r.latency_ms_p99,
                cell.best_p99_ms
            ));
        }
        out
    }

    /// The validation files at each scale of `training_bandwidth_scales` (or at
    /// `bandwidth_scale` alone), then the held-out cells; `best-static` is fitted on the
    /// training traces at that scale with the cell's request mix, as `eval` fits it.
    pub fn new(config: &EnvConfig, seed: u64) -> Result<Self> {
        let mut scales = config.training_bandwidth_scales.clone();
        if scales.is_empty() {
            scales.push(config.bandwidth_scale);
        }
        let episodes = config.validation_episodes;
        let mut cells = Vec::new();
        for scale in scales {
            let scaled = EnvConfig { bandwidth_scale: scale, ..config.clone() };
            let scenario = Scenario::load(&scaled, &config.validation_traces)?;
            let fit = Scenario::load(&scaled, &config.traces)?;
            cells.push(ProbeCell::new(format!("x{scale}"), scale, scenario, fit, seed, episodes)?);
        }
        if config.validation_synthetic.traces > 0 {
            // generated across the whole range of rates: replayed unscaled
            let unscaled = EnvConfig { bandwidth_scale: 1.0, ..config.clone() };
            let scenario = Scenario::load(&unscaled, &config.validation_traces)?.with_held_out_traces()?;
            let fit = Scenario::load(config, &config.traces)?;
            cells.push(ProbeCell::new("markov-outages".into(), 1.0, scenario, fit, seed, episodes)?);
        }
        if config.procedural.validation_models > 0 {
            let scenario = Scenario::load(config, &config.validation_traces)?.with_held_out_models()?;
            let fit = Scenario::load(config, &config.traces)?.with_held_out_models()?;
            cells.push(ProbeCell::new("held-out-models".into(), config.bandwidth_scale, scenario, fit, seed, episodes)?);
        }
        Ok(Self { cells, episodes })
    }

    /// Evaluates `policy` on every cell.
    pub fn check(&self, policy: Box<dyn Scheduler>) -> Result<ProbeResult> {
        let mut list = vec![policy];
        let mut cells = Vec::new();
        let (mut regret, mut best_regret, mut margin, mut beats_all) = (0.0, 0.0, 0.0, true);
        let mut ratios = Vec::new();
        for cell in &self.cells {
            let report: EvalReport =
                evaluate_against(cell.scenario.clone(), &mut list, self.episodes, PROBE_SEED, "validation", Some(cell.oracle_reward))?;
            let mut result = report.schedulers.into_iter().next().expect("one scheduler");
            result.regret_ratio = regret_ratio(result.regret, cell.best_regret);
            if result.regret_ratio.is_finite() {
                ratios.push(result.regret_ratio);
            }
            regret += result.regret;
            best_regret += cell.best_regret;
            margin += result.mean_reward - cell.best_reward;
            beats_all &= cell.deployable_rewards.iter().all(|&b| result.mean_reward > b);
            cells.push(result);
        }
        let score = if ratios.is_empty() { f64::NAN } else { ratios.iter().sum::<f64>() / ratios.len() as f64 };
        Ok(ProbeResult { cells, regret_ratio: regret_ratio(regret, best_regret), margin: margin / self.cells.len() as f64, score, beats_all })
    }
}
