//! The online learner: PPO updates on the requests serving finished. It owns a training copy
//! of the policy (on the autodiff device) and its Adam state; serving never waits for it, and
//! swaps in the inference copy each update returns. Observation statistics stay as training
//! left them: the features a policy was trained on keep their scale.

use burn::module::Module;
use burn::optim::{AdamConfig, ModuleOptimizer, OptimizerRecord};
use burn::tensor::Device;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use rlsched_env::obs::{Obs, PLAN_FEATURES};

use crate::online::OnlineConfig;
use crate::policy::Policy;
use crate::ppo::{gae, IterationStats, TrainError};
use crate::update::{update, Rollout};
use crate::PpoConfig;

/// One finished request as PPO sees it.
#[derive(Clone, Debug)]
pub struct Transition {
    pub obs: Obs,
    pub action: usize,
    /// The serving policy's log-probability of the action and its value estimate.
    pub logprob: f64,
    pub value: f64,
    /// From the measured latency, by the simulator's reward definition.
    pub reward: f64,
}

pub struct OnlineLearner {
    ppo: PpoConfig,
    policy: Policy,
    /// The training copy of the last good policy, for a rollback.
    good: Policy,
    optimizer: ModuleOptimizer,
    device: Device,
    rng: SmallRng,
    /// Requests learned from so far.
    pub steps: usize,
}

impl OnlineLearner {
    /// `policy` loaded on the autodiff `device` (as `ppo::train` resumes a checkpoint);
    /// `optimizer`: the checkpoint's Adam moments, when it has them.
    pub fn new(policy: Policy, device: Device, optimizer: Option<OptimizerRecord>, base: &PpoConfig, config: &OnlineConfig, seed: u64) -> Self {
        let mut adam = AdamConfig::new().with_epsilon(1e-5).init();
        if let Some(record) = optimizer {
            adam = adam.load_record(record);
        }
        Self { ppo: config.ppo(base), good: policy.clone(), policy, optimizer: adam, device, rng: SmallRng::seed_from_u64(seed), steps: 0 }
    }

    /// One PPO update on `batch` (in the order served); returns the updated policy for
    /// inference and the update's statistics.
    pub fn learn(&mut self, batch: &[Transition]) -> Result<(Policy, IterationStats), TrainError> {
        let n = batch.len();
        let max_plans = batch.first().map_or(0, |t| t.obs.max_plans);
        if n == 0 || batch.iter().any(|t| t.obs.max_plans != max_plans) {
            return Err(TrainError::Config(format!("an online batch needs transitions of one plan count, got {n}")));
        }
        let s_dim = batch[0].obs.state.len();
        let (mut states, mut plans, mut masks) = (Vec::with_capacity(n * s_dim), Vec::with_capacity(n * max_plans * PLAN_FEATURES), Vec::with_capacity(n * max_plans));
        for t in batch {
            self.policy.normalizer.append(&t.obs, &mut states, &mut plans, &mut masks);
        }
        let actions: Vec<usize> = batch.iter().map(|t| t.action).collect();
        let logprobs: Vec<f64> = batch.iter().map(|t| t.logprob).collect();
        let rewards: Vec<f64> = batch.iter().map(|t| t.reward).collect();
        let values: Vec<f64> = batch.iter().map(|t| t.value).collect();
        // a stream, not episodes: the last request's value bootstraps the tail
        let dones = vec![false; n];
        let next_value = [values[n - 1]];
        let (advantages, returns) = gae(&rewards, &values, &dones, &next_value, 1, self.ppo.gamma, self.ppo.gae_lambda, crate::ppo::EpisodeEnd::Truncation);
        self.steps += n;
        let mut stats = IterationStats {
            global_step: self.steps,
            learning_rate: self.ppo.learning_rate,
            mean_reward: rewards.iter().sum::<f64>() / n as f64,
            ..Default::default()
        };
        let rollout = Rollout { states: &states, plans: &plans, masks: &masks, actions: &actions, logprobs: &logprobs, advantages: &advantages, returns: &returns, state_dim: s_dim, max_plans };
        let mut order: Vec<usize> = (0..n).collect();
        let policy = self.policy.clone();
        self.policy = update(policy, &mut self.optimizer, &rollout, &self.ppo, self.ppo.learning_rate, &mut order, &mut self.rng, &self.device, &mut stats)?;
        Ok((self.policy.valid(), stats))
    }

    /// The policy on trial became the good one.
    pub fn accept(&mut self) {
        self.good = self.policy.clone();
    }

    /// The guardrail rolled back: training goes on from the good policy.
    pub fn roll_back(&mut self) {
        self.policy = self.good.clone();
    }

    /// The Adam state, for a checkpoint.
    pub fn optimizer_record(&self) -> OptimizerRecord {
        self.optimizer.to_record()
    }
}
