//! `[agent.model]` and `[agent.ppo]` of train.toml: every hyperparameter in one place, each
//! documented (CleanRL's ppo.py is the model). Derived sizes are computed, never configured.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Width of the hidden layers of the plan scorer and the value head.
    pub hidden: usize,
    /// Normalised observation features are clipped to ±obs_clip (Gymnasium's default is 10).
    pub obs_clip: f32,
    /// Weight of the greedy prior: each plan's logit is the scorer's output plus
    /// `greedy_prior ×` the plan's normalised predicted reward under the harmonic-mean
    /// bandwidth estimate (what `mpc` maximises; in units of that feature's running standard
    /// deviation), so the scorer learns where to depart from the greedy choice rather than
    /// the greedy choice itself, and a model it never saw starts from mpc's judgement.
    /// 0: no prior (the checkpoints before it).
    pub greedy_prior: f32,
    /// The prior relative to the request's own plans: `(z − max z) / (max z − min z)` over
    /// its valid plans (0 for the best, −1 for the worst), so a fast link's hundredths rank
    /// plans as strongly as a slow link's whole units; false: the normalised reward itself.
    pub greedy_prior_relative: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self { hidden: 64, obs_clip: 10.0, greedy_prior: 0.0, greedy_prior_relative: false }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PpoConfig {
    /// Environment steps (requests) to train for.
    pub total_steps: usize,
    /// Environments stepped together.
    pub num_envs: usize,
    /// Steps per environment per rollout.
    pub num_steps: usize,
    /// Adam learning rate (annealed linearly to zero when `anneal_lr`).
    pub learning_rate: f64,
    pub anneal_lr: bool,
    /// Discount. A choice delays the few requests queued behind it, so credit reaches a few
    /// requests ahead, not far.
    pub gamma: f64,
    /// GAE λ.
    pub gae_lambda: f64,
    /// Whether an episode's end is a truncation (the device keeps serving after its last
    /// request: bootstrap from the value there) or a termination (the return stops).
    pub truncate_episodes: bool,
    /// Minibatches per epoch.
    pub num_minibatches: usize,
    /// Optimisation epochs per rollout.
    pub update_epochs: usize,
    /// Normalise advantages per minibatch.
    pub norm_adv: bool,
    /// Also scale each environment's advantages in a rollout by their own spread first. A
    /// rollout's segment of one environment is mostly one episode on one trace at one
    /// bandwidth scale; on a slow link rewards swing by whole units, on a fast one by
    /// hundredths, and without this the slow episodes drown out what the fast ones teach.
    pub norm_adv_per_env: bool,
    /// PPO clip coefficient.
    pub clip_coef: f64,
    /// Value loss coefficient.
    pub vf_coef: f64,
    /// Entropy bonus coefficient.
    pub ent_coef: f64,
    /// Gradient-norm clip.
    pub max_grad_norm: f32,
    pub seed: u64,
}

impl Default for PpoConfig {
    fn default() -> Self {
        Self {
            total_steps: 100_000,
            num_envs: 16,
            num_steps: 128,
            learning_rate: 1e-3,
            anneal_lr: true,
            gamma: 0.7,
            gae_lambda: 0.95,
            truncate_episodes: true,
            num_minibatches: 4,
            update_epochs: 4,
            norm_adv: true,
            norm_adv_per_env: false,
            clip_coef: 0.2,
            vf_coef: 0.5,
            ent_coef: 0.01,
            max_grad_norm: 0.5,
            seed: 1,
        }
    }
}

/// Upper bounds of the sizes in `[agent]`: each keeps the network, a rollout and a minibatch
/// allocatable (a rollout holds an observation per step, a minibatch a hidden vector per plan),
/// and every product of sizes far from overflow.
pub const MAX_HIDDEN: usize = 4096;
pub const MAX_TOTAL_STEPS: usize = 1_000_000_000;
pub const MAX_NUM_ENVS: usize = 1024;
pub const MAX_NUM_STEPS: usize = 1 << 17;
/// `num_envs × num_steps`, the steps of one rollout.
pub const MAX_BATCH_SIZE: usize = 1 << 18;
pub const MAX_UPDATE_EPOCHS: usize = 1000;
/// A prior past this would swamp any score the network can learn (predicted rewards are clamped to ±50).
pub const MAX_GREEDY_PRIOR: f64 = 100.0;

impl PpoConfig {
    /// Saturating, so that an unchecked config cannot overflow here; `validate` bounds it.
    pub fn batch_size(&self) -> usize {
        self.num_envs.saturating_mul(self.num_steps)
    }

    pub fn minibatch_size(&self) -> usize {
        (self.batch_size() / self.num_minibatches.max(1)).max(1)
    }

    pub fn num_iterations(&self) -> usize {
        (self.total_steps / self.batch_size().max(1)).max(1)
    }

    pub fn episode_end(&self) -> crate::ppo::EpisodeEnd {
        if self.truncate_episodes {
            crate::ppo::EpisodeEnd::Truncation
        } else {
            crate::ppo::EpisodeEnd::Termination
        }
    }
}

impl AgentConfig {
    /// Every value PPO cannot train with, named by its `agent.` key.
    pub fn validate(&self) -> Result<(), String> {
        use rlsched_env::config::{check_count, check_positive, check_range};
        let (m, p) = (&self.model, &self.ppo);
        check_count("agent.model.hidden", m.hidden, 1, MAX_HIDDEN)?;
        check_count("agent.ppo.total_steps", p.total_steps, 1, MAX_TOTAL_STEPS)?;
        check_count("agent.ppo.num_envs", p.num_envs, 1, MAX_NUM_ENVS)?;
        check_count("agent.ppo.num_steps", p.num_steps, 1, MAX_NUM_STEPS)?;
        if p.batch_size() > MAX_BATCH_SIZE {
            return Err(format!(
                "agent.ppo.num_envs × agent.ppo.num_steps (the rollout) must be at most {MAX_BATCH_SIZE}, got {} × {} = {}",
                p.num_envs,
                p.num_steps,
                p.batch_size()
            ));
        }
        check_count("agent.ppo.num_minibatches", p.num_minibatches, 1, p.batch_size())?;
        check_count("agent.ppo.update_epochs", p.update_epochs, 1, MAX_UPDATE_EPOCHS)?;
        check_positive("agent.model.obs_clip", m.obs_clip as f64)?;
        check_range("agent.model.greedy_prior", m.greedy_prior as f64, 0.0, MAX_GREEDY_PRIOR)?;
        check_positive("agent.ppo.learning_rate", p.learning_rate)?;
        check_range("agent.ppo.gamma", p.gamma, 0.0, 1.0)?;
        check_range("agent.ppo.gae_lambda", p.gae_lambda, 0.0, 1.0)?;
        check_positive("agent.ppo.clip_coef", p.clip_coef)?;
        check_range("agent.ppo.vf_coef", p.vf_coef, 0.0, f64::INFINITY)?;
        check_range("agent.ppo.ent_coef", p.ent_coef, 0.0, f64::INFINITY)?;
        check_positive("agent.ppo.max_grad_norm", p.max_grad_norm as f64)
    }
}

/// `[agent]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub model: ModelConfig,
    pub ppo: PpoConfig,
}
