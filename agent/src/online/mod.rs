//! Online learning while serving: `[online]` of train.toml (this file), the learner that runs
//! PPO updates on finished requests (`learner`), and the guardrail that keeps the last good
//! policy and rolls back to it (`guardrail`). Serving owns the request path and demand
//! estimation (whose settings, `demand_*`, live here and apply with or without `--online`);
//! nothing here waits on a request, and no request waits on this.

pub mod guardrail;
pub mod learner;

use serde::{Deserialize, Serialize};

pub use guardrail::{Guardrail, Verdict};
pub use learner::{OnlineLearner, Transition};

/// `[online]`: how `rlsched serve --online` learns. Every field is bounded (see `validate`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OnlineConfig {
    /// Finished requests per PPO update: each update trains on exactly these (8..=100000).
    pub update_every: usize,
    /// Adam learning rate of online updates (constant; above 0, at most 0.01): smaller than
    /// offline, because each update sees few requests.
    pub learning_rate: f64,
    /// Epochs over each batch (1..=32) and minibatches per epoch (1..=update_every).
    pub update_epochs: usize,
    pub num_minibatches: usize,
    /// Discount and GAE λ over the stream of requests (0..=1).
    pub gamma: f64,
    pub gae_lambda: f64,
    /// Chance that a request's plan is drawn from the policy's softmax instead of its best
    /// plan (0..=0.5): some exploration, so that PPO sees alternatives.
    pub explore: f64,
    /// Demand estimation (serve's `demand`: the device's factor per model always, the worker's
    /// per plan with `--online`): weight of the newest measured/predicted ratio in each moving
    /// average (above 0, at most 1), and the bounds the correction factor stays in (ratios
    /// outside them are clipped; 0 < min ≤ 1 ≤ max ≤ 1000).
    pub demand_alpha: f64,
    pub demand_min: f64,
    pub demand_max: f64,
    /// Each request of a model moves the worker factors of that model's other plans this far
    /// back towards 1 (0..=1), and a request with no local stages the device's: a plan judged
    /// slow once is re-tested in time instead of being shunned for good because it is never
    /// measured again.
    pub demand_decay: f64,
    /// Guardrail: requests whose mean reward judges a new policy (1..=100000), and how far
    /// below the last good policy's mean it may fall before it is rolled back (≥ 0, reward
    /// units).
    pub reward_window: usize,
    pub rollback_margin: f64,
    /// A checkpoint every this many finished requests (0: only at shutdown; at most 10^9).
    pub checkpoint_every: usize,
    /// Finished requests kept while an update runs (≥ update_every, at most 1000000); past it
    /// the oldest are dropped and counted.
    pub max_pending: usize,
}

impl Default for OnlineConfig {
    fn default() -> Self {
        Self {
            update_every: 64,
            learning_rate: 1e-4,
            update_epochs: 4,
            num_minibatches: 4,
            gamma: 0.5,
            gae_lambda: 0.95,
            explore: 0.05,
            demand_alpha: 0.3,
            demand_min: 0.01,
            demand_max: 100.0,
            demand_decay: 0.01,
            reward_window: 64,
            rollback_margin: 0.25,
            checkpoint_every: 1000,
            max_pending: 4096,
        }
    }
}

/// Largest `checkpoint_every`: a billion requests, years of serving at any realistic rate.
pub const MAX_CHECKPOINT_EVERY: usize = 1_000_000_000;

impl OnlineConfig {
    /// Every value online learning cannot run with, named by its `online.` key.
    pub fn validate(&self) -> Result<(), String> {
        use rlsched_env::config::{check_count, check_range};
        let counts = [
            ("online.update_every", self.update_every, 8, 100_000),
            ("online.update_epochs", self.update_epochs, 1, 32),
            ("online.num_minibatches", self.num_minibatches, 1, self.update_every.max(1)),
            ("online.reward_window", self.reward_window, 1, 100_000),
            ("online.checkpoint_every", self.checkpoint_every, 0, MAX_CHECKPOINT_EVERY),
            ("online.max_pending", self.max_pending, self.update_every, 1_000_000),
        ];
        for (name, value, low, high) in counts {
            check_count(name, value, low, high)?;
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 0.01) {
            return Err(format!("online.learning_rate must be above 0 and at most 0.01, got {}", self.learning_rate));
        }
        check_range("online.gamma", self.gamma, 0.0, 1.0)?;
        check_range("online.gae_lambda", self.gae_lambda, 0.0, 1.0)?;
        check_range("online.explore", self.explore, 0.0, 0.5)?;
        if !(self.demand_alpha > 0.0 && self.demand_alpha <= 1.0) {
            return Err(format!("online.demand_alpha must be above 0 and at most 1, got {}", self.demand_alpha));
        }
        if !(self.demand_min > 0.0 && self.demand_min <= 1.0) {
            return Err(format!("online.demand_min must be above 0 and at most 1, got {}", self.demand_min));
        }
        check_range("online.demand_max", self.demand_max, 1.0, 1000.0)?;
        check_range("online.demand_decay", self.demand_decay, 0.0, 1.0)?;
        check_range("online.rollback_margin", self.rollback_margin, 0.0, 1e6)
    }

    /// The PPO settings of an online update: `base`'s losses and clipping, this section's
    /// batch, epochs and learning rate.
    pub fn ppo(&self, base: &crate::PpoConfig) -> crate::PpoConfig {
        crate::PpoConfig {
            num_envs: 1,
            num_steps: self.update_every,
            learning_rate: self.learning_rate,
            anneal_lr: false,
            gamma: self.gamma,
            gae_lambda: self.gae_lambda,
            update_epochs: self.update_epochs,
            num_minibatches: self.num_minibatches,
            ..base.clone()
        }
    }
}
