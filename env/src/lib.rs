//! rlsched-env owns the scheduling problem as an environment: the observation, candidate plans
//! and their features, the reward, the trace-driven `ReplayEnv` (and its vectorised `VecEnv`),
//! the baseline schedulers with the hindsight oracle, and evaluation. It reuses the executor's
//! trace formats and stage profiles; it never runs a model itself except through `LiveEnv`.

pub mod candidates;
pub mod chain;
pub mod config;
pub mod decision;
pub mod episode;
pub mod error;
pub mod eval;
pub mod live;
pub mod measurements;
pub mod obs;
pub mod procedural;
pub mod queues;
pub mod replay;
pub mod request;
pub mod scenario;
pub mod schedulers;
pub mod sim_to_real;
pub mod synthetic;

use serde::Serialize;

pub use config::EnvConfig;
pub use decision::Decision;
pub use error::EnvError;
pub use obs::Obs;
pub use rlsched_executor::plan::Breakdown;
pub use live::LiveEnv;
pub use replay::{ReplayEnv, VecEnv};
pub use scenario::Scenario;

/// What a step reports besides the reward.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Info {
    pub workload: String,
    pub plan: Option<rlsched_executor::plan::Plan>,
    pub candidate: usize,
    #[serde(skip)]
    pub outcome: Breakdown,
    pub accuracy: f64,
    pub compressed: bool,
    pub slo_ms: f64,
    /// The hindsight-best reward for this request, where computed.
    pub oracle_reward: Option<f64>,
    /// Bytes the active probe sent before the next decision.
    pub probe_bytes: usize,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub obs: Obs,
    pub reward: f64,
    pub terminated: bool,
    pub truncated: bool,
    pub info: Info,
}

/// A Gymnasium-style environment whose calls can fail.
pub trait Env {
    fn reset(&mut self, seed: u64) -> Result<(Obs, Info), EnvError>;
    fn step(&mut self, action: usize) -> Result<Step, EnvError>;
}
