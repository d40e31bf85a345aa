//! Evaluation: every scheduler on the same requests (same seeds, same trace offsets, same
//! compute draws), with the metrics users compare schedulers by.

use std::sync::Arc;

use rlsched_executor::profile::profiler::percentile;
use serde::Serialize;

use crate::replay::ReplayEnv;
use crate::scenario::Scenario;
use crate::schedulers::Scheduler;
use crate::{Env, EnvError};

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct PlanFrac {
    pub local: f64,
    pub split: f64,
    pub offload: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SchedulerResult {
    pub name: String,
    pub deployable: bool,
    pub mean_reward: f64,
    /// Half-width of the 95% confidence interval of the mean reward.
    pub mean_reward_ci95: f64,
    pub regret: f64,
    pub regret_ratio: f64,
    pub latency_ms_mean: f64,
    pub latency_ms_p95: f64,
    pub latency_ms_p99: f64,
    pub slo_miss_rate: f64,
    pub accuracy: f64,
    pub plan_frac: PlanFrac,
    pub compressed_frac: f64,
    /// Per-request rewards, for paired comparisons (not serialised).
    #[serde(skip)]
    pub rewards: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub traces: String,
    pub requests: usize,
    pub best_baseline: String,
    pub oracle_mean_reward: f64,
    pub schedulers: Vec<SchedulerResult>,
}

/// Mean and 95% half-width of a sample.
pub fn mean_ci95(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, 1.96 * (var / n).sqrt())
}

/// Runs each scheduler over `episodes` episodes (episode i on trace i mod traces, seed + i).
pub fn evaluate(
    scenario: Arc<Scenario>,
    schedulers: &mut [Box<dyn Scheduler>],
    episodes: usize,
    seed: u64,
    traces_label: &str,
) -> Result<EvalReport, EnvError> {
    let mut env = ReplayEnv::new(scenario.clone());
    let mut oracle_rewards = Vec::new();
    let mut results = Vec::new();
    for (s, scheduler) in schedulers.iter_mut().enumerate() {
        let (mut rewards, mut latencies) = (Vec::new(), Vec::new());
        let (mut misses, mut accuracy, mut compressed) = (0usize, 0.0, 0usize);
        let mut frac = PlanFrac::default();
        for episode in 0..episodes {
            env.reset_on(episode, seed.wrapping_add(episode as u64))?;
            while env.current().is_some() {
                let action = scheduler.choose(&env);
                let step = env.step(action)?;
                let info = &step.info;
                if s == 0 {
                    oracle_rewards.push(info.oracle_reward.expect("evaluation computes the oracle"));
                }
                rewards.push(step.reward);
                latencies.push(info.outcome.total_ms);
                misses += (info.outcome.total_ms > info.slo_ms) as usize;
                accuracy += info.accuracy;
                compressed += info.compressed as usize;
                match info.plan.as_ref().map(|p| p.kind()) {
                    Some("local") => frac.local += 1.0,
                    Some("split") => frac.split += 1.0,
                    _ => frac.offload += 1.0,
                }
            }
        }
        let n = rewards.len() as f64;
        latencies.sort_by(f64::total_cmp);
        let (mean_reward, ci) = mean_ci95(&rewards);
        results.push(SchedulerResult {
            name: scheduler.name(),
            deployable: scheduler.deployable(),
            mean_reward,
            mean_reward_ci95: ci,
            regret: 0.0,
            regret_ratio: f64::NAN,
            latency_ms_mean: latencies.iter().sum::<f64>() / n,
            latency_ms_p95: percentile(&latencies, 0.95),
            latency_ms_p99: percentile(&latencies, 0.99),
            slo_miss_rate: misses as f64 / n,
            accuracy: accuracy / n,
            plan_frac: PlanFrac { local: frac.local / n, split: frac.split / n, offload: frac.offload / n },
            compressed_frac: compressed as f64 / n,
            rewards,
        });
    }
    let oracle_mean = oracle_rewards.iter().sum::<f64>() / oracle_rewards.len().max(1) as f64;
    for r in &mut results {
        r.regret = oracle_mean - r.mean_reward;
    }
    let best = results
        .iter()
        .filter(|r| r.deployable && r.name != "policy")
        .max_by(|a, b| a.mean_reward.total_cmp(&b.mean_reward))
        .map(|r| (r.name.clone(), r.regret));
    if let Some((_, best_regret)) = &best {
        for r in &mut results {
            r.regret_ratio = if *best_regret > 1e-12 { r.regret / best_regret } else { f64::NAN };
        }
    }
    Ok(EvalReport {
        traces: traces_label.to_string(),
        requests: oracle_rewards.len(),
        best_baseline: best.map(|b| b.0).unwrap_or_default(),
        oracle_mean_reward: oracle_mean,
        schedulers: results,
    })
}

impl std::fmt::Display for EvalReport {
    /// The comparison table, one row per scheduler.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} requests on {} (best deployable baseline: {}; oracle mean reward {:.3})",
            self.requests, self.traces, self.best_baseline, self.oracle_mean_reward
        )?;
        writeln!(
            f,
            "{:<13} {:>15} {:>7} {:>6} {:>8} {:>8} {:>8} {:>6} {:>6} {:>17} {:>6}",
            "scheduler", "reward (±95%)", "regret", "ratio", "lat ms", "p95", "p99", "miss", "acc", "local/split/offl", "compr"
        )?;
        for r in &self.schedulers {
            writeln!(
                f,
                "{:<13} {:>8.3} ±{:<5.3} {:>7.3} {:>6.2} {:>8.1} {:>8.1} {:>8.1} {:>6.3} {:>6.3} {:>5.2}/{:>5.2}/{:>5.2} {:>6.2}",
                r.name,
                r.mean_reward,
                r.mean_reward_ci95,
                r.regret,
                r.regret_ratio,
                r.latency_ms_mean,
                r.latency_ms_p95,
                r.latency_ms_p99,
                r.slo_miss_rate,
                r.accuracy,
                r.plan_frac.local,
                r.plan_frac.split,
                r.plan_frac.offload,
                r.compressed_frac
            )?;
        }
        Ok(())
    }
}
