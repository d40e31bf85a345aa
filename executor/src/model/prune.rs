//! Structured channel pruning of built networks: a convolution loses its weakest output
//! channels (smallest L1 norm of their filters, as Li et al., ICLR 2017, rank them) and the
//! layer after it loses the matching inputs, so the pruned network is really narrower: fewer
//! channels in the weights, fewer FLOPs, on any backend.
//!
//! Owns: channel ranking, slicing a convolution (with its batch norm) along its outputs and
//! inputs, and the per-architecture plans of what may be pruned: inside ResNet's basic blocks
//! only (the first convolution's outputs, the second's inputs), so that every residual sum
//! keeps its width; VGG-16's conv1_1..conv4_3 (ThiNet-Conv's configuration). The trained
//! digits CNN prunes with the same functions (`workloads/digits.rs`).

use burn::module::{Param, ParamId, RunningState};
use burn::nn::BatchNormConfig;
use burn::tensor::{Int, Tensor, TensorData};

use crate::model::layers::{ConvBn, Layer};
use crate::model::network::Network;

/// How many of `channels` survive removing the fraction `removed` (at least one).
pub fn kept_count(channels: usize, removed: f32) -> usize {
    (((channels as f32) * (1.0 - removed.clamp(0.0, 1.0))).round() as usize).clamp(1, channels.max(1))
}

/// Indices of the `keep` output channels with the largest L1 norm, in their original order.
pub fn strongest_channels(weight: &Tensor<4>, keep: usize) -> Vec<i64> {
    let [out, ..] = weight.dims();
    let norms: Vec<f32> = weight
        .clone()
        .abs()
        .reshape([out as i32, -1])
        .sum_dim(1)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 norms");
    let mut order: Vec<usize> = (0..out).collect();
    order.sort_by(|&a, &b| norms[b].total_cmp(&norms[a]));
    let mut kept: Vec<i64> = order[..keep.min(out)].iter().map(|&i| i as i64).collect();
    kept.sort_unstable();
    kept
}

fn index(kept: &[i64], like: &Tensor<4>) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(kept.to_vec(), [kept.len()]), &like.device())
}

fn param<const D: usize>(value: Tensor<D>) -> Param<Tensor<D>> {
    Param::initialized(ParamId::new(), value)
}

/// `conv` keeping only the output channels `outputs` and the input channels `inputs` (`None`:
/// all). Batch norm statistics and affine terms follow the outputs. Dense convolutions only.
pub fn slice_conv(conv: &ConvBn, outputs: Option<&[i64]>, inputs: Option<&[i64]>) -> ConvBn {
    let mut sliced = conv.clone();
    let weight = conv.conv.weight.val();
    let device = weight.device();
    let mut w = weight.clone();
    if let Some(out) = outputs {
        w = w.select(0, index(out, &weight));
        if let Some(bias) = &conv.conv.bias {
            sliced.conv.bias = Some(param(bias.val().select(0, index(out, &weight))));
        }
        if let Some(bn) = &conv.bn {
            let pick = |t: Tensor<1>| t.select(0, index(out, &weight));
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
        w = w.select(1, index(inp, &weight));
        sliced.geometry.c_in = inp.len();
    }
    sliced.conv.weight = param(w);
    sliced.int8 = None;
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
    let mut pending: Option<Vec<i64>> = None;
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

/// Recomputes the per-cut shapes after channels changed.
fn rebuilt(network: Network) -> Network {
    let input = network.boundary_dims[0].clone();
    Network::new(&network.workload, input, network.stages)
}
