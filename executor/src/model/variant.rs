//! Compressed variants of a workload. `int8` computes in int8 where it pays (every dense
//! convolution and dense layer: `model/int8.rs`), and keeps burn's weight-only quantization for
//! the stored form of the rest; `pruned` variants are structurally narrower networks
//! (`model/prune.rs`: channels removed from the weights, or MobileNetV2's width multipliers).

use std::sync::Arc;

use burn::module::{Module, Quantizer};
use burn::tensor::quantization::{Calibration, QuantScheme};
use serde::Serialize;

use crate::model::int8::{QConv, QDense, QEmbedding};
use crate::model::layers::{Act, ConvBn, Dense, Layer};
use crate::model::network::Stage;
use crate::Network;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Variant {
    /// The reference network in full precision.
    Fp32,
    /// Convolutions, dense layers and BERT's feed-forward compute in int8 (per-channel weights,
    /// per-tensor activations, integer sums); token tables are int8 rows; depthwise and narrow
    /// pointwise convolutions, attention and the rest stay f32.
    Int8,
    /// A narrower network: every channel count scaled by `multiplier`.
    Width { multiplier: f32 },
    /// The network with the fraction `removed` of its prunable channels taken out, weakest
    /// (smallest L1 norm) first: a convolution's filters and the next layer's inputs with them.
    MagnitudePruned { removed: f32 },
    /// Inverted residual blocks with their expanded channels cut to at most `max_expand` × the
    /// block's input channels (OFA's elastic width), the weakest going first.
    ExpandCapped { max_expand: f32 },
}

fn quantizer() -> Quantizer {
    Quantizer::new(Calibration::MinMax, QuantScheme::default())
}

/// The int8 form of a convolution. Its record keeps burn's int8 weights (what a file of this
/// variant stores); the prepared copy is what runs. Depthwise convolutions stay f32 and keep
/// f32 weights: dequantizing them on every call is what made weight-only int8 slower.
fn conv(mut c: ConvBn) -> ConvBn {
    if let Some(q) = QConv::new(&c.conv, c.bn.as_ref(), c.geometry, c.act) {
        c.int8 = Some(Arc::new(q));
        c.conv = c.conv.quantize_weights(&mut quantizer());
    }
    c
}

fn dense(mut d: Dense) -> Dense {
    d.int8 = Some(Arc::new(QDense::new(&d.linear, d.act)));
    d.linear = d.linear.quantize_weights(&mut quantizer());
    d
}

fn layer(layer: Layer) -> Layer {
    match layer {
        Layer::Conv(c) => Layer::Conv(conv(c)),
        Layer::Dense(d) => Layer::Dense(dense(d)),
        Layer::Basic(mut b) => {
            b.conv1 = conv(b.conv1);
            b.conv2 = conv(b.conv2);
            b.downsample = b.downsample.map(conv);
            Layer::Basic(b)
        }
        Layer::InvertedResidual(mut b) => {
            b.expand = b.expand.map(conv);
            b.depthwise = conv(b.depthwise);
            b.project = conv(b.project);
            Layer::InvertedResidual(b)
        }
        Layer::Pooler(mut p) => {
            p.dense = dense(p.dense);
            p.classifier = dense(p.classifier);
            Layer::Pooler(p)
        }
        // the token table is looked up, not multiplied: int8 rows, dequantized as read
        Layer::Embed(mut e) => {
            e.int8 = Some(Arc::new(QEmbedding::new(e.tokens.weight.val())));
            e.tokens = e.tokens.quantize_weights(&mut quantizer());
            Layer::Embed(e)
        }
        // burn's attention has no int8 path and stays f32; the feed-forward computes in int8
        Layer::Encoder(mut e) => {
            let pwff = &e.layer.pwff;
            let ff = (QDense::new(&pwff.linear_inner, Act::None), QDense::new(&pwff.linear_outer, Act::None));
            e.int8_ff = Some(Arc::new(ff));
            e.layer.pwff = e.layer.pwff.quantize_weights(&mut quantizer());
            Layer::Encoder(e)
        }
        other @ (Layer::MaxPool(_) | Layer::GlobalAvgPool(_) | Layer::Onnx(_)) => other,
    }
}

/// The int8 variant of `network`.
pub fn quantize_int8(mut network: Network) -> Network {
    network.stages = std::mem::take(&mut network.stages)
        .into_iter()
        .map(|s| Stage::new(s.name, s.layers.into_iter().map(layer).collect()))
        .collect();
    network
}
