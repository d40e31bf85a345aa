//! PPO, read top to bottom like CleanRL's ppo.py: collect a rollout from the vectorised
//! simulator, compute GAE advantages, then a few epochs of clipped-objective minibatch updates
//! with a value loss, an entropy bonus, advantage normalisation, gradient-norm clipping and
//! learning-rate annealing. The x-axis of every statistic is environment steps.

use std::sync::Arc;

use burn::module::Module;
use burn::optim::{AdamConfig, OptimizerRecord};
use burn::tensor::activation::softmax;
use burn::tensor::Device;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rlsched_env::obs::{state_dim, PLAN_FEATURES};
use rlsched_env::{EnvError, Scenario, VecEnv};

use std::path::Path;

use crate::checkpoint::{self, CheckpointError};
use crate::policy::{ObsBatch, Policy, RUNAWAY_SCORE};
use crate::update::{update, Rollout};
use crate::{ModelConfig, PpoConfig};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("--resume: {0}")]
    Resume(String),
    #[error("{0}")]
    Config(String),
    /// A loss, logit or value became NaN or infinite: the run diverged.
    #[error("training diverged at step {step}: {what} became non-finite (try a lower agent.ppo.learning_rate or agent.ppo.max_grad_norm)")]
    Diverged { step: usize, what: &'static str },
}

/// How a step that ends an episode is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpisodeEnd {
    /// The world ends there: nothing follows, the return is the reward alone.
    Termination,
    /// The episode is cut by a step limit while the world goes on (a device keeps serving after
    /// 200 requests): the step bootstraps from the value of its own state, the best stand-in
    /// for the state after it, which the simulator does not draw.
    Truncation,
}

/// Generalised advantage estimation over one rollout stored step-major (`[t][env]`).
/// `dones[t][e]` marks that the step ended an episode: advantages never flow across it, and
/// `end` says whether its return bootstraps.
#[allow(clippy::too_many_arguments)]
pub fn gae(
    rewards: &[f64],
    values: &[f64],
    dones: &[bool],
    next_values: &[f64],
    num_envs: usize,
    gamma: f64,
    lambda: f64,
    end: EpisodeEnd,
) -> (Vec<f64>, Vec<f64>) {
    let steps = rewards.len() / num_envs;
    let mut advantages = vec![0.0; rewards.len()];
    for e in 0..num_envs {
        let mut last = 0.0;
        for t in (0..steps).rev() {
            let i = t * num_envs + e;
            let next_value = match (dones[i], end) {
                (true, EpisodeEnd::Termination) => 0.0,
                (true, EpisodeEnd::Truncation) => values[i],
                (false, _) if t + 1 == steps => next_values[e],
                (false, _) => values[i + num_envs],
            };
            let not_done = if dones[i] { 0.0 } else { 1.0 };
            let delta = rewards[i] + gamma * next_value - values[i];
            last = delta + gamma * lambda * not_done * last;
            advantages[i] = last;
        }
    }
    let returns = advantages.iter().zip(values).map(|(a, v)| a + v).collect();
    (advantages, returns)
}

/// Scales each environment's advantages (stored step-major) to unit spread around their mean.
pub fn normalize_per_env(advantages: &mut [f64], num_envs: usize) {
    let steps = advantages.len() / num_envs.max(1);
    if steps < 2 {
        return;
    }
    for e in 0..num_envs {
        let column = (0..steps).map(|t| t * num_envs + e);
        let mean = column.clone().map(|i| advantages[i]).sum::<f64>() / steps as f64;
        let var = column.clone().map(|i| (advantages[i] - mean).powi(2)).sum::<f64>() / (steps - 1) as f64;
        let std = var.sqrt() + 1e-8;
        for i in column {
            advantages[i] = (advantages[i] - mean) / std;
        }
    }
}

/// What one iteration did, for progress bars and metric sinks.
#[derive(Clone, Debug, Default)]
pub struct IterationStats {
    pub iteration: usize,
    pub global_step: usize,
    pub learning_rate: f64,
    pub mean_reward: f64,
    pub policy_loss: f64,
    pub value_loss: f64,
    pub entropy: f64,
    pub old_approx_kl: f64,
    pub approx_kl: f64,
    pub clipfrac: f64,
    pub explained_variance: f64,
    /// Mean return and length of the episodes that ended during this iteration's rollout.
    pub episodic_return: Option<f64>,
    pub episodic_length: Option<f64>,
    /// Environment steps per second of wall time so far.
    pub sps: f64,
}

/// A trained policy (with its observation statistics) and the optimizer's state, which a
/// checkpoint keeps so that training can resume where it stopped.
pub struct Trained {
    pub policy: Policy,
    pub optimizer: OptimizerRecord,
}

/// Trains a policy on `scenario`; `on_iteration` sees every iteration's statistics, the policy,
/// and a way to snapshot the optimizer's state (for periodic checkpoints).
/// `resume`: a checkpoint to continue from; its step count, observation statistics and Adam
/// moments carry on, and training stops at `config.total_steps` in all.
pub fn train(
    scenario: Arc<Scenario>,
    model: &ModelConfig,
    config: &PpoConfig,
    resume: Option<&Path>,
    mut on_iteration: impl FnMut(&IterationStats, &Policy, &dyn Fn() -> OptimizerRecord),
) -> Result<Trained, TrainError> {
    crate::AgentConfig { model: model.clone(), ppo: config.clone() }.validate().map_err(TrainError::Config)?;
    let device = Device::flex().autodiff();
    device.seed(config.seed);
    let inference = Device::flex();
    let s_dim = state_dim(&scenario.config);
    let max_plans = scenario.max_plans;
    let row = max_plans * PLAN_FEATURES;
    let mut optimizer = AdamConfig::new()
        .with_epsilon(1e-5)
        .init();
    let (mut policy, start_step) = match resume {
        Some(dir) => {
            let (policy, sidecar) = checkpoint::load(dir, &device)?;
            if sidecar.state_dim != s_dim {
                return Err(TrainError::Resume(format!(
                    "{} has a state of {} features, this config gives {s_dim}",
                    dir.display(),
                    sidecar.state_dim
                )));
            }
            if sidecar.step >= config.total_steps {
                return Err(TrainError::Resume(format!(
                    "{} is already at step {}, at or past total_steps = {}",
                    dir.display(),
                    sidecar.step,
                    config.total_steps
                )));
            }
            if let Some(record) = checkpoint::load_optimizer(dir)? {
                optimizer = optimizer.load_record(record);
            }
            (policy, sidecar.step)
        }
        None => (Policy::new(model, s_dim, &device), 0),
    };
    // the veto's mask is part of the rollout, so the update's masked softmax is the one sampled
    let veto = scenario.config.consensus.clone();
    let mut envs = VecEnv::new(scenario, config.num_envs, config.seed)?;
    let mut rng = SmallRng::seed_from_u64(config.seed);
    let (n, t_max) = (config.num_envs, config.num_steps);
    let batch = config.batch_size();
    let mut global_step = start_step;
    let mut results = Vec::with_capacity(n);
    let mut running_return = vec![0.0; n];
    let mut running_length = vec![0usize; n];
    let started = std::time::Instant::now();
    let iterations = (config.total_steps - start_step) / batch.max(1);
    let done_before = start_step / batch.max(1);
    for iteration in (done_before + 1)..=(done_before + iterations.max(1)) {
        let frac = 1.0 - (iteration - 1) as f64 / config.num_iterations().max(iteration) as f64;
        let lr = if config.anneal_lr { frac * config.learning_rate } else { config.learning_rate };

        // 1. Rollout with the current policy (no gradients). Observations update the running
        //    statistics, then are stored normalised, exactly as the policy saw them.
        let actor = policy.valid();
        let (mut states, mut plans, mut masks) = (Vec::with_capacity(batch * s_dim), Vec::with_capacity(batch * row), Vec::with_capacity(batch * max_plans));
        let (mut actions, mut logprobs, mut values) = (Vec::with_capacity(batch), Vec::with_capacity(batch), Vec::with_capacity(batch));
        let (mut rewards, mut dones) = (Vec::with_capacity(batch), Vec::with_capacity(batch));
        let mut finished: Vec<(f64, usize)> = Vec::new();
        for _ in 0..t_max {
            let observations: Vec<_> = envs.envs.iter().map(|e| e.observation()).collect();
            policy.normalizer.update(&observations);
            let (s0, p0, m0) = (states.len(), plans.len(), masks.len());
            for obs in &observations {
                let m = masks.len();
                policy.normalizer.append(obs, &mut states, &mut plans, &mut masks);
                if veto.in_training {
                    crate::policy::mask_vetoed(obs, &veto, &mut masks[m..]);
                }
            }
            let step_batch = ObsBatch::from_flat(states[s0..].to_vec(), plans[p0..].to_vec(), masks[m0..].to_vec(), n, s_dim, max_plans, &inference);
            let (logits, value) = actor.forward(&step_batch);
            let scores: Vec<f32> = logits.clone().into_data().try_to_vec().expect("f32 logits");
            let runaway = scores.iter().zip(&masks[m0..]).any(|(s, &valid)| valid && s.abs() >= RUNAWAY_SCORE);
            if runaway {
                return Err(TrainError::Diverged { step: global_step, what: "the plan scores (they ran away from zero)" });
            }
            let probs: Vec<f32> = softmax(logits, 1).into_data().try_to_vec().expect("f32 probabilities");
            let value: Vec<f32> = value.into_data().try_to_vec().expect("f32 values");
            if !probs.iter().chain(&value).all(|x| x.is_finite()) {
                return Err(TrainError::Diverged { step: global_step, what: "the policy's logits or values" });
            }
            // Masked plans get a large negative but finite logit; scores that fall below it have
            // run away, and the probability leaks onto plans that may not be chosen.
            let valid_mass = |e: usize| (0..max_plans).filter(|&i| masks[m0 + e * max_plans + i]).map(|i| probs[e * max_plans + i]).sum::<f32>();
            if (0..n).any(|e| valid_mass(e) < 0.999) {
                return Err(TrainError::Diverged { step: global_step, what: "the plan scores (they fell below the mask's logit)" });
            }
            let mut chosen = Vec::with_capacity(n);
            for e in 0..n {
                let p = &probs[e * max_plans..(e + 1) * max_plans];
                let mut u: f32 = rng.random();
                let mut a = p.iter().rposition(|&x| x > 0.0).unwrap_or(0);
                for (i, &pi) in p.iter().enumerate() {
                    if u < pi {
                        a = i;
                        break;
                    }
                    u -= pi;
                }
                chosen.push(a);
                logprobs.push((p[a].max(1e-12) as f64).ln());
                values.push(value[e] as f64);
            }
            envs.step(&chosen, &mut results)?;
            for (e, &(reward, done)) in results.iter().enumerate() {
                rewards.push(reward);
                dones.push(done);
                running_return[e] += reward;
                running_length[e] += 1;
                if done {
                    finished.push((running_return[e], running_length[e]));
                    running_return[e] = 0.0;
                    running_length[e] = 0;
                }
            }
            actions.extend(chosen);
            global_step += n;
        }

        // 2. Advantages (bootstrapped from the value of the observation after the rollout).
        let next: Vec<_> = envs.envs.iter().map(|e| e.observation()).collect();
        let (_, next_value) = actor.forward(&policy.batch(&next, &inference));
        let next_values: Vec<f64> = next_value.into_data().try_to_vec::<f32>().expect("f32").iter().map(|&v| v as f64).collect();
        let (mut advantages, returns) = gae(&rewards, &values, &dones, &next_values, n, config.gamma, config.gae_lambda, config.episode_end());
        if config.norm_adv_per_env {
            normalize_per_env(&mut advantages, n);
        }

        // 3. Optimise the clipped surrogate for a few epochs of minibatches.
        let mut order: Vec<usize> = (0..batch).collect();
        let variance = |v: &mut dyn Iterator<Item = f64>| {
            let xs: Vec<f64> = v.collect();
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64
        };
        let var_returns = variance(&mut returns.iter().copied());
        let var_residual = variance(&mut returns.iter().zip(&values).map(|(r, v)| r - v));
        let episodes = finished.len() as f64;
        let mut stats = IterationStats {
            iteration,
            global_step,
            learning_rate: lr,
            mean_reward: rewards.iter().sum::<f64>() / rewards.len() as f64,
            explained_variance: if var_returns > 0.0 { 1.0 - var_residual / var_returns } else { f64::NAN },
            episodic_return: (episodes > 0.0).then(|| finished.iter().map(|f| f.0).sum::<f64>() / episodes),
            episodic_length: (episodes > 0.0).then(|| finished.iter().map(|f| f.1 as f64).sum::<f64>() / episodes),
            sps: global_step as f64 / started.elapsed().as_secs_f64().max(1e-9),
            ..Default::default()
        };
        let rollout = Rollout { states: &states, plans: &plans, masks: &masks, actions: &actions, logprobs: &logprobs, advantages: &advantages, returns: &returns, state_dim: s_dim, max_plans };
        policy = update(policy, &mut optimizer, &rollout, config, lr, &mut order, &mut rng, &device, &mut stats)?;
        on_iteration(&stats, &policy, &|| optimizer.to_record());
    }
    Ok(Trained { optimizer: optimizer.to_record(), policy: policy.valid() })
}
