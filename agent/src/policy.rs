//! The policy: one shared network scores every candidate plan from `[state ⊕ plan features]`
//! (as Decima scores nodes), a masked softmax over the scores picks one; a value head reads the
//! state with the mean of the valid plans' features. Because it scores plans rather than fixed
//! slots, it works for any number of plans and for workloads it never saw. Observations are
//! normalised with the policy's running statistics before they reach the network.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::tanh;
use burn::tensor::{Bool, Device, IndexingUpdateOp, Int, Tensor, TensorData};
pub use rlsched_env::obs::vetoed;
use rlsched_env::obs::{Obs, MPC_REWARD_FEATURE, PLAN_FEATURES};
use rlsched_env::schedulers::Scheduler;
use rlsched_env::config::ConsensusConfig;
use rlsched_env::Decision;

use crate::inference::{InferenceCache, InferenceError, PlainScorer};
use crate::normalize::ObsNormalizer;
use crate::ModelConfig;

/// Logit given to masked plans: far below any real score, finite so no NaN appears.
const MASKED_LOGIT: f32 = -1e9;
/// A plan score this far from zero has run away (healthy scores are tens at most): it is
/// approaching the masked logit, and the masked softmax stops meaning anything.
pub const RUNAWAY_SCORE: f32 = 1e6;
/// Keeps the relative prior finite where every valid plan has the same predicted reward (one
/// valid plan, say): the prior is then zero.
pub const RELATIVE_PRIOR_EPSILON: f32 = 1e-6;

/// `[agent.model] greedy_prior` and `greedy_prior_relative`: the weight of the normalised mpc
/// reward added to each logit, and whether it is taken relative to the request's own plans.
/// Both decision paths (`Policy::forward`, `PlainScorer`) read this one value.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GreedyPrior {
    pub weight: f32,
    pub relative: bool,
}

impl GreedyPrior {
    pub fn of(config: &ModelConfig) -> Self {
        Self { weight: config.greedy_prior, relative: config.greedy_prior_relative }
    }

    pub fn is_on(self) -> bool {
        self.weight != 0.0
    }
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub hidden1: Linear,
    pub hidden2: Linear,
    pub out: Linear,
}

impl Mlp {
    fn new(d_in: usize, hidden: usize, d_out: usize, device: &Device) -> Self {
        Self {
            hidden1: LinearConfig::new(d_in, hidden).init(device),
            hidden2: LinearConfig::new(hidden, hidden).init(device),
            out: LinearConfig::new(hidden, d_out).init(device),
        }
    }

    fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.out.forward(tanh(self.hidden2.forward(tanh(self.hidden1.forward(x)))))
    }
}

#[derive(Module, Debug)]
pub struct Policy {
    pub scorer: Mlp,
    pub value: Mlp,
    /// Running observation statistics: learned while training, saved in the checkpoint sidecar.
    #[module(skip)]
    pub normalizer: ObsNormalizer,
    /// The scorer and normaliser in plain f32, built on the first decision (`plain`).
    #[module(skip)]
    pub inference: InferenceCache,
    #[module(skip)]
    pub greedy_prior: GreedyPrior,
}

/// A batch of normalised observations as tensors.
pub struct ObsBatch {
    pub state: Tensor<2>,
    pub plans: Tensor<3>,
    pub mask: Tensor<2, Bool>,
    /// The valid plans, as flat indices into `[batch × max_plans]`, and the observation each
    /// belongs to: the scorer runs on these rows only, not on the padding (about half of the
    /// rows with the default mix).
    valid_rows: Tensor<1, Int>,
    valid_owner: Tensor<1, Int>,
    valid_count: usize,
}

impl ObsBatch {
    /// Normalises and stacks observations (all with the same padded plan count).
    pub fn new(observations: &[&Obs], normalizer: &ObsNormalizer, device: &Device) -> Self {
        let n = observations.len();
        let state_dim = observations[0].state.len();
        let max_plans = observations[0].max_plans;
        let mut state = Vec::with_capacity(n * state_dim);
        let mut plans = Vec::with_capacity(n * max_plans * PLAN_FEATURES);
        let mut mask = Vec::with_capacity(n * max_plans);
        for obs in observations {
            normalizer.append(obs, &mut state, &mut plans, &mut mask);
        }
        Self::from_flat(state, plans, mask, n, state_dim, max_plans, device)
    }

    pub fn from_flat(
        state: Vec<f32>,
        plans: Vec<f32>,
        mask: Vec<bool>,
        n: usize,
        state_dim: usize,
        max_plans: usize,
        device: &Device,
    ) -> Self {
        let rows: Vec<i64> = mask.iter().enumerate().filter(|(_, &v)| v).map(|(i, _)| i as i64).collect();
        let owners: Vec<i64> = rows.iter().map(|&i| i / max_plans.max(1) as i64).collect();
        let valid_count = rows.len();
        Self {
            state: Tensor::from_data(TensorData::new(state, [n, state_dim]), device),
            plans: Tensor::from_data(TensorData::new(plans, [n, max_plans, PLAN_FEATURES]), device),
            mask: Tensor::from_data(TensorData::new(mask, [n, max_plans]), device),
            valid_rows: Tensor::from_data(TensorData::new(rows, [valid_count]), device),
            valid_owner: Tensor::from_data(TensorData::new(owners, [valid_count]), device),
            valid_count,
        }
    }
}

impl Policy {
    pub fn new(config: &ModelConfig, state_dim: usize, device: &Device) -> Self {
        Self {
            scorer: Mlp::new(state_dim + PLAN_FEATURES, config.hidden, 1, device),
            value: Mlp::new(state_dim + PLAN_FEATURES, config.hidden, 1, device),
            normalizer: ObsNormalizer::new(state_dim, config.obs_clip),
            inference: InferenceCache::default(),
            greedy_prior: GreedyPrior::of(config),
        }
    }

    /// The scorer for decisions, read out of this policy's weights and statistics the first
    /// time it is asked for. Only for a policy that is no longer trained: the copy is not
    /// refreshed when the weights change (a clone, such as `valid()`, starts afresh).
    pub fn plain(&self) -> Result<&PlainScorer, &InferenceError> {
        self.inference.get_or_init(|| self.checked_plain()).as_ref()
    }

    /// The plain scorer, refused unless it agrees with burn's scorer on a probe batch: it
    /// assumes `Linear` layers with tanh between them, and a scorer built otherwise must keep
    /// deciding through burn rather than decide wrongly.
    fn checked_plain(&self) -> Result<PlainScorer, InferenceError> {
        let plain = PlainScorer::new(&self.scorer, &self.normalizer)?.with_greedy_prior(self.greedy_prior);
        let d_in = plain.mlp().d_in();
        let rows = 8;
        // inputs across the normalised range, different in every row and column
        let probe: Vec<f32> = (0..rows * d_in).map(|i| 3.0 * ((i as f32) * 0.7391).sin()).collect();
        let device = self.scorer.devices().into_iter().next().unwrap_or_else(Device::flex);
        let burn: Vec<f32> = self
            .scorer
            .forward(Tensor::<2>::from_data(TensorData::new(probe.clone(), [rows, d_in]), &device))
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .unwrap_or_default();
        let mut ours = Vec::with_capacity(rows);
        plain.mlp().forward_rows(&probe, &mut ours);
        let agree = burn.len() == ours.len()
            && burn.iter().zip(&ours).all(|(b, o)| (b - o).abs() <= 1e-4 * b.abs().max(o.abs()).max(1.0));
        if !agree {
            return Err(InferenceError::Disagrees { burn, plain: ours });
        }
        Ok(plain)
    }

    /// The name of the first weight or bias that holds a NaN or an infinity, if any: such a
    /// policy (a diverged run, a corrupted file) would score every plan as NaN.
    pub fn first_non_finite_parameter(&self) -> Option<String> {
        let finite = |t: Tensor<2>| t.into_data().iter::<f32>().all(f32::is_finite);
        let finite1 = |t: Tensor<1>| t.into_data().iter::<f32>().all(f32::is_finite);
        for (net, mlp) in [("scorer", &self.scorer), ("value", &self.value)] {
            for (layer, linear) in [("hidden1", &mlp.hidden1), ("hidden2", &mlp.hidden2), ("out", &mlp.out)] {
                if !finite(linear.weight.val()) {
                    return Some(format!("{net}.{layer}.weight"));
                }
                if linear.bias.as_ref().is_some_and(|b| !finite1(b.val())) {
                    return Some(format!("{net}.{layer}.bias"));
                }
            }
        }
        None
    }

    /// `observations` normalised with this policy's statistics, as a batch.
    pub fn batch(&self, observations: &[&Obs], device: &Device) -> ObsBatch {
        ObsBatch::new(observations, &self.normalizer, device)
    }

    /// Masked logits `[batch, plans]` and values `[batch]`.
    pub fn forward(&self, batch: &ObsBatch) -> (Tensor<2>, Tensor<1>) {
        let [n, plans, _] = batch.plans.dims();
        let state = batch.state.clone();
        let device = state.device();
        let mut flat = Tensor::<1>::zeros([n * plans], &device);
        if batch.valid_count > 0 {
            let joint = Tensor::cat(
                vec![
                    state.clone().select(0, batch.valid_owner.clone()),
                    batch.plans.clone().reshape([n * plans, PLAN_FEATURES]).select(0, batch.valid_rows.clone()),
                ],
                1,
            );
            let scores = self.scorer.forward(joint).reshape([batch.valid_count]);
            flat = flat.select_assign(0, batch.valid_rows.clone(), scores, IndexingUpdateOp::Add);
        }
        let mut logits = flat.reshape([n, plans]);
        if self.greedy_prior.is_on() {
            let mut prior = batch.plans.clone().slice([0..n, 0..plans, MPC_REWARD_FEATURE..MPC_REWARD_FEATURE + 1]).reshape([n, plans]);
            if self.greedy_prior.relative {
                let invalid = batch.mask.clone().bool_not();
                let best = prior.clone().mask_fill(invalid.clone(), f32::MIN).max_dim(1);
                let worst = prior.clone().mask_fill(invalid, f32::MAX).min_dim(1);
                prior = (prior - best.clone()) / (best - worst + RELATIVE_PRIOR_EPSILON);
            }
            logits = logits + prior * self.greedy_prior.weight;
        }
        let logits = logits.mask_fill(batch.mask.clone().bool_not(), MASKED_LOGIT);
        let valid = batch.mask.clone().float().reshape([n, plans, 1]);
        let count = valid.clone().sum_dim(1).clamp_min(1.0).reshape([n, 1]);
        let pooled = (batch.plans.clone() * valid).sum_dim(1).reshape([n, PLAN_FEATURES]) / count;
        let value = self.value.forward(Tensor::cat(vec![state, pooled], 1)).reshape([n]);
        (logits, value)
    }
}

/// The learned policy as a scheduler: the valid plan with the highest score.
pub struct PolicyScheduler {
    pub policy: Policy,
    pub device: Device,
}

impl Scheduler for PolicyScheduler {
    fn name(&self) -> String {
        "policy".into()
    }

    fn choose(&mut self, decision: &Decision) -> usize {
        self.choose_counting_vetoes(decision).0
    }
}

/// The valid plan with the highest score (first on ties) that `[env.consensus]` does not veto.
/// The margin never vetoes the plan with the best reward under any one estimate, and the tail's
/// veto only for a local plan it leaves, so one always remains.
pub fn best_allowed(decision: &Decision, scores: &[f32]) -> usize {
    best_allowed_counting_vetoes(decision, scores).0
}

/// [`best_allowed`], and how many valid plans the veto kept the policy off: counted as the veto
/// is checked, so that reporting it (serve's `decision_inputs`) costs no second pass.
pub fn best_allowed_counting_vetoes(decision: &Decision, scores: &[f32]) -> (usize, usize) {
    let veto = &decision.config.consensus;
    let mut vetoes = 0;
    let index = decision.best_valid(|i, _| {
        if vetoed(decision.obs, veto, i) {
            vetoes += 1;
            f64::MIN
        } else {
            scores.get(i).map_or(f64::MIN, |&s| s as f64)
        }
    });
    (index, vetoes)
}

/// Clears `mask` (one entry per plan slot of `obs`) for the plans `[env.consensus]` vetoes:
/// training's rollouts with `in_training` sample only among the rest, as decisions do.
pub fn mask_vetoed(obs: &Obs, veto: &ConsensusConfig, mask: &mut [bool]) {
    // the veto reads `obs.mask`, not this copy, so clearing one plan cannot free another
    for (plan, valid) in mask.iter_mut().enumerate().take(obs.n_plans) {
        *valid = *valid && !vetoed(obs, veto, plan);
    }
}

impl PolicyScheduler {
    /// `choose`, and how many valid plans the veto kept the policy off.
    pub fn choose_counting_vetoes(&mut self, decision: &Decision) -> (usize, usize) {
        // a scorer the plain path cannot read (a layer it does not know) still decides, slowly
        let mut scores = Vec::with_capacity(decision.obs.n_plans);
        match self.policy.plain().map(|p| p.scores(decision.obs, &mut scores)) {
            Ok(Ok(())) => best_allowed_counting_vetoes(decision, &scores),
            _ => best_allowed_counting_vetoes(decision, &self.burn_scores(decision.obs)),
        }
    }

    /// The same choice through burn's forward pass (the training path).
    pub fn choose_burn(&self, decision: &Decision) -> usize {
        best_allowed(decision, &self.burn_scores(decision.obs))
    }

    /// burn's masked logits for one observation, one per padded plan slot.
    pub fn burn_scores(&self, obs: &Obs) -> Vec<f32> {
        let batch = self.policy.batch(&[obs], &self.device);
        let (logits, _) = self.policy.forward(&batch);
        logits.into_data().try_to_vec().unwrap_or_default()
    }
}
