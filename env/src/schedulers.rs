//! Schedulers behind one trait, shared with the learned policy. Each chooses from a
//! [`Decision`]: the deployable ones read only what a device knows (the observation, its link
//! estimate, its own queues, the monitor's load reading, the worker's last report).
//! `oracle-now` also reads the true current bandwidth, load and queue; `oracle` the true
//! outcome of every plan. Those two are references, not baselines.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::decision::Decision;
use crate::replay::ReplayEnv;
use crate::{Env, EnvError};

pub trait Scheduler {
    fn name(&self) -> String;
    fn deployable(&self) -> bool {
        true
    }
    /// Index of the chosen candidate; it must be valid under `decision.obs.mask`.
    fn choose(&mut self, decision: &Decision) -> usize;
}

/// Highest-accuracy valid local plan; fastest among equals. Falls back to any valid plan.
pub struct LocalBest;
impl Scheduler for LocalBest {
    fn name(&self) -> String {
        "local".into()
    }
    fn choose(&mut self, d: &Decision) -> usize {
        d.best_valid(|_, c| if c.uses_worker() { f64::MIN } else { c.accuracy * 1e6 - c.local_mean_ms() })
    }
}

/// Offload the most accurate valid variant (smallest upload among equals).
pub struct OffloadAll;
impl Scheduler for OffloadAll {
    fn name(&self) -> String {
        "offload".into()
    }
    fn choose(&mut self, d: &Decision) -> usize {
        d.best_valid(|_, c| {
            if c.kind() == "offload" { c.accuracy * 1e9 - c.bytes_up } else if c.uses_worker() { -1e12 } else { -2e12 }
        })
    }
}

/// Which bandwidth a predictive baseline plans with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Estimate {
    /// The last goodput sample (Neurosurgeon).
    Last,
    /// The harmonic mean of the recent samples (MPC, FESTIVE).
    Harmonic,
    /// The harmonic mean discounted by the largest recent prediction error (RobustMPC).
    Robust,
}

/// A greedy, queue-aware predictor: each plan's latency from the profile means at the
/// monitor's load, a bandwidth estimate, the worker's last reported queue and the device's own
/// queues; the best predicted reward wins. With `Estimate::Last` this is Neurosurgeon.
pub struct Predictive {
    pub estimate: Estimate,
}

impl Scheduler for Predictive {
    fn name(&self) -> String {
        match self.estimate {
            Estimate::Last => "neurosurgeon",
            Estimate::Harmonic => "mpc",
            Estimate::Robust => "robust-mpc",
        }
        .into()
    }
    fn choose(&mut self, d: &Decision) -> usize {
        let link = &d.measurements.link;
        let mbps = match self.estimate {
            Estimate::Last => link.last_mbps(),
            Estimate::Harmonic => link.harmonic_mbps(),
            Estimate::Robust => link.robust_mbps(),
        };
        d.best_predicted(d.observed_load, mbps, d.measurements.reported_queue)
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
    fn choose(&mut self, d: &Decision) -> usize {
        let rng = &mut self.rng;
        d.best_valid(|_, _| rng.random::<f64>())
    }
}

/// The single plan per workload (by candidate identity) with the best mean reward on training
/// episodes; where it is masked, the next best valid one.
pub struct BestStatic {
    /// Per workload (by name): candidate indices from best to worst mean training reward.
    pub ranking: Vec<(String, Vec<usize>)>,
}

impl BestStatic {
    /// Scores every candidate on `episodes` training episodes of `env`'s scenario (each plan's
    /// true reward behind the queues that choosing the first valid plan leaves).
    pub fn fit(env: &mut ReplayEnv, episodes: usize, seed: u64) -> Result<Self, EnvError> {
        let workloads = &env.scenario().workloads;
        let mut sums: Vec<Vec<(f64, usize)>> = workloads.iter().map(|w| vec![(0.0, 0); w.candidates.len()]).collect();
        for episode in 0..episodes {
            env.reset(seed.wrapping_add(episode as u64))?;
            while let Some(request) = env.current() {
                let w = request.workload;
                let mask = &env.observation().mask;
                for (i, sum) in sums[w].iter_mut().enumerate() {
                    if let (true, Some((_, _, reward))) = (mask[i], env.evaluate(i)) {
                        sum.0 += reward;
                        sum.1 += 1;
                    }
                }
                let first_valid = mask.iter().position(|m| *m).unwrap_or(0);
                env.step_in_place(first_valid)?;
            }
        }
        let ranking = sums
            .iter()
            .zip(&env.scenario().workloads)
            .map(|(s, w)| {
                let mut order: Vec<usize> = (0..s.len()).collect();
                let mean = |i: usize| if s[i].1 == 0 { f64::MIN } else { s[i].0 / s[i].1 as f64 };
                order.sort_by(|&a, &b| mean(b).total_cmp(&mean(a)));
                (w.mix.name.clone(), order)
            })
            .collect();
        Ok(Self { ranking })
    }
}

impl Scheduler for BestStatic {
    fn name(&self) -> String {
        "best-static".into()
    }
    fn choose(&mut self, d: &Decision) -> usize {
        let ranking = self.ranking.iter().find(|(name, _)| *name == d.model.mix.name).map(|r| r.1.as_slice()).unwrap_or(&[]);
        d.best_valid(|i, _| -(ranking.iter().position(|&r| r == i).unwrap_or(usize::MAX) as f64))
    }
}

/// Knows the true current bandwidth, load and worker queue, but not the future.
pub struct OracleNow;
impl Scheduler for OracleNow {
    fn name(&self) -> String {
        "oracle-now".into()
    }
    fn deployable(&self) -> bool {
        false
    }
    fn choose(&mut self, d: &Decision) -> usize {
        let truth = d.hindsight.expect("oracle-now runs in the simulator only");
        let world = truth.world().expect("a current request");
        d.best_predicted(world.device_load, Some(truth.now_mbps()), world.worker_queue)
    }
}

/// The clairvoyant reference: it knows the future trace and every compute draw, and chooses
/// the plan with the best true reward over this request and the next `ORACLE_LOOKAHEAD − 1`
/// (followed greedily), given the queues left by its own earlier choices. Not a proven bound,
/// but it sees the delay a choice causes later requests, which a one-request oracle did not.
pub struct Oracle;
impl Scheduler for Oracle {
    fn name(&self) -> String {
        "oracle".into()
    }
    fn deployable(&self) -> bool {
        false
    }
    fn choose(&mut self, d: &Decision) -> usize {
        d.hindsight.and_then(|h| h.best()).expect("the oracle runs in the simulator only")
    }
}

pub const BASELINES: [&str; 9] = [
    "local", "offload", "best-static", "neurosurgeon", "mpc", "robust-mpc", "random", "oracle-now", "oracle",
];

/// Builds a baseline by name. `best-static` is fitted on `train` episodes.
pub fn by_name(name: &str, train: &mut ReplayEnv, seed: u64) -> Result<Box<dyn Scheduler>, EnvError> {
    Ok(match name {
        "local" => Box::new(LocalBest),
        "offload" => Box::new(OffloadAll),
        "best-static" => Box::new(BestStatic::fit(train, 20, seed)?),
        "neurosurgeon" => Box::new(Predictive { estimate: Estimate::Last }),
        "mpc" => Box::new(Predictive { estimate: Estimate::Harmonic }),
        "robust-mpc" => Box::new(Predictive { estimate: Estimate::Robust }),
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
