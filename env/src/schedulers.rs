//! Schedulers behind one trait, shared with the learned policy. The deployable ones read only
//! what a device knows (the observation, its own measurements, the monitor's load reading, the
//! worker's last report). `oracle-now` also reads the true current bandwidth, load and queue;
//! `oracle` reads the hindsight outcome of every plan. Those two are bounds, not baselines.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::obs::predict;
use crate::candidates::Candidate;
use crate::replay::ReplayEnv;
use crate::{Env, EnvError};

pub trait Scheduler {
    fn name(&self) -> String;
    fn deployable(&self) -> bool {
        true
    }
    /// Index of the chosen candidate for the environment's current request; it must be valid.
    fn choose(&mut self, env: &ReplayEnv) -> usize;
}

/// The valid candidate with the highest score (first on ties).
pub fn best_valid(env: &ReplayEnv, mut score: impl FnMut(usize, &Candidate) -> f64) -> usize {
    let obs = env.observation();
    let request = env.current().expect("a current request");
    let candidates = &env.scenario().workloads[request.workload].candidates;
    let mut best = None;
    for (i, c) in candidates.iter().enumerate() {
        if !obs.mask[i] {
            continue;
        }
        let s = score(i, c);
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((i, s));
        }
    }
    // The observation always leaves one plan valid (a validated profile gives every variant a
    // local plan); were none, plan 0 is refused by `step` as an error rather than a panic here.
    best.map_or(0, |b| b.0)
}

fn candidates(env: &ReplayEnv) -> &[Candidate] {
    let request = env.current().expect("a current request");
    &env.scenario().workloads[request.workload].candidates
}

fn slo(env: &ReplayEnv) -> f64 {
    let request = env.current().expect("a current request");
    env.scenario().workloads[request.workload].mix.slo_ms
}

/// Highest-accuracy valid local plan; fastest among equals. Falls back to any valid plan.
pub struct LocalBest;
impl Scheduler for LocalBest {
    fn name(&self) -> String {
        "local".into()
    }
    fn choose(&mut self, env: &ReplayEnv) -> usize {
        best_valid(env, |_, c| {
            if c.uses_worker() { f64::MIN } else { c.accuracy * 1e6 - c.local_mean_ms() }
        })
    }
}

/// Offload the most accurate valid variant (smallest upload among equals).
pub struct OffloadAll;
impl Scheduler for OffloadAll {
    fn name(&self) -> String {
        "offload".into()
    }
    fn choose(&mut self, env: &ReplayEnv) -> usize {
        best_valid(env, |_, c| {
            if c.kind() == "offload" { c.accuracy * 1e9 - c.bytes_up } else if c.uses_worker() { -1e12 } else { -2e12 }
        })
    }
}

/// Neurosurgeon (load-aware): profile-mean latency at the monitor's load, the last measured
/// bandwidth and the worker's last reported queue; the best predicted reward.
pub struct Neurosurgeon;
impl Scheduler for Neurosurgeon {
    fn name(&self) -> String {
        "neurosurgeon".into()
    }
    fn choose(&mut self, env: &ReplayEnv) -> usize {
        predicted_best(env, env.measurements.last_mbps())
    }
}

/// As Neurosurgeon, with bandwidth predicted as the harmonic mean of the last measurements
/// (RobustMPC / FESTIVE).
pub struct Mpc;
impl Scheduler for Mpc {
    fn name(&self) -> String {
        "mpc".into()
    }
    fn choose(&mut self, env: &ReplayEnv) -> usize {
        predicted_best(env, env.measurements.harmonic_mbps())
    }
}

fn predicted_best(env: &ReplayEnv, mbps: Option<f64>) -> usize {
    let request = env.current().expect("a current request");
    let config = &env.scenario().config;
    let slo = slo(env);
    let queue = env.measurements.reported_queue;
    best_valid(env, |_, c| {
        let p = predict(c, request.observed_load, mbps, queue, config);
        config.reward.reward(c.accuracy, p.total_ms(), slo)
    })
}

/// The original rule: local if the CPU is below 80% and memory suffices, else offload if the
/// network is good, else split at the cheapest cut.
pub struct Threshold {
    pub good_mbps: f64,
}
impl Scheduler for Threshold {
    fn name(&self) -> String {
        "threshold".into()
    }
    fn choose(&mut self, env: &ReplayEnv) -> usize {
        let request = env.current().expect("a current request");
        let obs = env.observation();
        let any_local = candidates(env).iter().enumerate().any(|(i, c)| obs.mask[i] && !c.uses_worker());
        if request.observed_load < 0.8 && any_local {
            return LocalBest.choose(env);
        }
        let good = env.measurements.last_mbps().is_some_and(|m| m >= self.good_mbps);
        if good {
            return OffloadAll.choose(env);
        }
        best_valid(env, |_, c| match c.kind() {
            "split" => c.accuracy * 1e9 - c.bytes_up,
            "offload" => -1e12,
            _ => -2e12,
        })
    }
}

pub struct RandomScheduler {
    rng: SmallRng,
}
impl RandomScheduler {
    pub fn new(seed: u64) -> Self {
        Self { rng: SmallRng::seed_from_u64(seed) }
    }
}
impl Scheduler for RandomScheduler {
    fn name(&self) -> String {
        "random".into()
    }
    fn choose(&mut self, env: &ReplayEnv) -> usize {
        let rng = &mut self.rng;
        best_valid(env, |_, _| rng.random::<f64>())
    }
}

/// The single plan per workload (by candidate identity) with the best mean reward on training
/// episodes; where it is masked, the next best valid one.
pub struct BestStatic {
    /// Per workload: candidate indices from best to worst mean training reward.
    pub ranking: Vec<Vec<usize>>,
}

impl BestStatic {
    /// Scores every candidate on `episodes` training episodes of `env`'s scenario.
    pub fn fit(env: &mut ReplayEnv, episodes: usize, seed: u64) -> Result<Self, EnvError> {
        let workloads = &env.scenario().workloads;
        let mut sums: Vec<Vec<(f64, usize)>> = workloads.iter().map(|w| vec![(0.0, 0); w.candidates.len()]).collect();
        for episode in 0..episodes {
            env.reset(seed.wrapping_add(episode as u64))?;
            while let Some(request) = env.current() {
                let w = request.workload;
                let n = env.observation().n_plans;
                for i in 0..n {
                    if !env.observation().mask[i] {
                        continue;
                    }
                    if let Some((_, reward)) = env.evaluate(i) {
                        sums[w][i].0 += reward;
                        sums[w][i].1 += 1;
                    }
                }
                // None valid would make `step_in_place` refuse plan 0 with an error.
                let first_valid = env.observation().mask[..n].iter().position(|m| *m).unwrap_or(0);
                env.step_in_place(first_valid)?;
            }
        }
        let ranking = sums
            .iter()
            .map(|s| {
                let mut order: Vec<usize> = (0..s.len()).collect();
                let mean = |i: usize| if s[i].1 == 0 { f64::MIN } else { s[i].0 / s[i].1 as f64 };
                order.sort_by(|&a, &b| mean(b).total_cmp(&mean(a)));
                order
            })
            .collect();
        Ok(Self { ranking })
    }
}

impl Scheduler for BestStatic {
    fn name(&self) -> String {
        "best-static".into()
    }
    fn choose(&mut self, env: &ReplayEnv) -> usize {
        let request = env.current().expect("a current request");
        let ranking = &self.ranking[request.workload];
        best_valid(env, |i, _| -(ranking.iter().position(|&r| r == i).unwrap_or(usize::MAX) as f64))
    }
}

/// Knows the true current bandwidth, load and queue, but not the future.
pub struct OracleNow;
impl Scheduler for OracleNow {
    fn name(&self) -> String {
        "oracle-now".into()
    }
    fn deployable(&self) -> bool {
        false
    }
    fn choose(&mut self, env: &ReplayEnv) -> usize {
        let request = env.current().expect("a current request");
        let config = &env.scenario().config;
        let now_mbps = env.trace().rate_bps_at(request.world.time_s) / 1e6;
        let slo = slo(env);
        best_valid(env, |_, c| {
            let p = predict(c, request.world.device_load, Some(now_mbps), request.world.worker_queue, config);
            config.reward.reward(c.accuracy, p.total_ms(), slo)
        })
    }
}

/// The hindsight-best plan under the true trace and the same compute draws.
pub struct Oracle;
impl Scheduler for Oracle {
    fn name(&self) -> String {
        "oracle".into()
    }
    fn deployable(&self) -> bool {
        false
    }
    fn choose(&mut self, env: &ReplayEnv) -> usize {
        env.oracle().expect("a current request").0
    }
}

pub const BASELINES: [&str; 9] = [
    "local", "offload", "best-static", "neurosurgeon", "mpc", "threshold", "random", "oracle-now", "oracle",
];

/// Builds a baseline by name. `best-static` is fitted on `train` episodes.
pub fn by_name(name: &str, train: &mut ReplayEnv, seed: u64) -> Result<Box<dyn Scheduler>, EnvError> {
    Ok(match name {
        "local" => Box::new(LocalBest),
        "offload" => Box::new(OffloadAll),
        "best-static" => Box::new(BestStatic::fit(train, 20, seed)?),
        "neurosurgeon" => Box::new(Neurosurgeon),
        "mpc" => Box::new(Mpc),
        "threshold" => Box::new(Threshold { good_mbps: 5.0 }),
        "random" => Box::new(RandomScheduler::new(seed)),
        "oracle-now" => Box::new(OracleNow),
        "oracle" => Box::new(Oracle),
        other => {
            return Err(EnvError::Config(format!(
                "unknown scheduler `{other}` (known: {}, policy)",
                BASELINES.join(", ")
            )))
        }
    })
}
