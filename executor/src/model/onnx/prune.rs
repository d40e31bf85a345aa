//! Structured channel pruning of an imported graph: a convolution loses its weakest filters
//! (smallest L1 norm, as Li et al., ICLR 2017, rank them; no fine-tuning), and everything that
//! carries those channels to the next convolution loses them too, so the pruned model is really
//! narrower on any backend: fewer weights, fewer FLOPs, smaller tensors at the cuts inside it.
//!
//! Only a channel path that nothing else sees may narrow: a group-1 convolution whose output
//! reaches exactly one group-1 convolution through per-channel ops alone (the folded batch
//! norm, activations, pooling, `x ∘ c` with a per-channel or channel-free constant), every value
//! on the way read once and none of them the graph output. A residual sum, a concat, a
//! reshape, a dense layer or a grouped convolution would need the width it was built for, so a
//! path that reaches one is left alone; so is any constant another op also reads.
//!
//! The ranking is computed on the host from the file's weights with a fixed order (ties go to
//! the lower index), so a device and a worker that hold the same file prune the same channels.

use super::ops::{HostTensor, OpKind, Operand, ValueId};
use super::{cuts, OnnxModel};
use crate::model::prune::{kept_count, strongest};

/// The fractions of each prunable convolution's filters an imported model's pruned variants
/// remove (`pruned-0.25`, `pruned-0.5`).
pub const PRUNE_RATIOS: [f32; 2] = [0.25, 0.5];

/// A convolution whose filters may be removed, and what narrows with them.
#[derive(Clone, Debug, PartialEq)]
pub struct PrunableConv {
    /// Op index of the convolution whose output channels go.
    pub producer: usize,
    /// Op indices of the per-channel ops between, in order.
    pub between: Vec<usize>,
    /// Op index of the convolution whose input channels go.
    pub consumer: usize,
    pub channels: usize,
}

/// One prunable convolution as a pruned variant cut it: the channels it kept, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct PrunedConv {
    pub conv: PrunableConv,
    pub kept: Vec<usize>,
}

/// How a constant of a per-channel op lines up with the channel axis of a rank-`rank` value.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ChannelConst {
    /// The same for every channel (it does not reach the channel axis, or is 1 there): kept whole.
    Shared,
    /// One entry per channel along this axis of the constant: sliced with the channels.
    PerChannel(usize),
}

fn channel_const(c: &HostTensor, rank: usize, channels: usize) -> Option<ChannelConst> {
    if c.dims.len() > rank || c.dims.iter().product::<usize>() != c.values.len() {
        return None;
    }
    // numpy broadcasting aligns from the right: the constant's axis under the value's axis 1
    let offset = rank - c.dims.len();
    if offset > 1 {
        return Some(ChannelConst::Shared);
    }
    match c.dims[1 - offset] {
        1 => Some(ChannelConst::Shared),
        d if d == channels => Some(ChannelConst::PerChannel(1 - offset)),
        _ => None,
    }
}

/// How many times each constant is referenced by the ops (weights, batch norm terms, operands):
/// a constant read twice cannot be sliced for one of its readers.
fn const_uses(model: &OnnxModel) -> Vec<usize> {
    let mut uses = vec![0usize; model.consts.len()];
    let mut count = |c: usize| {
        if let Some(u) = uses.get_mut(c) {
            *u += 1;
        }
    };
    for c in model.ops.iter().flat_map(|op| op.consts_read()) {
        count(c);
    }
    uses
}

/// The ops reading each value, once per operand slot (an op reading a value twice is listed twice).
fn readers(model: &OnnxModel) -> Vec<Vec<usize>> {
    let mut readers = vec![Vec::new(); model.values.len()];
    for (i, op) in model.ops.iter().enumerate() {
        for input in &op.inputs {
            if let Operand::Value(v) = input {
                if let Some(r) = readers.get_mut(*v) {
                    r.push(i);
                }
            }
        }
    }
    readers
}

/// A dense convolution's weight, whole and used by this op alone.
fn own_weight<'m>(model: &'m OnnxModel, c: usize, uses: &[usize]) -> Option<&'m HostTensor> {
    let w = model.consts.get(c)?;
    let consistent = w.dims.len() == 4 && w.dims.iter().product::<usize>() == w.values.len() && !w.values.is_empty();
    (consistent && uses.get(c) == Some(&1)).then_some(w)
}

/// Every prunable convolution of the graph, in op order. Anything unexpected (an index out of
/// range, a shape that does not line up) makes that convolution not prunable; it never panics.
pub fn prunable_convs(model: &OnnxModel) -> Vec<PrunableConv> {
    let uses = const_uses(model);
    let readers = readers(model);
    (0..model.ops.len()).filter_map(|i| path_from(model, i, &uses, &readers)).collect()
}

fn path_from(model: &OnnxModel, producer: usize, uses: &[usize], readers: &[Vec<usize>]) -> Option<PrunableConv> {
    let op = &model.ops[producer];
    let OpKind::Conv { weight, bias, groups: 1, .. } = op.kind else { return None };
    let channels = own_weight(model, weight, uses)?.dims[0];
    if channels < 2 || bias.is_some_and(|b| uses.get(b) != Some(&1) || model.consts.get(b).is_none_or(|b| b.values.len() != channels)) {
        return None;
    }
    let carries = |v: ValueId| model.values.get(v).is_some_and(|info| info.dims.len() == 4 && info.dims[1] == channels);
    let mut value = op.output;
    let mut between = Vec::new();
    // each step moves to a later op, so the walk ends within the op count
    for _ in 0..model.ops.len() {
        if value == model.output || !carries(value) {
            return None;
        }
        let [next] = readers.get(value)?.as_slice() else { return None };
        let next_op = model.ops.get(*next)?;
        let runtime_inputs = next_op.inputs.iter().filter(|i| matches!(i, Operand::Value(_))).count();
        if runtime_inputs != 1 {
            return None;
        }
        let per_channel_const = |c: usize| match model.consts.get(c).and_then(|t| channel_const(t, 4, channels)) {
            Some(ChannelConst::Shared) => true,
            Some(ChannelConst::PerChannel(_)) => uses.get(c) == Some(&1),
            None => false,
        };
        let passes = match next_op.kind {
            OpKind::Conv { weight, groups: 1, .. } => {
                let w = own_weight(model, weight, uses)?;
                return (w.dims[1] == channels).then(|| PrunableConv { producer, between, consumer: *next, channels });
            }
            OpKind::Affine { scale, shift } => per_channel_const(scale) && per_channel_const(shift),
            OpKind::Relu
            | OpKind::Clip { .. }
            | OpKind::Sigmoid
            | OpKind::HardSigmoid { .. }
            | OpKind::HardSwish
            | OpKind::Identity
            | OpKind::MaxPool(_)
            | OpKind::AveragePool { .. }
            | OpKind::GlobalAveragePool => true,
            // `x ∘ c` with a constant that broadcasts over the channels or holds one per channel;
            // the output must be x's shape (a constant that widened it would not be per-channel)
            OpKind::Add | OpKind::Sub | OpKind::Mul | OpKind::Div => {
                next_op.inputs.len() == 2
                    && next_op.inputs.iter().all(|i| match i {
                        Operand::Value(_) => true,
                        Operand::Const(c) => per_channel_const(*c),
                    })
                    && model.values.get(next_op.output).map(|o| &o.dims) == model.values.get(value).map(|v| &v.dims)
            }
            _ => false,
        };
        if !passes {
            return None;
        }
        between.push(*next);
        value = next_op.output;
    }
    None
}

/// The `keep` filters of `weight` (`[out, ...]`) with the largest L1 norm, in index order; equal
/// norms go to the lower index, so the choice is the same wherever the file is.
pub fn strongest_filters(weight: &HostTensor, keep: usize) -> Vec<usize> {
    let out = weight.dims.first().copied().unwrap_or(0);
    if out == 0 || weight.values.len() % out != 0 {
        return Vec::new();
    }
    let norms: Vec<f64> = weight.values.chunks(weight.values.len() / out).map(|f| f.iter().map(|v| v.abs() as f64).sum()).collect();
    strongest(&norms, keep)
}

/// `t` keeping only the entries `kept` (in range, checked by the caller) along `axis`.
fn slice_axis(t: &HostTensor, axis: usize, kept: &[usize]) -> HostTensor {
    let outer: usize = t.dims[..axis].iter().product();
    let size = t.dims[axis];
    let inner: usize = t.dims[axis + 1..].iter().product();
    let mut values = Vec::with_capacity(outer * kept.len() * inner);
    for o in 0..outer {
        for &k in kept {
            let start = (o * size + k) * inner;
            values.extend_from_slice(&t.values[start..start + inner]);
        }
    }
    let mut dims = t.dims.clone();
    dims[axis] = kept.len();
    HostTensor { dims, values }
}

/// `flops` of an op whose work is linear in a channel count that went from `from` to `to`
/// (convolutions in their output or input channels, per-channel ops in theirs): exact, since
/// `from` divides every such count.
fn scaled(flops: u64, from: usize, to: usize) -> u64 {
    (flops as u128 * to as u128 / from.max(1) as u128) as u64
}

/// The model with the fraction `removed` of every prunable convolution's filters taken out,
/// and what was kept. Shapes, FLOPs and cut boundaries are those of the narrower graph; the
/// name, path and content hash stay the file's. With no prunable convolution the plan is
/// empty and the model is the original's (less the constants nothing runs).
pub fn prune(model: &OnnxModel, removed: f32) -> (OnnxModel, Vec<PrunedConv>) {
    let plan: Vec<PrunedConv> = prunable_convs(model)
        .into_iter()
        .filter_map(|conv| match model.ops[conv.producer].kind {
            OpKind::Conv { weight, .. } => {
                let kept = strongest_filters(&model.consts[weight], kept_count(conv.channels, removed));
                Some(PrunedConv { conv, kept })
            }
            _ => None,
        })
        .collect();
    // constants only the import read (a Gemm's B before transposing, raw batch norm statistics,
    // shapes) are dropped: a pruned copy of VGG-19 would otherwise hold its 400 MB fc6 twice more
    let used = model.used_consts();
    let mut consts: Vec<HostTensor> = model
        .consts
        .iter()
        .zip(&used)
        .map(|(c, &used)| if used { c.clone() } else { HostTensor { dims: vec![0], values: Vec::new() } })
        .collect();
    let mut ops = model.ops.clone();
    let mut values = model.values.clone();
    for pruned in &plan {
        let PrunedConv { conv, kept } = pruned;
        let (from, to) = (conv.channels, kept.len());
        if let OpKind::Conv { weight, bias, .. } = ops[conv.producer].kind {
            consts[weight] = slice_axis(&consts[weight], 0, kept);
            if let Some(b) = bias {
                // a bias holds one value per channel whatever its dims (checked at import)
                let flat = HostTensor { dims: vec![from], values: std::mem::take(&mut consts[b].values) };
                let dims = consts[b].dims.iter().map(|&d| if d == from { to } else { d }).collect();
                consts[b] = HostTensor { dims, values: slice_axis(&flat, 0, kept).values };
            }
        }
        ops[conv.producer].flops = scaled(ops[conv.producer].flops, from, to);
        values[ops[conv.producer].output].dims[1] = to;
        for &i in &conv.between {
            let mut sliced: Vec<usize> = match ops[i].kind {
                OpKind::Affine { scale, shift } => vec![scale, shift],
                _ => Vec::new(),
            };
            sliced.extend(ops[i].inputs.iter().filter_map(|input| match input {
                Operand::Const(c) => Some(*c),
                Operand::Value(_) => None,
            }));
            for c in sliced {
                if let Some(ChannelConst::PerChannel(axis)) = channel_const(&consts[c], 4, from) {
                    consts[c] = slice_axis(&consts[c], axis, kept);
                }
            }
            ops[i].flops = scaled(ops[i].flops, from, to);
            values[ops[i].output].dims[1] = to;
        }
        if let OpKind::Conv { weight, .. } = ops[conv.consumer].kind {
            consts[weight] = slice_axis(&consts[weight], 1, kept);
        }
        ops[conv.consumer].flops = scaled(ops[conv.consumer].flops, from, to);
    }
    let boundaries = cuts::boundaries(&ops, &values, model.input, model.output);
    let narrowed = OnnxModel { ops, values, consts, boundaries, ..model.header() };
    (narrowed, plan)
}
