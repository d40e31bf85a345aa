//! int8 compute for convolutions and dense layers (the `int8` variants): weights quantized per
//! output channel (symmetric, 8 bits) once when the variant is built, batch norm folded into
//! them first; activations quantized per tensor at each layer's input (asymmetric, 7 bits: see
//! `rlsched-qgemm`), multiplied with integer sums, and dequantized with the bias and the
//! activation function in one pass that writes the f32 output. Depthwise convolutions, pooling,
//! residual additions and attention stay in f32: they are memory-bound and gain nothing.
//!
//! Owns: [`QConv`] and [`QDense`] (the prepared weights and their forward passes) and the
//! activation quantizer they share. The integer arithmetic is `rlsched-qgemm`'s.

use std::fmt;

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;
use rlsched_qgemm::{gemm, padded_k, Kernel, PackedB, A_MAX};

use super::layers::{Act, ConvGeometry};

/// A tensor's values on the host as f32 (whatever float type the backend keeps).
fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("converted to f32")
}

/// Fewest channels (in and out) for which a 1×1 convolution runs faster in int8.
pub const MIN_POINTWISE_CHANNELS: usize = 160;

/// Layout changes between NCHW and NHWC go in blocks of this many positions and channels.
const POSITIONS: usize = 256;
const CHANNELS: usize = 16;

/// Per-tensor asymmetric quantization of one layer input onto 0..=A_MAX: scale and zero point
/// from its own range (dynamic: no calibration set is needed, and a request with unusually
/// bright pixels does not clip).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputQuant {
    pub scale: f32,
    pub zero_point: u8,
}

impl InputQuant {
    /// The range always contains 0 so that zero padding is exact; a constant input gets scale 1.
    pub fn of(values: &[f32]) -> Self {
        let (lo, hi) = values
            .iter()
            .filter(|v| v.is_finite())
            .fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let range = hi - lo;
        let scale = if range > 0.0 && range.is_finite() { range / A_MAX as f32 } else { 1.0 };
        let zero_point = (-lo / scale).round().clamp(0.0, A_MAX as f32) as u8;
        Self { scale, zero_point }
    }

    #[inline]
    pub fn quantize(&self, v: f32) -> u8 {
        // NaN casts to 0; ±∞ saturate before the clamp
        ((v / self.scale).round() + self.zero_point as f32).clamp(0.0, A_MAX as f32) as u8
    }
}

/// Weights (k × n, row-major, f32) → packed int8 with one scale per output column.
fn quantize_weights(weights: &[f32], k: usize, n: usize) -> (PackedB, Vec<f32>) {
    let mut scales = vec![0.0f32; n];
    for row in weights.chunks(n) {
        for (s, w) in scales.iter_mut().zip(row) {
            *s = s.max(w.abs());
        }
    }
    for s in &mut scales {
        *s = if *s > 0.0 && s.is_finite() { *s / 127.0 } else { 1.0 };
    }
    let q: Vec<i8> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| (w / scales[i % n]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (PackedB::new(&q, k, n).expect("k · n weights"), scales)
}

/// The integer sums of one output column back to f32: `scale_x · scale_w · (Σ − zp · Σw) + b`.
struct Dequant {
    factor: Vec<f32>,
    offset: Vec<f32>,
    act: Act,
}

impl Dequant {
    fn new(input: InputQuant, w_scale: &[f32], col_sums: &[i32], bias: &[f32], act: Act) -> Self {
        let factor: Vec<f32> = w_scale.iter().map(|s| s * input.scale).collect();
        let offset = factor
            .iter()
            .zip(col_sums)
            .zip(bias)
            .map(|((f, &sum), b)| b - f * input.zero_point as f32 * sum as f32)
            .collect();
        Self { factor, offset, act }
    }

    #[inline]
    fn apply(&self, col: usize, sum: i32) -> f32 {
        self.act.apply_scalar(sum as f32 * self.factor[col] + self.offset[col])
    }
}

/// A dense convolution (groups = 1) with batch norm folded in, ready for int8.
#[derive(Clone)]
pub struct QConv {
    weights: PackedB,
    w_scale: Vec<f32>,
    bias: Vec<f32>,
    geometry: ConvGeometry,
    act: Act,
    kernel: Kernel,
}

impl fmt::Debug for QConv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QConv({:?}, {:?}, {:?})", self.geometry, self.act, self.kernel)
    }
}

/// Folds eval-mode batch norm into per-output-channel weight factors and a bias:
/// `γ (x − μ) / √(σ² + ε) + β`.
fn fold_bn(bn: Option<&BatchNorm>, bias: Option<Vec<f32>>, c_out: usize) -> (Vec<f32>, Vec<f32>) {
    let bias = bias.unwrap_or_else(|| vec![0.0; c_out]);
    let Some(bn) = bn else {
        return (vec![1.0; c_out], bias);
    };
    let (gamma, beta) = (host(bn.gamma.val()), host(bn.beta.val()));
    let (mean, var) = (host(bn.running_mean.value()), host(bn.running_var.value()));
    let mut scale = vec![0.0; c_out];
    let mut shift = vec![0.0; c_out];
    for c in 0..c_out {
        scale[c] = gamma[c] / (var[c] + bn.epsilon as f32).sqrt();
        shift[c] = (bias[c] - mean[c]) * scale[c] + beta[c];
    }
    (scale, shift)
}

impl QConv {
    /// Whether int8 pays for a convolution of this shape. Grouped (depthwise) convolutions are
    /// memory-bound: no. A 1×1 convolution runs in flex straight on NCHW data with no im2col,
    /// while int8 adds a layout pass each way; on the 2-core VM (variants alternating) it paid
    /// only with at least [`MIN_POINTWISE_CHANNELS`] channels in and out: MobileNetV2's blocks
    /// 14..17 and head and OFA's blocks 13..14 faster, MobileNetV2's 96-channel blocks even,
    /// OFA's 80..136-channel blocks slower. Every k×k convolution pays, down to 3 input channels.
    pub fn pays(geometry: &ConvGeometry) -> bool {
        geometry.groups == 1
            && (geometry.kernel > 1 || geometry.c_in.min(geometry.c_out) >= MIN_POINTWISE_CHANNELS)
    }

    /// `None` where int8 does not pay ([`QConv::pays`]): that convolution stays in f32.
    pub fn new(conv: &Conv2d, bn: Option<&BatchNorm>, geometry: ConvGeometry, act: Act) -> Option<Self> {
        Self::pays(&geometry).then(|| Self::prepare(conv, bn, geometry, act))
    }

    /// The int8 form of a convolution given by its host weights (`[c_out, c_in, k, k]`, row
    /// major) and bias, as an imported model holds them; `None` where int8 does not pay.
    pub fn from_weights(weight: &[f32], bias: Option<Vec<f32>>, geometry: ConvGeometry, act: Act) -> Option<Self> {
        let ConvGeometry { c_in, c_out, kernel, .. } = geometry;
        if weight.len() != c_out * c_in * kernel * kernel || bias.as_ref().is_some_and(|b| b.len() != c_out) {
            return None;
        }
        Self::pays(&geometry).then(|| Self::from_host(weight, fold_bn(None, bias, c_out), geometry, act))
    }

    /// The int8 form of a dense (groups = 1) convolution, whether or not it pays.
    fn prepare(conv: &Conv2d, bn: Option<&BatchNorm>, geometry: ConvGeometry, act: Act) -> Self {
        let w = host(conv.weight.val());
        let folded = fold_bn(bn, conv.bias.as_ref().map(|b| host(b.val())), geometry.c_out);
        Self::from_host(&w, folded, geometry, act)
    }

    /// `w`: `[c_out, c_in, k, k]`; `(bn_scale, bias)` per output channel.
    fn from_host(w: &[f32], (bn_scale, bias): (Vec<f32>, Vec<f32>), geometry: ConvGeometry, act: Act) -> Self {
        let ConvGeometry { c_in, c_out, kernel, .. } = geometry;
        // B[k][co] with k = (kh · K + kw) · C + c: the order of the NHWC im2col rows
        let k = kernel * kernel * c_in;
        let mut b = vec![0.0f32; k * c_out];
        for co in 0..c_out {
            for c in 0..c_in {
                for kh in 0..kernel {
                    for kw in 0..kernel {
                        let src = ((co * c_in + c) * kernel + kh) * kernel + kw;
                        b[((kh * kernel + kw) * c_in + c) * c_out + co] = w[src] * bn_scale[co];
                    }
                }
            }
        }
        let (weights, w_scale) = quantize_weights(&b, k, c_out);
        Self { weights, w_scale, bias, geometry, act, kernel: Kernel::detect() }
    }

    /// Bytes of the prepared weights (int8, column sums, scales and bias).
    pub fn bytes(&self) -> usize {
        self.weights.bytes() + 4 * (self.w_scale.len() + self.bias.len())
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        let [batch, c_in, h, w] = x.dims();
        let g = self.geometry;
        let (kernel, stride, pad) = (g.kernel, g.stride, g.padding);
        let oh = (h + 2 * pad - kernel) / stride + 1;
        let ow = (w + 2 * pad - kernel) / stride + 1;
        let values = host(x);
        let quant = InputQuant::of(&values);
        // NCHW f32 → NHWC 7-bit: each im2col row then copies whole channel runs. Blocked by
        // positions × 16 channels so that reads and writes both stay in a few cache lines.
        let mut nhwc = vec![0u8; values.len()];
        let plane_in = h * w;
        nhwc.par_chunks_mut(POSITIONS * c_in).enumerate().for_each(|(block, dst)| {
            let p0 = block * POSITIONS;
            for (i, dst) in dst.chunks_mut(c_in).enumerate() {
                let (n, p) = ((p0 + i) / plane_in, (p0 + i) % plane_in);
                let src = &values[n * c_in * plane_in + p..];
                for (c, d) in dst.iter_mut().enumerate() {
                    *d = quant.quantize(src[c * plane_in]);
                }
            }
        });
        let k4 = padded_k(kernel * kernel * c_in);
        let rows = batch * oh * ow;
        let direct = kernel == 1 && stride == 1 && pad == 0 && k4 == c_in;
        let a = if direct {
            nhwc
        } else {
            let mut a = vec![0u8; rows * k4];
            a.par_chunks_mut(ow * k4).enumerate().for_each(|(r, out)| {
                let (n, y) = (r / oh, r % oh);
                let image = &nhwc[n * h * w * c_in..(n + 1) * h * w * c_in];
                for x in 0..ow {
                    let row = &mut out[x * k4..(x + 1) * k4];
                    for kh in 0..kernel {
                        for kw in 0..kernel {
                            let dst = &mut row[(kh * kernel + kw) * c_in..(kh * kernel + kw + 1) * c_in];
                            let (iy, ix) = ((y * stride + kh) as isize - pad as isize, (x * stride + kw) as isize - pad as isize);
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                dst.fill(quant.zero_point);
                            } else {
                                let at = (iy as usize * w + ix as usize) * c_in;
                                dst.copy_from_slice(&image[at..at + c_in]);
                            }
                        }
                    }
                }
            });
            a
        };
        let c_out = g.c_out;
        let mut sums = vec![0i32; rows * c_out];
        gemm(self.kernel, &a, rows, &self.weights, &mut sums).expect("shapes follow the geometry");
        let dq = Dequant::new(quant, &self.w_scale, self.weights.col_sums(), &self.bias, self.act);
        // [rows][c_out] → NCHW, 16 output planes per task: each row's 16 sums are one cache
        // line, written to 16 sequential streams
        let plane = oh * ow;
        let mut out = vec![0.0f32; batch * c_out * plane];
        out.par_chunks_mut(plane * CHANNELS).enumerate().for_each(|(block, dst)| {
            // plane index n · c_out + co: a block may straddle two images
            let planes: Vec<(usize, usize)> = (0..dst.len() / plane)
                .map(|j| ((block * CHANNELS + j) / c_out, (block * CHANNELS + j) % c_out))
                .collect();
            for p in 0..plane {
                for (j, &(n, co)) in planes.iter().enumerate() {
                    dst[j * plane + p] = dq.apply(co, sums[(n * plane + p) * c_out + co]);
                }
            }
        });
        Tensor::from_data(TensorData::new(out, [batch, c_out, oh, ow]), &device)
    }
}

/// A dense layer ready for int8.
#[derive(Clone)]
pub struct QDense {
    weights: PackedB,
    w_scale: Vec<f32>,
    bias: Vec<f32>,
    act: Act,
    kernel: Kernel,
}

impl fmt::Debug for QDense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QDense({}→{}, {:?}, {:?})", self.weights.k(), self.weights.n(), self.act, self.kernel)
    }
}

impl QDense {
    pub fn new(linear: &Linear, act: Act) -> Self {
        let [d_in, d_out] = linear.weight.val().dims();
        let w = host(linear.weight.val());
        let bias = linear.bias.as_ref().map_or_else(|| vec![0.0; d_out], |b| host(b.val()));
        Self::from_host(&w, bias, d_in, d_out, act)
    }

    /// The int8 form of `x · W + b` given host weights `[d_in, d_out]` (row major, as an
    /// imported Gemm holds them); `None` when the sizes do not match.
    pub fn from_weights(weight: &[f32], bias: Option<Vec<f32>>, d_in: usize, d_out: usize, act: Act) -> Option<Self> {
        let bias = bias.unwrap_or_else(|| vec![0.0; d_out]);
        (weight.len() == d_in * d_out && bias.len() == d_out).then(|| Self::from_host(weight, bias, d_in, d_out, act))
    }

    fn from_host(w: &[f32], bias: Vec<f32>, d_in: usize, d_out: usize, act: Act) -> Self {
        let (weights, w_scale) = quantize_weights(w, d_in, d_out);
        Self { weights, w_scale, bias, act, kernel: Kernel::detect() }
    }

    pub fn bytes(&self) -> usize {
        self.weights.bytes() + 4 * (self.w_scale.len() + self.bias.len())
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let device = x.device();
        let [batch, d_in] = x.dims();
        let values = host(x);
        let quant = InputQuant::of(&values);
        let k4 = padded_k(d_in);
        let mut a = vec![0u8; batch * k4];
        for (dst, src) in a.chunks_mut(k4).zip(values.chunks(d_in)) {
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = quant.quantize(v);
            }
        }
        let d_out = self.weights.n();
        let mut sums = vec![0i32; batch * d_out];
        gemm(self.kernel, &a, batch, &self.weights, &mut sums).expect("shapes follow the layer");
        let dq = Dequant::new(quant, &self.w_scale, self.weights.col_sums(), &self.bias, self.act);
        let out: Vec<f32> = sums.iter().enumerate().map(|(i, &s)| dq.apply(i % d_out, s)).collect();
        Tensor::from_data(TensorData::new(out, [batch, d_out]), &device)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::*;
    use crate::model::layers::ConvBn;

    fn cosine(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b))
    }

    #[test]
    fn zero_is_exact_and_values_round_to_the_nearest_step() {
        let values = [-1.5f32, 0.0, 0.25, 3.0, f32::NAN];
        let q = InputQuant::of(&values);
        let back = |v: f32| (q.quantize(v) as f32 - q.zero_point as f32) * q.scale;
        assert_eq!(back(0.0), 0.0, "zero padding must stay exact");
        for v in [-1.5f32, 0.25, 3.0] {
            assert!((back(v) - v).abs() <= q.scale / 2.0 + 1e-6, "{v} -> {}", back(v));
        }
        assert!(q.quantize(f32::NAN) <= A_MAX && q.quantize(f32::INFINITY) == A_MAX);
        assert_eq!(InputQuant::of(&[0.0; 4]).scale, 1.0);
    }

    #[test]
    fn int8_convolution_follows_f32_batch_norm_padding_stride_and_batches() {
        let device = Device::flex();
        // 24 output channels: output blocks of 16 planes straddle the two images
        for (c_in, kernel, stride) in [(3, 3, 2), (8, 1, 1), (160, 1, 1), (5, 7, 2)] {
            let mut conv = ConvBn::new(c_in, 24, kernel, stride, 1, true, Act::Relu6, &device);
            // batch norm with statistics that are not the identity, so folding matters
            if let Some(bn) = conv.bn.as_mut() {
                bn.running_mean = burn::module::RunningState::new(Tensor::random([24], Distribution::Uniform(-0.5, 0.5), &device));
                bn.running_var = burn::module::RunningState::new(Tensor::random([24], Distribution::Uniform(0.5, 2.0), &device));
            }
            let x = Tensor::<4>::random([2, c_in, 13, 11], Distribution::Uniform(-1.0, 2.0), &device);
            let reference = host(conv.forward(x.clone()));
            let forced = QConv { kernel: Kernel::Portable, ..QConv::prepare(&conv.conv, conv.bn.as_ref(), conv.geometry, conv.act) };
            for q in [QConv::prepare(&conv.conv, conv.bn.as_ref(), conv.geometry, conv.act), forced] {
                let out = q.forward(x.clone());
                assert_eq!(out.dims()[..2], [2, 24]);
                let got = host(out);
                let similarity = cosine(&reference, &got);
                assert!(similarity > 0.999, "c_in {c_in} k {kernel} s {stride} {:?}: cosine {similarity}", q.kernel);
            }
        }
    }

    #[test]
    fn only_shapes_where_int8_pays_are_converted() {
        let g = |c_in, c_out, kernel, groups| ConvGeometry { c_in, c_out, kernel, stride: 1, padding: kernel / 2, groups };
        assert!(QConv::pays(&g(3, 64, 3, 1)));
        assert!(QConv::pays(&g(320, 1280, 1, 1)));
        assert!(!QConv::pays(&g(24, 144, 1, 1)), "narrow pointwise stays f32");
        assert!(!QConv::pays(&g(144, 144, 3, 144)), "depthwise stays f32");
    }
}

/// A token table in int8, one scale per row: a lookup dequantizes only the rows it reads.
/// burn's weight-only int8 dequantized the whole 31 MB table of BERT-mini on every request.
#[derive(Clone)]
pub struct QEmbedding {
    rows: Vec<i8>,
    scales: Vec<f32>,
    width: usize,
}

impl fmt::Debug for QEmbedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QEmbedding({}×{})", self.scales.len(), self.width)
    }
}

impl QEmbedding {
    pub fn new(table: Tensor<2>) -> Self {
        let [count, width] = table.dims();
        let values = host(table);
        let mut rows = vec![0i8; count * width];
        let mut scales = vec![1.0f32; count];
        for (r, (src, dst)) in values.chunks(width.max(1)).zip(rows.chunks_mut(width.max(1))).enumerate() {
            let max = src.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = if max > 0.0 && max.is_finite() { max / 127.0 } else { 1.0 };
            scales[r] = scale;
            for (d, v) in dst.iter_mut().zip(src) {
                *d = (v / scale).round().clamp(-127.0, 127.0) as i8;
            }
        }
        Self { rows, scales, width }
    }

    /// Rows `ids` (checked against the vocabulary before any stage runs: `Network::run_wire`)
    /// as `[batch, len, width]`; an id out of range reads row 0 rather than panicking.
    pub fn forward(&self, ids: Tensor<2, burn::tensor::Int>) -> Tensor<3> {
        let device = ids.device();
        let [batch, len] = ids.dims();
        let ids = ids.into_data().convert::<i64>().try_into_vec::<i64>().expect("i64 ids");
        let mut out = Vec::with_capacity(ids.len() * self.width);
        for id in ids {
            let row = usize::try_from(id).ok().filter(|&r| r < self.scales.len()).unwrap_or(0);
            let scale = self.scales[row];
            out.extend(self.rows[row * self.width..(row + 1) * self.width].iter().map(|&q| q as f32 * scale));
        }
        Tensor::from_data(TensorData::new(out, [batch, len, self.width]), &device)
    }
}
