//! Stage boundaries of an imported graph. Ops are kept in the file's topological order; a
//! boundary before op `k` is valid when the values produced before `k` and read at or after it
//! (the live set) can be sent: those are what the next stage needs, so no residual or concat
//! block is split the wrong way. Offered: every boundary one tensor crosses, and a boundary two
//! or three tensors cross when a size Pareto test keeps it (its bytes, all its tensors counted,
//! are fewer than those of the nearest one-tensor boundaries on both sides, and fewest among the
//! several-tensor boundaries between them). Boundaries that only move a cut across an
//! elementwise or shape-only op are dropped (same bytes, no compute moved), and at most
//! [`MAX_STAGES`] stages are kept, spread evenly over the FLOPs.

use std::collections::BTreeSet;

use burn::tensor::Tensor;

use super::ops::{pad_dims, OpKind, OpNode, Operand, ValueId, MAX_RANK};
use super::ValueInfo;
use crate::Activation;

/// The most stages an imported model is cut into.
pub const MAX_STAGES: usize = 24;
/// The most tensors a boundary may carry.
pub const MAX_CROSSING: usize = 3;

/// A stage boundary: before op `position`, carrying `values`.
#[derive(Clone, Debug, PartialEq)]
pub struct Boundary {
    pub position: usize,
    pub values: Vec<ValueId>,
    /// Bytes on the wire for the import batch (FP32).
    pub bytes: usize,
}

fn per_sample(info: &ValueInfo) -> usize {
    let total: usize = info.dims.iter().product();
    if info.batched { total / info.dims[0].max(1) } else { total }
}

impl Boundary {
    /// Whether the tensors go as they are (one of rank 2 to 4) or packed into one `[N, sum]`.
    fn natural(&self, values: &[ValueInfo]) -> bool {
        self.values.len() == 1 && (2..=4).contains(&values[self.values[0]].dims.len())
    }

    /// The activation's shape for the import batch.
    pub fn activation_dims(&self, values: &[ValueInfo]) -> Vec<usize> {
        if self.natural(values) {
            return values[self.values[0]].dims.clone();
        }
        let batch = values[self.values[0]].dims[0];
        vec![batch, self.values.iter().map(|&v| per_sample(&values[v])).sum()]
    }

    pub fn names(&self, values: &[ValueInfo]) -> Vec<String> {
        self.values.iter().map(|&v| values[v].name.clone()).collect()
    }

    pub(super) fn unpack(&self, x: Activation, dims_of: &dyn Fn(ValueId) -> Vec<usize>) -> Vec<(ValueId, Tensor<MAX_RANK>)> {
        let flat = |x: Activation| -> Tensor<2> {
            match x {
                Activation::Features(t) => t,
                Activation::Sequence(t) => {
                    let [n, a, b] = t.dims();
                    t.reshape([n, a * b])
                }
                Activation::Image(t) => {
                    let [n, a, b, c] = t.dims();
                    t.reshape([n, a * b * c])
                }
                Activation::Tokens(t) => t.float(),
            }
        };
        let flat = flat(x);
        let mut offset = 0;
        self.values
            .iter()
            .map(|&v| {
                let dims = dims_of(v);
                let [n, _] = flat.dims();
                let width = dims.iter().product::<usize>() / n.max(1);
                let part = flat.clone().narrow(1, offset, width);
                offset += width;
                (v, part.reshape(pad_dims(&dims)))
            })
            .collect()
    }

    pub(super) fn pack(
        &self,
        live: &std::collections::HashMap<ValueId, Tensor<MAX_RANK>>,
        dims_of: &dyn Fn(ValueId) -> Vec<usize>,
    ) -> Activation {
        let tensor = |v: ValueId| live.get(&v).cloned().expect("a boundary's values are computed before it");
        if self.values.len() == 1 {
            let dims = dims_of(self.values[0]);
            let t = tensor(self.values[0]);
            match dims.as_slice() {
                [a, b] => return Activation::Features(t.reshape([*a, *b])),
                [a, b, c] => return Activation::Sequence(t.reshape([*a, *b, *c])),
                [a, b, c, d] => return Activation::Image(t.reshape([*a, *b, *c, *d])),
                _ => {}
            }
        }
        let parts: Vec<Tensor<2>> = self
            .values
            .iter()
            .map(|&v| {
                let dims = dims_of(v);
                let n = dims[0];
                tensor(v).reshape([n, dims.iter().product::<usize>() / n.max(1)])
            })
            .collect();
        Activation::Features(Tensor::cat(parts, 1))
    }
}

/// Ops that neither compute much nor change bytes: a cut right before one is the same cut as
/// right after it.
fn passes_through(op: &OpNode) -> bool {
    let unary = op.inputs.iter().filter(|i| matches!(i, Operand::Value(_))).count() == 1;
    unary
        && matches!(
            op.kind,
            OpKind::Relu
                | OpKind::Clip { .. }
                | OpKind::Sigmoid
                | OpKind::HardSigmoid { .. }
                | OpKind::HardSwish
                | OpKind::Affine { .. }
                | OpKind::Identity
                | OpKind::Reshape
                | OpKind::Flatten { .. }
                | OpKind::Transpose { .. }
                | OpKind::Add
                | OpKind::Mul
                | OpKind::Sub
                | OpKind::Div
        )
}

/// Every valid boundary, in order, before thinning (the graph input and output included).
pub fn candidates(ops: &[OpNode], values: &[ValueInfo], input: ValueId, output: ValueId) -> Vec<Boundary> {
    let n = ops.len();
    let mut last_use = vec![0usize; values.len()];
    for (i, op) in ops.iter().enumerate() {
        for operand in &op.inputs {
            if let Operand::Value(v) = operand {
                last_use[*v] = last_use[*v].max(i);
            }
        }
    }
    last_use[output] = usize::MAX;
    let bytes = |set: &BTreeSet<ValueId>| set.iter().map(|&v| per_sample(&values[v]) * 4).sum::<usize>();
    let mut live: BTreeSet<ValueId> = BTreeSet::from([input]);
    let mut found = vec![Boundary { position: 0, values: vec![input], bytes: bytes(&live) }];
    for k in 1..=n {
        let produced = ops[k - 1].output;
        live.insert(produced);
        live.retain(|&v| last_use[v] >= k);
        if k == n {
            break;
        }
        let sendable = (1..=MAX_CROSSING).contains(&live.len()) && (live.len() == 1 || live.iter().all(|&v| values[v].batched));
        if sendable && !(live.len() == 1 && passes_through(&ops[k])) {
            found.push(Boundary { position: k, values: live.iter().copied().collect(), bytes: bytes(&live) });
        }
    }
    found.push(Boundary { position: n, values: vec![output], bytes: per_sample(&values[output]) * 4 });
    found
}

/// The offered boundaries: one-tensor ones, Pareto-kept several-tensor ones, thinned to
/// [`MAX_STAGES`] stages.
pub fn boundaries(ops: &[OpNode], values: &[ValueInfo], input: ValueId, output: ValueId) -> Vec<Boundary> {
    let all = candidates(ops, values, input, output);
    let singles: Vec<usize> = (0..all.len()).filter(|&i| all[i].values.len() == 1).collect();
    let mut kept: Vec<Boundary> = Vec::new();
    for pair in singles.windows(2) {
        let (before, after) = (pair[0], pair[1]);
        kept.push(all[before].clone());
        let limit = all[before].bytes.min(all[after].bytes);
        if let Some(best) = (before + 1..after).filter(|&i| all[i].bytes < limit).min_by_key(|&i| all[i].bytes) {
            kept.push(all[best].clone());
        }
    }
    kept.push(all[*singles.last().expect("the output boundary is one tensor")].clone());
    thin(kept, ops)
}

/// Keeps the first and last boundaries and, in between, the ones nearest evenly spaced shares
/// of the FLOPs, at most [`MAX_STAGES`] stages in all.
fn thin(kept: Vec<Boundary>, ops: &[OpNode]) -> Vec<Boundary> {
    if kept.len() <= MAX_STAGES + 1 {
        return kept;
    }
    let mut prefix = vec![0u64; ops.len() + 1];
    for (i, op) in ops.iter().enumerate() {
        prefix[i + 1] = prefix[i] + op.flops;
    }
    let total = prefix[ops.len()].max(1);
    let last = kept.len() - 1;
    let mut chosen = BTreeSet::from([0, last]);
    for j in 1..MAX_STAGES {
        let target = total * j as u64 / MAX_STAGES as u64;
        let nearest = (1..last).min_by_key(|&i| prefix[kept[i].position].abs_diff(target));
        if let Some(i) = nearest {
            chosen.insert(i);
        }
    }
    chosen.into_iter().map(|i| kept[i].clone()).collect()
}
