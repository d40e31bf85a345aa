//! Structured channel pruning of built networks: a convolution loses its weakest output
//! channels (smallest L1 norm of their filters, as Li et al., ICLR 2017, rank them) and the
//! layer after it loses the matching inputs, so the pruned network is really narrower: fewer
//! channels in the weights, fewer FLOPs, on any backend.
//!
//! Owns: channel ranking, slicing a convolution (with its batch norm) along its outputs and
//! inputs, and the per-architecture plans of what may be pruned: inside ResNet's basic blocks
//! only (the first convolution's outputs, the second's inputs), so that every residual sum
//! keeps its width; VGG-16's conv1_1..conv4_3 (ThiNet-Conv's configuration); the expanded
//! channels inside inverted residual blocks (OFA's elastic width: the block's input and output
//! widths kept); BERT's attention heads and feed-forward neurons (DynaBERT's width). The trained
//! digits CNN prunes with the same functions (`workloads/digits.rs`).

use burn::module::{Param, ParamId, RunningState};
use burn::nn::{BatchNormConfig, Linear};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::model::layers::{ConvBn, EncoderBlock, InvertedResidual, Layer};
use crate::model::workloads::make_divisible;
use crate::model::network::Network;

/// How many of `channels` survive removing the fraction `removed` (at least one).
pub fn kept_count(channels: usize, removed: f32) -> usize {
    (((channels as f32) * (1.0 - removed.clamp(0.0, 1.0))).round() as usize).clamp(1, channels.max(1))
}

/// Indices of the `keep` output channels with the largest L1 norm, in their original order.
pub fn strongest_channels(weight: &Tensor<4>, keep: usize) -> Vec<usize> {
    let [out, ..] = weight.dims();
    strongest_of(&l1_rows(weight.clone().reshape([out as i32, -1])), keep)
}

/// The L1 norm of each row of a matrix, as burn sums it (f32).
fn l1_rows(matrix: Tensor<2>) -> Vec<f32> {
    matrix.abs().sum_dim(1).into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 norms")
}

/// [`strongest`] of scores summed in f32 (their order is the f32 sums').
fn strongest_of(scores: &[f32], keep: usize) -> Vec<usize> {
    strongest(&scores.iter().map(|&s| f64::from(s)).collect::<Vec<_>>(), keep)
}

/// Indices of the `keep` largest `scores`, in their original order; equal scores go to the
/// lower index, so a device and a worker pruning the same weights keep the same channels.
pub fn strongest(scores: &[f64], keep: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(keep.min(scores.len()));
    order.sort_unstable();
    order
}

/// The indices `kept` as the tensor burn's `select` takes.
pub fn index(kept: &[usize], device: &Device) -> Tensor<1, Int> {
    let kept: Vec<i64> = kept.iter().map(|&i| i as i64).collect();
    let len = kept.len();
    Tensor::from_data(TensorData::new(kept, [len]), device)
}

fn param<const D: usize>(value: Tensor<D>) -> Param<Tensor<D>> {
    Param::initialized(ParamId::new(), value)
}

/// `conv` keeping only the output channels `outputs` and the input channels `inputs` (`None`:
/// all). Batch norm statistics and affine terms follow the outputs. Dense convolutions only.
pub fn slice_conv(conv: &ConvBn, outputs: Option<&[usize]>, inputs: Option<&[usize]>) -> ConvBn {
    let mut sliced = conv.clone();
    let weight = conv.conv.weight.val();
    let device = weight.device();
    let mut w = weight.clone();
    if let Some(out) = outputs {
        w = w.select(0, index(out, &device));
        if let Some(bias) = &conv.conv.bias {
            sliced.conv.bias = Some(param(bias.val().select(0, index(out, &device))));
        }
        if let Some(bn) = &conv.bn {
            let pick = |t: Tensor<1>| t.select(0, index(out, &device));
            let mut narrow = BatchNormConfig::new(out.len()).with_epsilon(bn.epsilon).init(&device);
            narrow.gamma = param(pick(bn.gamma.val()));
            narrow.beta = param(pick(bn.beta.val()));
            narrow.running_mean = RunningState::new(pick(bn.running_mean.value()));
            narrow.running_var = RunningState::new(pick(bn.running_var.value()));
            sliced.bn = Some(narrow);
        }
        sliced.geometry.c_out = out.len();
    }
    if let Some(inp) = inputs {
        w = w.select(1, index(inp, &device));
        sliced.geometry.c_in = inp.len();
    }
    sliced.conv.weight = param(w);
    sliced.int8 = None;
    sliced
}

/// A depthwise convolution keeping only the channels `kept` (its groups with them).
fn slice_depthwise(conv: &ConvBn, kept: &[usize]) -> ConvBn {
    let mut sliced = slice_conv(conv, Some(kept), None);
    sliced.geometry.c_in = kept.len();
    sliced.geometry.groups = kept.len();
    sliced.conv.groups = kept.len();
    sliced
}

/// A dense layer (burn's `[inputs, outputs]` weight) keeping only the given outputs or inputs.
fn slice_linear(linear: &Linear, outputs: Option<&[usize]>, inputs: Option<&[usize]>) -> Linear {
    let weight = linear.weight.val();
    let device = weight.device();
    let pick = |kept: &[usize]| index(kept, &device);
    let mut w = weight.clone();
    let mut sliced = linear.clone();
    if let Some(out) = outputs {
        w = w.select(1, pick(out));
        sliced.bias = linear.bias.as_ref().map(|b| param(b.val().select(0, pick(out))));
    }
    if let Some(inp) = inputs {
        w = w.select(0, pick(inp));
    }
    sliced.weight = param(w);
    sliced
}

/// The convolution a layer starts with, for the VGG-style plan.
fn conv_mut(layer: &mut Layer) -> Option<&mut ConvBn> {
    match layer {
        Layer::Conv(c) => Some(c),
        _ => None,
    }
}

/// ResNet: each basic block loses the fraction `removed` of its inner channels (the first
/// convolution's outputs and the second's inputs). The block's input and output widths, and so
/// every residual sum and downsampling projection, are unchanged.
pub fn prune_basic_blocks(mut network: Network, removed: f32) -> Network {
    for stage in &mut network.stages {
        for layer in &mut stage.layers {
            if let Layer::Basic(block) = layer {
                let keep = kept_count(block.conv1.geometry.c_out, removed);
                let kept = strongest_channels(&block.conv1.conv.weight.val(), keep);
                block.conv1 = slice_conv(&block.conv1, Some(&kept), None);
                block.conv2 = slice_conv(&block.conv2, None, Some(&kept));
            }
        }
    }
    rebuilt(network)
}

/// A chain of plain convolutions (VGG): the stages named in `prunable` lose the fraction
/// `removed` of their output channels, and the next convolution the matching inputs. A pruned
/// stage must be followed by a convolution (pooling between is fine: it keeps channels).
pub fn prune_conv_chain(mut network: Network, prunable: &[&str], removed: f32) -> Network {
    let mut pending: Option<Vec<usize>> = None;
    for stage in &mut network.stages {
        let prune_here = prunable.contains(&stage.name.as_str());
        let Some(conv) = stage.layers.first_mut().and_then(conv_mut) else {
            assert!(pending.is_none(), "a pruned convolution must feed a convolution");
            continue;
        };
        let inputs = pending.take();
        let outputs = prune_here.then(|| strongest_channels(&conv.conv.weight.val(), kept_count(conv.geometry.c_out, removed)));
        *conv = slice_conv(conv, outputs.as_deref(), inputs.as_deref());
        pending = outputs;
    }
    rebuilt(network)
}

/// Inverted residual blocks (MobileNetV3, OFA): every block's expanded channels cut to at most
/// `max_expand` × its input channels, as OFA's elastic width does. Like OFA
/// (`re_organize_middle_weights`), a channel's importance is the L1 norm of the projection's
/// weights that read it; the expansion, depthwise and squeeze-and-excite convolutions follow (the
/// squeeze width to a quarter of the new width, rounded to 8, as OFA's dynamic SE does). Input
/// and output widths, and so every skip, are unchanged.
pub fn prune_expansions(mut network: Network, max_expand: f32) -> Network {
    for stage in &mut network.stages {
        for layer in &mut stage.layers {
            if let Layer::InvertedResidual(block) = layer {
                prune_expansion(block, max_expand);
            }
        }
    }
    rebuilt(network)
}

fn prune_expansion(block: &mut InvertedResidual, max_expand: f32) {
    let shape = block.shape();
    let Some(expand) = &block.expand else { return };
    let keep = ((shape.c_in as f32 * max_expand).round() as usize).clamp(1, shape.mid);
    if keep == shape.mid {
        return;
    }
    let project = block.project.conv.weight.val();
    let device = project.device();
    let [c_out, mid, ..] = project.dims();
    let importance = l1_rows(project.reshape([c_out as i32, mid as i32, -1]).swap_dims(0, 1).reshape([mid as i32, -1]));
    let kept = strongest_of(&importance, keep);
    block.expand = Some(slice_conv(expand, Some(&kept), None));
    block.depthwise = slice_depthwise(&block.depthwise, &kept);
    block.project = slice_conv(&block.project, None, Some(&kept));
    if let Some(se) = &mut block.se {
        let reduce_in = se.reduce.weight.val().select(1, index(&kept, &device));
        let [squeezed, ..] = reduce_in.dims();
        let squeeze_kept = strongest_of(&l1_rows(reduce_in.clone().reshape([squeezed as i32, -1])), make_divisible(keep as f32 / 4.0).min(squeezed));
        let pick = |t: Tensor<4>, dim: usize, kept: &[usize]| t.select(dim, index(kept, &device));
        se.reduce.weight = param(pick(reduce_in, 0, &squeeze_kept));
        se.reduce.bias = se.reduce.bias.as_ref().map(|b| param(b.val().select(0, index(&squeeze_kept, &device))));
        se.expand.weight = param(pick(pick(se.expand.weight.val(), 0, &kept), 1, &squeeze_kept));
        se.expand.bias = se.expand.bias.as_ref().map(|b| param(b.val().select(0, index(&kept, &device))));
        se.channels = kept.len();
        se.squeezed = squeeze_kept.len();
    }
}

/// BERT's encoder layers lose the fraction `removed` of their attention heads and of their
/// feed-forward neurons, as DynaBERT's width multiplier does (width 1 − `removed`). A head's
/// importance is the L1 norm of its query, key and value columns and of the output rows that read
/// it; a neuron's, that of its inner column and outer row. The hidden size, and so every residual
/// and layer norm, is unchanged.
pub fn prune_encoders(mut network: Network, removed: f32) -> Network {
    for stage in &mut network.stages {
        for layer in &mut stage.layers {
            if let Layer::Encoder(block) = layer {
                prune_encoder(block, removed);
            }
        }
    }
    network
}

fn prune_encoder(block: &mut EncoderBlock, removed: f32) {
    let mha = &mut block.layer.mha;
    let (heads, d_k) = (mha.n_heads, mha.d_k);
    let columns = |linear: &Linear| linear.weight.val().transpose();
    let by_head = |rows: Tensor<2>| -> Vec<f32> {
        let norms = l1_rows(rows);
        norms.chunks(d_k).map(|c| c.iter().sum()).collect()
    };
    let mut importance = by_head(mha.output.weight.val());
    for linear in [&mha.query, &mha.key, &mha.value] {
        importance.iter_mut().zip(by_head(columns(linear))).for_each(|(a, b)| *a += b);
    }
    let kept_heads = strongest_of(&importance, kept_count(heads, removed));
    let kept: Vec<usize> = kept_heads.iter().flat_map(|&h| h * d_k..(h + 1) * d_k).collect();
    mha.query = slice_linear(&mha.query, Some(&kept), None);
    mha.key = slice_linear(&mha.key, Some(&kept), None);
    mha.value = slice_linear(&mha.value, Some(&kept), None);
    mha.output = slice_linear(&mha.output, None, Some(&kept));
    mha.n_heads = kept_heads.len();

    let pwff = &mut block.layer.pwff;
    let mut neurons = l1_rows(columns(&pwff.linear_inner));
    neurons.iter_mut().zip(l1_rows(pwff.linear_outer.weight.val())).for_each(|(a, b)| *a += b);
    let kept = strongest_of(&neurons, kept_count(block.ff, removed));
    pwff.linear_inner = slice_linear(&pwff.linear_inner, Some(&kept), None);
    pwff.linear_outer = slice_linear(&pwff.linear_outer, None, Some(&kept));
    block.ff = kept.len();
}

/// Recomputes the per-cut shapes after channels changed.
fn rebuilt(network: Network) -> Network {
    let input = network.boundary_dims[0].clone();
    Network::new(&network.workload, input, network.stages)
}
