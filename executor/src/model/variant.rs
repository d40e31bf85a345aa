//! Compressed variants of a workload. `int8` is post-training weight quantization through
//! burn's quantization API; `pruned` variants are structurally narrower networks (MobileNetV2's
//! width multipliers, or the digits CNN with its weakest channels removed).

use burn::module::{Module, Quantizer};
use burn::tensor::quantization::{Calibration, QuantScheme};
use serde::Serialize;

use crate::Network;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Variant {
    /// The reference network in full precision.
    Fp32,
    /// Weights quantized to 8 bits with min-max calibration; activations stay f32.
    Int8,
    /// A narrower network: every channel count scaled by `multiplier`.
    Width { multiplier: f32 },
    /// The trained network with the fraction `removed` of its convolution channels taken out,
    /// weakest (smallest L1 norm) first.
    MagnitudePruned { removed: f32 },
}

/// Quantizes every weight of `network` to int8 (burn's default per-tensor symmetric scheme).
pub fn quantize_int8(network: Network) -> Network {
    let mut quantizer = Quantizer::new(Calibration::MinMax, QuantScheme::default());
    network.quantize_weights(&mut quantizer)
}
