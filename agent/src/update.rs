//! The PPO update, shared by offline training (`ppo::train`) and online learning while serving
//! (`online`): a few epochs of shuffled minibatches of a stored rollout, each a clipped
//! surrogate + value loss − entropy bonus step with advantage normalisation and global
//! gradient-norm clipping (Adam). Statistics accumulate into the iteration's record.

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rlsched_env::obs::PLAN_FEATURES;

use crate::policy::{ObsBatch, Policy};
use crate::ppo::{IterationStats, TrainError};
use crate::PpoConfig;

/// A stored rollout: observations normalised as the policy saw them, the actions taken with
/// their log-probabilities, and the advantages and returns computed from it.
pub struct Rollout<'a> {
    pub states: &'a [f32],
    pub plans: &'a [f32],
    pub masks: &'a [bool],
    pub actions: &'a [usize],
    pub logprobs: &'a [f64],
    pub advantages: &'a [f64],
    pub returns: &'a [f64],
    pub state_dim: usize,
    pub max_plans: usize,
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_data().try_to_vec::<f32>().map(|v| v[0] as f64).unwrap_or(f64::NAN)
}

/// Optimises `policy` (on an autodiff `device`) on `rollout`; `order` holds the rollout's
/// indices (shuffled in place). The loss statistics are averaged into `stats`.
#[allow(clippy::too_many_arguments)]
pub fn update(
    mut policy: Policy,
    optimizer: &mut ModuleOptimizer,
    rollout: &Rollout,
    config: &PpoConfig,
    lr: f64,
    order: &mut [usize],
    rng: &mut SmallRng,
    device: &Device,
    stats: &mut IterationStats,
) -> Result<Policy, TrainError> {
    let (s_dim, max_plans) = (rollout.state_dim, rollout.max_plans);
    let row = max_plans * PLAN_FEATURES;
    let Rollout { states, plans, masks, actions, logprobs, advantages, returns, .. } = *rollout;
    let global_step = stats.global_step;
    let mut updates = 0.0;
    for _ in 0..config.update_epochs {
        order.shuffle(rng);
        for chunk in order.chunks(config.minibatch_size().max(1)) {
            let m = chunk.len();
            let gather = |src: &[f32], width: usize| chunk.iter().flat_map(|&i| src[i * width..(i + 1) * width].iter().copied()).collect::<Vec<f32>>();
            let mask: Vec<bool> = chunk.iter().flat_map(|&i| masks[i * max_plans..(i + 1) * max_plans].iter().copied()).collect();
            let obs = ObsBatch::from_flat(gather(states, s_dim), gather(plans, row), mask, m, s_dim, max_plans, device);
            let mut adv: Vec<f32> = chunk.iter().map(|&i| advantages[i] as f32).collect();
            if config.norm_adv && m > 1 {
                let mean = adv.iter().sum::<f32>() / m as f32;
                let std = (adv.iter().map(|a| (a - mean).powi(2)).sum::<f32>() / (m - 1) as f32).sqrt();
                adv.iter_mut().for_each(|a| *a = (*a - mean) / (std + 1e-8));
            }
            let vector = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [m]), device);
            let adv = vector(adv);
            let old_logp = vector(chunk.iter().map(|&i| logprobs[i] as f32).collect());
            let ret = vector(chunk.iter().map(|&i| returns[i] as f32).collect());
            let act = Tensor::<2, Int>::from_data(TensorData::new(chunk.iter().map(|&i| actions[i] as i64).collect::<Vec<_>>(), [m, 1]), device);

            let (logits, value) = policy.forward(&obs);
            let logp_all = log_softmax(logits, 1);
            let entropy = -(logp_all.clone().exp() * logp_all.clone()).sum_dim(1).reshape([m]).mean();
            let new_logp = logp_all.gather(1, act).reshape([m]);
            let log_ratio = new_logp - old_logp;
            let ratio = log_ratio.clone().exp();
            let c = config.clip_coef as f32;
            let pg1 = -adv.clone() * ratio.clone();
            let pg2 = -adv * ratio.clone().clamp(1.0 - c, 1.0 + c);
            let policy_loss = pg1.max_pair(pg2).mean();
            let value_loss = (value - ret).powf_scalar(2.0).mean() * 0.5;
            let loss = policy_loss.clone() - entropy.clone() * config.ent_coef as f32 + value_loss.clone() * config.vf_coef as f32;

            // diagnostics, from the same forward pass
            let old_approx_kl = scalar((-log_ratio.clone()).mean().detach());
            let approx_kl = scalar(((ratio.clone() - 1.0) - log_ratio).mean().detach());
            let clipped = scalar((ratio - 1.0).abs().greater_elem(c).float().mean().detach());
            if !scalar(loss.clone().detach()).is_finite() {
                return Err(TrainError::Diverged { step: global_step, what: "the PPO loss" });
            }
            stats.policy_loss += scalar(policy_loss.detach());
            stats.value_loss += scalar(value_loss.detach());
            stats.entropy += scalar(entropy.detach());
            stats.approx_kl += approx_kl;
            stats.old_approx_kl += old_approx_kl;
            stats.clipfrac += clipped;
            updates += 1.0;

            let mut grads = GradientsParams::from_grads(loss.backward(), &policy);
            crate::clip::clip_global_norm(&policy, &mut grads, config.max_grad_norm as f64);
            policy = optimizer.step(lr, policy, grads);
        }
    }
    for v in [&mut stats.policy_loss, &mut stats.value_loss, &mut stats.entropy, &mut stats.approx_kl, &mut stats.old_approx_kl, &mut stats.clipfrac] {
        *v /= updates;
    }
    Ok(policy)
}
