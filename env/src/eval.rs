//! Evaluation: every scheduler on the same requests (same seeds, same trace offsets, same
//! compute draws), with the metrics users compare schedulers by.

use std::sync::Arc;

use rlsched_executor::profile::profiler::percentile;
use serde::Serialize;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::replay::ReplayEnv;
use crate::scenario::Scenario;
use crate::schedulers::{Oracle, Scheduler};
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
    /// This scheduler's reward minus the best deployable baseline's, paired request by request,
    /// with a 95% interval from a bootstrap over episodes (requests of one episode share a
    /// trace, a load and queues, so they are not independent).
    pub vs_best_baseline: PairedDifference,
    pub latency_ms_mean: f64,
    pub latency_ms_p95: f64,
    pub latency_ms_p99: f64,
    pub slo_miss_rate: f64,
    pub accuracy: f64,
    pub plan_frac: PlanFrac,
    pub compressed_frac: f64,
    /// Bytes sent per request: the plans' uploads and the probe's.
    pub bytes_up_per_request: f64,
    /// Share of the episode's time the device spent computing local stages.
    pub device_utilization: f64,
    /// Per-request rewards, for paired comparisons (not serialised).
    #[serde(skip)]
    pub rewards: Vec<f64>,
    /// Requests per episode, in order (not serialised).
    #[serde(skip)]
    pub episode_sizes: Vec<usize>,
    /// Every request's latency, ms, in ascending order (not serialised): the whole
    /// distribution, for CDFs.
    #[serde(skip)]
    pub latencies_ms: Vec<f64>,
}

/// A paired difference in mean reward with its bootstrap interval.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct PairedDifference {
    pub mean: f64,
    pub ci95_low: f64,
    pub ci95_high: f64,
    /// The episode with the lowest mean per-request difference: a rare catastrophe shows here
    /// before it moves the mean.
    pub worst_episode: f64,
    /// Its number in evaluation's order, which `rlsched eval --plot DIR --timeline-episode N`
    /// replays request by request.
    pub worst_episode_index: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub traces: String,
    pub requests: usize,
    pub best_baseline: String,
    pub oracle_mean_reward: f64,
    pub schedulers: Vec<SchedulerResult>,
}

/// A regret over the best baseline's: NaN where that baseline's regret is not above zero (it
/// matched the oracle), since no ratio means anything there.
pub fn regret_ratio(regret: f64, best_regret: f64) -> f64 {
    if best_regret > 1e-12 {
        regret / best_regret
    } else {
        f64::NAN
    }
}

/// Mean and 95% half-width of a sample.
pub fn mean_ci95(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, 1.96 * (var / n).sqrt())
}

/// Bootstrap resamples of the episodes.
const BOOTSTRAP: usize = 2000;

/// The mean of `a − b` over paired requests, and its 95% interval from resampling whole
/// episodes (`sizes` gives each episode's request count, in order).
pub fn paired_difference(a: &[f64], b: &[f64], sizes: &[usize], seed: u64) -> PairedDifference {
    let mut sums = Vec::with_capacity(sizes.len());
    let mut start = 0;
    for &n in sizes {
        let end = (start + n).min(a.len()).min(b.len());
        sums.push(((start..end).map(|i| a[i] - b[i]).sum::<f64>(), end - start));
        start = end;
    }
    let total: usize = sums.iter().map(|s| s.1).sum();
    if total == 0 {
        return PairedDifference { mean: f64::NAN, ci95_low: f64::NAN, ci95_high: f64::NAN, worst_episode: f64::NAN, worst_episode_index: None };
    }
    let mean = sums.iter().map(|s| s.0).sum::<f64>() / total as f64;
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..BOOTSTRAP)
        .map(|_| {
            let (mut sum, mut n) = (0.0, 0usize);
            for _ in 0..sums.len() {
                let (s, k) = sums[rng.random_range(0..sums.len())];
                sum += s;
                n += k;
            }
            sum / n.max(1) as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let worst = (sums.iter().enumerate().filter(|(_, s)| s.1 > 0))
        .map(|(i, s)| (i, s.0 / s.1 as f64))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    PairedDifference {
        mean,
        ci95_low: percentile(&means, 0.025),
        ci95_high: percentile(&means, 0.975),
        worst_episode: worst.map_or(f64::INFINITY, |w| w.1),
        worst_episode_index: worst.map(|w| w.0),
    }
}

/// Runs each scheduler over `episodes` episodes: episode i replays trace i mod traces (so every
/// file of the set is used in turn) from a random offset drawn from seed + i.
pub fn evaluate(
    scenario: Arc<Scenario>,
    schedulers: &mut [Box<dyn Scheduler>],
    episodes: usize,
    seed: u64,
    traces_label: &str,
) -> Result<EvalReport, EnvError> {
    evaluate_against(scenario, schedulers, episodes, seed, traces_label, None)
}

/// `evaluate`, with the oracle's mean reward on these same episodes already known (from an
/// earlier report), so a repeated check does not run the oracle again.
pub fn evaluate_against(
    scenario: Arc<Scenario>,
    schedulers: &mut [Box<dyn Scheduler>],
    episodes: usize,
    seed: u64,
    traces_label: &str,
    known_oracle_mean: Option<f64>,
) -> Result<EvalReport, EnvError> {
    let mut env = ReplayEnv::new(scenario.clone());
    env.compute_oracle = false;
    let mut results = Vec::new();
    for scheduler in schedulers.iter_mut() {
        let (mut rewards, mut latencies, mut episode_sizes) = (Vec::new(), Vec::new(), Vec::new());
        let (mut misses, mut accuracy, mut compressed, mut bytes_up) = (0usize, 0.0, 0usize, 0.0);
        let (mut busy_s, mut span_s) = (0.0, 0.0);
        let mut frac = PlanFrac::default();
        for episode in 0..episodes {
            let (_, reset) = env.reset_on(episode, seed.wrapping_add(episode as u64))?;
            let (mut first, mut last, before) = (f64::INFINITY, 0.0f64, rewards.len());
            bytes_up += reset.probe_bytes as f64;
            while let Some(decision) = env.decision() {
                let action = scheduler.choose(&decision);
                let arrival = env.current().map_or(0.0, |r| r.world.time_s);
                let step = env.step(action)?;
                let info = &step.info;
                let out = &info.outcome;
                rewards.push(step.reward);
                latencies.push(out.total_ms);
                misses += (out.total_ms > info.slo_ms) as usize;
                accuracy += info.accuracy;
                compressed += info.compressed as usize;
                bytes_up += (out.bytes_up + info.probe_bytes) as f64;
                busy_s += (out.local_ms - out.device_wait_ms) / 1e3;
                first = first.min(arrival);
                last = last.max(arrival + out.total_ms / 1e3);
                match info.plan.as_ref().map(|p| p.kind()) {
                    Some("local") => frac.local += 1.0,
                    Some("split") => frac.split += 1.0,
                    _ => frac.offload += 1.0,
                }
            }
            span_s += (last - first).max(0.0);
            episode_sizes.push(rewards.len() - before);
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
            vs_best_baseline: PairedDifference::default(),
            latency_ms_mean: latencies.iter().sum::<f64>() / n,
            latency_ms_p95: percentile(&latencies, 0.95),
            latency_ms_p99: percentile(&latencies, 0.99),
            slo_miss_rate: misses as f64 / n,
            accuracy: accuracy / n,
            plan_frac: PlanFrac { local: frac.local / n, split: frac.split / n, offload: frac.offload / n },
            compressed_frac: compressed as f64 / n,
            bytes_up_per_request: bytes_up / n,
            device_utilization: if span_s > 0.0 { busy_s / span_s } else { 0.0 },
            rewards,
            episode_sizes,
            latencies_ms: latencies,
        });
    }
    // The reference is the clairvoyant greedy oracle on its own trajectory (with contention,
    // each scheduler's choices leave different queues).
    let oracle_mean = match (results.iter().find(|r| r.name == "oracle"), known_oracle_mean) {
        (Some(r), _) => r.mean_reward,
        (None, Some(mean)) => mean,
        (None, None) => evaluate(scenario, &mut [Box::new(Oracle) as Box<dyn Scheduler>], episodes, seed, traces_label)?.schedulers[0].mean_reward,
    };
    let requests = results.first().map_or(0, |r| r.rewards.len());
    for r in &mut results {
        r.regret = oracle_mean - r.mean_reward;
    }
    let best = results
        .iter()
        .filter(|r| r.deployable && r.name != "policy")
        .max_by(|a, b| a.mean_reward.total_cmp(&b.mean_reward))
        .map(|r| (r.name.clone(), r.regret, r.rewards.clone()));
    if let Some((_, best_regret, best_rewards)) = &best {
        for r in &mut results {
            r.regret_ratio = regret_ratio(r.regret, *best_regret);
            r.vs_best_baseline = paired_difference(&r.rewards, best_rewards, &r.episode_sizes, seed);
        }
    }
    Ok(EvalReport {
        traces: traces_label.to_string(),
        requests,
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
            "{:<13} {:>15} {:>7} {:>6} {:>21} {:>8} {:>8} {:>8} {:>6} {:>6} {:>17} {:>6} {:>7} {:>5}",
            "scheduler", "reward (±95%)", "regret", "ratio", "vs best (95%)", "lat ms", "p95", "p99", "miss", "acc", "local/split/offl", "compr", "KB up", "util"
        )?;
        for r in &self.schedulers {
            writeln!(
                f,
                "{:<13} {:>8.3} ±{:<5.3} {:>7.3} {:>6.2} {:>+7.3} [{:>+6.3},{:>+6.3}] {:>8.1} {:>8.1} {:>8.1} {:>6.3} {:>6.3} {:>5.2}/{:>5.2}/{:>5.2} {:>6.2} {:>7.1} {:>5.2}",
                r.name,
                r.mean_reward,
                r.mean_reward_ci95,
                r.regret,
                r.regret_ratio,
                r.vs_best_baseline.mean,
                r.vs_best_baseline.ci95_low,
                r.vs_best_baseline.ci95_high,
                r.latency_ms_mean,
                r.latency_ms_p95,
                r.latency_ms_p99,
                r.slo_miss_rate,
                r.accuracy,
                r.plan_frac.local,
                r.plan_frac.split,
                r.plan_frac.offload,
                r.compressed_frac,
                r.bytes_up_per_request / 1e3,
                r.device_utilization
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worst episode is the lowest per-request mean, named by its place in evaluation's
    /// order, so that it can be replayed; the interval brackets the mean.
    #[test]
    fn the_paired_difference_names_its_worst_episode() {
        // three episodes of 2, 3 and 2 requests: means +1, -0.5 and 0
        let a = [2.0, 2.0, 0.0, 0.0, 0.5, 1.0, 1.0];
        let b = [1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 1.0];
        let d = paired_difference(&a, &b, &[2, 3, 2], 7);
        assert_eq!(d.worst_episode_index, Some(1));
        assert!((d.worst_episode + 0.5).abs() < 1e-12, "{}", d.worst_episode);
        assert!((d.mean - 0.5 / 7.0).abs() < 1e-12, "{}", d.mean);
        assert!(d.ci95_low <= d.mean && d.mean <= d.ci95_high, "{d:?}");
        assert_eq!(paired_difference(&[], &[], &[], 7).worst_episode_index, None);
    }
}
