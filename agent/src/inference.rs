//! Decision-time inference in plain f32: the plan scorer's weights and the observation
//! statistics, read out of a burn `Policy` once, then every decision is a few hand-written
//! loops. burn's per-operation overhead (tensor creation, dispatch, select/scatter, readback)
//! costs far more than the arithmetic for one request's ~16 plans; training still uses burn.
//!
//! The layer list is read with a `ModuleVisitor`: every `Linear` inside the scorer, in field
//! order, with tanh between layers and none after the last (as `Mlp::forward`). Nothing here
//! knows the hidden width, the number of layers, or the number of state features.

use std::sync::OnceLock;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use rlsched_env::obs::{Obs, MPC_REWARD_FEATURE, PLAN_FEATURES};

use crate::normalize::{standardize, ObsNormalizer, RunningStats};
use crate::policy::{GreedyPrior, RELATIVE_PRIOR_EPSILON};

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum InferenceError {
    #[error("the scorer has no Linear layers")]
    NoLayers,
    #[error("layer {layer}: {problem}")]
    Layer { layer: usize, problem: String },
    #[error("the scorer takes {scorer} inputs, the normaliser gives {state} state + {plan} plan features")]
    InputWidth { scorer: usize, state: usize, plan: usize },
    #[error("the scorer gives {0} outputs per plan, not one score")]
    OutputWidth(usize),
    #[error("the plain scorer disagrees with burn's on a probe batch (burn {burn:?}, plain {plain:?}): the scorer is not Linear layers with tanh between them")]
    Disagrees { burn: Vec<f32>, plain: Vec<f32> },
    #[error("observation has {got} state features, the policy expects {expected}")]
    StateWidth { got: usize, expected: usize },
}

/// One dense layer, weights `[d_in][d_out]` row-major as burn keeps them: the inner loop runs
/// over contiguous outputs, which the compiler vectorises without a horizontal sum.
#[derive(Clone, Debug)]
struct Dense {
    d_in: usize,
    d_out: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Dense {
    /// `out = x · W + b` for one row.
    fn forward(&self, x: &[f32], out: &mut [f32]) {
        out.copy_from_slice(&self.bias);
        for (&xi, row) in x.iter().zip(self.weight.chunks_exact(self.d_out)) {
            for (o, &w) in out.iter_mut().zip(row) {
                *o += xi * w;
            }
        }
    }
}

/// A stack of dense layers with tanh between them.
#[derive(Clone, Debug)]
pub struct PlainMlp {
    layers: Vec<Dense>,
}

/// Collects every `Linear`'s weight and bias in visiting order (burn visits fields in
/// declaration order). burn announces each field of a struct with `enter_module(field,
/// "Struct:<parent>")`, so a `Linear`'s parameters arrive between `enter_module("weight",
/// "Struct:Linear")` (or `"bias"`) and the matching exit.
#[derive(Default)]
struct LinearCollector {
    /// The `Linear` field being visited, if any.
    field: Option<String>,
    layers: Vec<(Vec<usize>, Vec<f32>, Option<Vec<f32>>)>,
    problem: Option<String>,
}

const LINEAR: &str = "Struct:Linear";

impl ModuleVisitor for LinearCollector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if container_type == LINEAR {
            self.field = Some(name.to_string());
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        if container_type == LINEAR {
            self.field = None;
        }
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let dims = value.dims().to_vec();
        let data: Vec<f32> = value.into_data().convert::<f32>().try_to_vec().unwrap_or_default();
        match (self.field.as_deref(), D) {
            (Some("weight"), 2) => self.layers.push((dims, data, None)),
            (Some("bias"), 1) if self.layers.last().is_some_and(|l| l.2.is_none()) => {
                if let Some(layer) = self.layers.last_mut() {
                    layer.2 = Some(data);
                }
            }
            (field, _) => {
                self.problem.get_or_insert_with(|| match field {
                    Some(field) => format!("an unexpected {D}-d parameter `{field}` in a Linear layer"),
                    None => format!("a {D}-d parameter outside any Linear layer"),
                });
            }
        }
    }
}

impl PlainMlp {
    /// Reads every `Linear` of `module`, in order.
    pub fn from_module<M: Module>(module: &M) -> Result<Self, InferenceError> {
        let mut collector = LinearCollector::default();
        module.visit(&mut collector);
        if let Some(problem) = collector.problem {
            return Err(InferenceError::Layer { layer: collector.layers.len(), problem });
        }
        let mut layers = Vec::with_capacity(collector.layers.len());
        for (i, (dims, weight, bias)) in collector.layers.into_iter().enumerate() {
            let problem = |problem: String| InferenceError::Layer { layer: i, problem };
            let (d_in, d_out) = (dims[0], dims[1]);
            if weight.len() != d_in * d_out {
                return Err(problem(format!("weight of {} values for [{d_in}, {d_out}]", weight.len())));
            }
            let bias = bias.unwrap_or_else(|| vec![0.0; d_out]);
            if bias.len() != d_out {
                return Err(problem(format!("bias of {} values for {d_out} outputs", bias.len())));
            }
            if let Some(prev) = layers.last().map(|l: &Dense| l.d_out).filter(|&p| p != d_in) {
                return Err(problem(format!("takes {d_in} inputs after a layer of {prev} outputs")));
            }
            layers.push(Dense { d_in, d_out, weight, bias });
        }
        if layers.is_empty() {
            return Err(InferenceError::NoLayers);
        }
        Ok(Self { layers })
    }

    /// The input width, then each layer's output width.
    pub fn widths(&self) -> Vec<usize> {
        std::iter::once(self.d_in()).chain(self.layers.iter().map(|l| l.d_out)).collect()
    }

    pub fn d_in(&self) -> usize {
        self.layers[0].d_in
    }

    pub fn d_out(&self) -> usize {
        self.layers.last().map_or(0, |l| l.d_out)
    }

    /// The widest layer: the size of each scratch buffer.
    fn width(&self) -> usize {
        self.layers.iter().map(|l| l.d_out.max(l.d_in)).max().unwrap_or(0)
    }

    /// The network on each row of `rows` (`d_in` wide); the first output of each.
    pub fn forward_rows(&self, rows: &[f32], out: &mut Vec<f32>) {
        self.forward_shared(&[], rows, out);
    }

    /// The network on rows whose first inputs are the same `shared` values for every row
    /// (the state, beside each plan's features): `rows` holds only the rest of each row. The
    /// first layer's product with the shared part is computed once, not once per row.
    pub fn forward_shared(&self, shared: &[f32], rows: &[f32], out: &mut Vec<f32>) {
        out.clear();
        let first = &self.layers[0];
        let rest = first.d_in.saturating_sub(shared.len());
        // each row must carry inputs of its own (chunks of zero would never end)
        if rest == 0 {
            return;
        }
        let mut base = first.bias.clone();
        for (&x, w) in shared.iter().zip(first.weight.chunks_exact(first.d_out)) {
            for (o, &w) in base.iter_mut().zip(w) {
                *o += x * w;
            }
        }
        let tail = &first.weight[shared.len() * first.d_out..];
        let width = self.width();
        let (mut a, mut b) = (vec![0.0f32; width], vec![0.0f32; width]);
        for row in rows.chunks_exact(rest) {
            let h = &mut a[..first.d_out];
            h.copy_from_slice(&base);
            for (&x, w) in row.iter().zip(tail.chunks_exact(first.d_out)) {
                for (o, &w) in h.iter_mut().zip(w) {
                    *o += x * w;
                }
            }
            out.push(self.finish(&mut a, &mut b));
        }
    }

    /// Every layer after the first, on the first layer's pre-activation in `a`; returns the
    /// first output.
    fn finish<'s>(&self, mut a: &'s mut [f32], mut b: &'s mut [f32]) -> f32 {
        let last = self.layers.len() - 1;
        if last > 0 {
            tanh_in_place(&mut a[..self.layers[0].d_out]);
        }
        for (i, layer) in self.layers.iter().enumerate().skip(1) {
            layer.forward(&a[..layer.d_in], &mut b[..layer.d_out]);
            if i < last {
                tanh_in_place(&mut b[..layer.d_out]);
            }
            std::mem::swap(&mut a, &mut b);
        }
        a[0]
    }
}

fn tanh_in_place(values: &mut [f32]) {
    for v in values {
        *v = tanh(*v);
    }
}

/// tanh as a rational function on [-7.9, 7.9] (beyond it tanh is ±1 within f32 rounding):
/// Eigen's `generic_fast_tanh_float` coefficients, accurate to a few ulp. The C library's
/// `tanhf` is a call per element; this is straight-line arithmetic the compiler vectorises,
/// and the hidden layers apply it to every unit of every plan.
#[inline]
fn tanh(x: f32) -> f32 {
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let mut p = x2 * -2.760_768_5e-16 + 2.000_187_9e-13;
    p = x2 * p + -8.604_671_5e-11;
    p = x2 * p + 5.122_297e-8;
    p = x2 * p + 1.485_722_4e-5;
    p = x2 * p + 6.372_619_3e-4;
    p = x2 * p + 4.893_524_6e-3;
    let q = ((x2 * 1.198_258_4e-6 + 1.185_347_1e-4) * x2 + 2.268_434_6e-3) * x2 + 4.893_525e-3;
    x * p / q
}

/// Per-feature shift and scale from running statistics, computed once.
#[derive(Clone, Debug)]
struct Standardize {
    mean: Vec<f64>,
    /// None: the feature is held at its mean.
    scale: Vec<Option<f64>>,
}

impl Standardize {
    fn new(stats: &RunningStats) -> Self {
        Self { mean: stats.mean.clone(), scale: stats.scales() }
    }

    /// `RunningStats::normalize`'s arithmetic, so features match bit for bit.
    fn apply(&self, row: &[f32], clip: f32, out: &mut [f32]) {
        for (((o, &x), &m), &s) in out.iter_mut().zip(row).zip(&self.mean).zip(&self.scale) {
            *o = standardize(x, m, s, clip);
        }
    }
}

/// The plan scorer and its normaliser, in plain f32.
#[derive(Clone, Debug)]
pub struct PlainScorer {
    mlp: PlainMlp,
    state: Standardize,
    plan: Standardize,
    clip: f32,
    /// The policy's greedy prior (off: weight 0).
    greedy_prior: GreedyPrior,
}

impl PlainScorer {
    /// Reads `scorer` (any stack of `Linear` layers) and the statistics it was trained with.
    pub fn new<M: Module>(scorer: &M, normalizer: &ObsNormalizer) -> Result<Self, InferenceError> {
        let mlp = PlainMlp::from_module(scorer)?;
        let (state, plan) = (normalizer.state.mean.len(), normalizer.plan.mean.len());
        if mlp.d_in() != state + plan || plan != PLAN_FEATURES {
            return Err(InferenceError::InputWidth { scorer: mlp.d_in(), state, plan });
        }
        if mlp.d_out() != 1 {
            return Err(InferenceError::OutputWidth(mlp.d_out()));
        }
        Ok(Self {
            mlp,
            state: Standardize::new(&normalizer.state),
            plan: Standardize::new(&normalizer.plan),
            clip: normalizer.clip,
            greedy_prior: GreedyPrior::default(),
        })
    }

    /// Adds the prior's weight × each plan's normalised mpc reward (relative to the request's
    /// best and worst valid plans where it says so) to its score, as `Policy::forward` does.
    pub fn with_greedy_prior(mut self, prior: GreedyPrior) -> Self {
        self.greedy_prior = prior;
        self
    }

    pub fn mlp(&self) -> &PlainMlp {
        &self.mlp
    }

    /// One score per plan row of `obs` (`n_plans` of them); masked plans score `-inf`.
    pub fn scores(&self, obs: &Obs, out: &mut Vec<f32>) -> Result<(), InferenceError> {
        let (state, plans) = self.normalized(obs)?;
        let mut valid_scores = Vec::with_capacity(obs.n_plans);
        self.mlp.forward_shared(&state, &plans, &mut valid_scores);
        if self.greedy_prior.is_on() {
            let prior = plans.chunks_exact(PLAN_FEATURES).map(|row| row[MPC_REWARD_FEATURE]);
            let (best, worst) = prior.clone().fold((f32::MIN, f32::MAX), |(b, w), z| (b.max(z), w.min(z)));
            for (score, z) in valid_scores.iter_mut().zip(prior) {
                let z = if self.greedy_prior.relative { (z - best) / (best - worst + RELATIVE_PRIOR_EPSILON) } else { z };
                *score += self.greedy_prior.weight * z;
            }
        }
        let mut next = valid_scores.into_iter();
        out.clear();
        out.extend(obs.mask.iter().take(obs.n_plans).map(|&valid| if valid { next.next().unwrap_or(f32::NAN) } else { f32::NEG_INFINITY }));
        Ok(())
    }

    /// `obs` normalised: the state, and the valid plans' rows one after another.
    pub fn normalized(&self, obs: &Obs) -> Result<(Vec<f32>, Vec<f32>), InferenceError> {
        let state_dim = self.state.mean.len();
        if obs.state.len() != state_dim {
            return Err(InferenceError::StateWidth { got: obs.state.len(), expected: state_dim });
        }
        let mut state = vec![0.0f32; state_dim];
        self.state.apply(&obs.state, self.clip, &mut state);
        let mut plans = vec![0.0f32; obs.n_plans * PLAN_FEATURES];
        let mut valid = 0;
        for (row, &is_valid) in obs.plans.chunks_exact(PLAN_FEATURES).zip(&obs.mask).take(obs.n_plans) {
            if is_valid {
                self.plan.apply(row, self.clip, &mut plans[valid * PLAN_FEATURES..(valid + 1) * PLAN_FEATURES]);
                valid += 1;
            }
        }
        plans.truncate(valid * PLAN_FEATURES);
        Ok((state, plans))
    }
}

/// The chain scenario asks the same scorer about its plans, shown in this observation's terms.
impl rlsched_env::chain::PlanScorer for PlainScorer {
    fn scores(&self, obs: &Obs, out: &mut Vec<f32>) -> Result<(), String> {
        PlainScorer::scores(self, obs, out).map_err(|e| e.to_string())
    }
}

/// A `PlainScorer` built on first use. A clone starts empty: the clone may be trained
/// further (optimiser steps build new weights), so it must read its own weights again.
#[derive(Default)]
pub struct InferenceCache(OnceLock<Result<PlainScorer, InferenceError>>);

impl InferenceCache {
    pub fn get_or_init(&self, init: impl FnOnce() -> Result<PlainScorer, InferenceError>) -> &Result<PlainScorer, InferenceError> {
        self.0.get_or_init(init)
    }
}

impl Clone for InferenceCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for InferenceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "InferenceCache(built)" } else { "InferenceCache(empty)" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rational_tanh_matches_the_library_tanh() {
        let mut worst = 0.0f32;
        for i in -20_000..=20_000 {
            let x = i as f32 * 1e-3;
            worst = worst.max((tanh(x) - x.tanh()).abs());
        }
        assert!(worst < 1e-6, "largest error {worst}");
        assert!((tanh(1e30) - 1.0).abs() < 1e-6 && (tanh(-1e30) + 1.0).abs() < 1e-6);
    }
}
