//! The operators an imported ONNX graph is lowered to, and how each runs on burn.
//!
//! Every value is held as a rank-6 burn tensor whose leading axes are 1 and whose trailing axes
//! are the value's ONNX shape: numpy broadcasting aligns shapes from the right, so padding on the
//! left keeps `Add`/`Mul` broadcasting exact, and one tensor type serves ranks 1 to 6 (ShuffleNet's
//! channel shuffle is rank 5). Operators that need a fixed rank (convolution, pooling) reshape.

use burn::tensor::activation::{relu, sigmoid, softmax};
use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions, PadMode};
use burn::tensor::{Device, Tensor, TensorData};

/// The largest rank a value may have.
pub const MAX_RANK: usize = 6;

pub type ValueId = usize;

/// A constant of the graph on the host, in f32 (weights) with its ONNX shape.
#[derive(Clone, Debug)]
pub struct HostTensor {
    pub dims: Vec<usize>,
    pub values: Vec<f32>,
}

impl HostTensor {
    pub fn to_device(&self, device: &Device) -> Tensor<MAX_RANK> {
        Tensor::from_data(TensorData::new(self.values.clone(), pad_dims(&self.dims)), device)
    }

    pub fn to_device_rank<const D: usize>(&self, device: &Device) -> Tensor<D> {
        Tensor::from_data(TensorData::new(self.values.clone(), self.dims.clone()), device)
    }
}

/// An operand of an elementwise operator: a runtime value or a constant of the graph.
#[derive(Clone, Debug)]
pub enum Operand {
    Value(ValueId),
    Const(usize),
}

/// Pooling geometry, pads as (begin, end) per spatial axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pads: [(usize, usize); 2],
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
}

impl Pool2d {
    pub fn output_side(&self, input: usize, axis: usize) -> Option<usize> {
        let (begin, end) = self.pads[axis];
        let span = self.dilation[axis] * (self.kernel[axis] - 1) + 1;
        let padded = input + begin + end;
        if padded < span {
            return None;
        }
        let stride = self.stride[axis];
        let steps = padded - span;
        let mut out = if self.ceil_mode { steps.div_ceil(stride) } else { steps / stride } + 1;
        // ceil mode drops a last window that would start inside the end padding
        if self.ceil_mode && (out - 1) * stride >= input + begin {
            out -= 1;
        }
        Some(out)
    }
}

#[derive(Clone, Debug)]
pub enum OpKind {
    Conv { weight: usize, bias: Option<usize>, stride: [usize; 2], pads: [(usize, usize); 2], dilation: [usize; 2], groups: usize },
    /// Batch norm in inference form, folded to `x * scale + shift` per channel (axis 1).
    Affine { scale: usize, shift: usize },
    Relu,
    Clip { min: f32, max: f32 },
    Sigmoid,
    HardSigmoid { alpha: f32, beta: f32 },
    HardSwish,
    Add,
    Sub,
    Mul,
    Div,
    /// `Sum` of any number of operands.
    Sum,
    Concat { axis: usize },
    MaxPool(Pool2d),
    AveragePool { pool: Pool2d, count_include_pad: bool },
    GlobalAveragePool,
    Lrn { size: usize, alpha: f32, beta: f32, bias: f32 },
    /// `alpha * A' B' + beta * C`, `B` and `C` constants folded at import: `weight` is
    /// `[k, n]` already transposed and scaled by alpha, `bias` is `[n]` (or broadcastable) scaled by beta.
    Gemm { weight: usize, bias: Option<usize>, trans_a: bool },
    /// `A @ B` with B a runtime value (both 2-D or batched alike).
    MatMul,
    Flatten { axis: usize },
    /// Reshape to the value's shape at import (batch re-applied at run time).
    Reshape,
    Transpose { perm: Vec<usize> },
    Softmax { axis: usize, coerce_2d: bool },
    Identity,
}

/// One operator of the lowered graph.
#[derive(Clone, Debug)]
pub struct OpNode {
    /// The ONNX node's name (or `op_type#index` where it had none), for errors and reports.
    pub name: String,
    pub op_type: String,
    pub kind: OpKind,
    pub inputs: Vec<Operand>,
    pub output: ValueId,
    pub flops: u64,
}

impl OpNode {
    /// The constants this op reads at run time: its folded weights and per-channel terms, and
    /// any constant operand (once per read).
    pub fn consts_read(&self) -> impl Iterator<Item = usize> + '_ {
        let folded: Vec<usize> = match self.kind {
            OpKind::Conv { weight, bias, .. } | OpKind::Gemm { weight, bias, .. } => std::iter::once(weight).chain(bias).collect(),
            OpKind::Affine { scale, shift } => vec![scale, shift],
            _ => Vec::new(),
        };
        let operands = self.inputs.iter().filter_map(|input| match input {
            Operand::Const(c) => Some(*c),
            Operand::Value(_) => None,
        });
        folded.into_iter().chain(operands)
    }
}

/// Dims padded on the left with 1s to [`MAX_RANK`].
pub fn pad_dims(dims: &[usize]) -> [usize; MAX_RANK] {
    let mut out = [1; MAX_RANK];
    out[MAX_RANK - dims.len()..].copy_from_slice(dims);
    out
}

pub(crate) fn as4(t: Tensor<MAX_RANK>, dims: &[usize]) -> Tensor<4> {
    t.reshape([dims[0], dims[1], dims[2], dims[3]])
}

pub(crate) fn from4(t: Tensor<4>) -> Tensor<MAX_RANK> {
    let d = t.dims();
    t.reshape(pad_dims(&d))
}

/// Runs one operator. `dims_of` gives every value's runtime shape; `consts` the device copies of
/// the graph's constants. Shapes were checked at import, so the reshapes here cannot fail.
pub fn run_op(
    op: &OpNode,
    args: Vec<Tensor<MAX_RANK>>,
    input_dims: &[Vec<usize>],
    out_dims: &[usize],
    consts: &[Tensor<MAX_RANK>],
    weights4: &dyn Fn(usize) -> Tensor<4>,
    vector: &dyn Fn(usize) -> Tensor<1>,
) -> Tensor<MAX_RANK> {
    let mut args = args.into_iter();
    let mut next = || args.next().expect("operand count checked at import");
    match &op.kind {
        OpKind::Conv { weight, bias, stride, pads, dilation, groups } => {
            let x = as4(next(), &input_dims[0]);
            let options = ConvOptions::new_with_padding(*stride, *pads, *dilation, *groups);
            from4(conv2d(x, weights4(*weight), bias.map(vector), options))
        }
        OpKind::Affine { scale, shift } => {
            let x = next();
            x * consts[*scale].clone() + consts[*shift].clone()
        }
        OpKind::Relu => relu(next()),
        OpKind::Clip { min, max } => next().clamp(*min, *max),
        OpKind::Sigmoid => sigmoid(next()),
        OpKind::HardSigmoid { alpha, beta } => (next() * *alpha + *beta).clamp(0.0, 1.0),
        OpKind::HardSwish => {
            let x = next();
            x.clone() * (x / 6.0 + 0.5).clamp(0.0, 1.0)
        }
        OpKind::Add => next() + next(),
        OpKind::Sub => next() - next(),
        OpKind::Mul => next() * next(),
        OpKind::Div => next() / next(),
        OpKind::Sum => {
            let first = next();
            (1..op.inputs.len()).fold(first, |acc, _| acc + next())
        }
        OpKind::Concat { axis } => {
            let rank = out_dims.len();
            let parts: Vec<_> = (0..op.inputs.len()).map(|_| next()).collect();
            Tensor::cat(parts, MAX_RANK - rank + axis)
        }
        OpKind::MaxPool(pool) => {
            let x = as4(next(), &input_dims[0]);
            let options = MaxPoolOptions::new(pool.kernel)
                .with_stride(pool.stride)
                .with_padding_pairs(pool.pads)
                .with_dilation(pool.dilation)
                .with_ceil_mode(pool.ceil_mode);
            from4(max_pool2d(x, options))
        }
        OpKind::AveragePool { pool, count_include_pad } => {
            let x = as4(next(), &input_dims[0]);
            let options = AvgPoolOptions::new(pool.kernel)
                .with_stride(pool.stride)
                .with_padding_pairs(pool.pads)
                .with_count_include_pad(*count_include_pad)
                .with_ceil_mode(pool.ceil_mode);
            from4(avg_pool2d(x, options))
        }
        OpKind::GlobalAveragePool => {
            let x = as4(next(), &input_dims[0]);
            from4(x.mean_dim(3).mean_dim(2))
        }
        OpKind::Lrn { size, alpha, beta, bias } => {
            let x = as4(next(), &input_dims[0]);
            let [n, c, h, w] = x.dims();
            // the sum of squares over a window of `size` channels, as an average pool along C
            let squares = (x.clone() * x.clone()).reshape([n, 1, c, h * w]);
            let before = (size - 1) / 2;
            let after = size - 1 - before;
            let padded = squares.pad([(0, 0), (0, 0), (before, after), (0, 0)], PadMode::Constant(0.0));
            let summed = avg_pool2d(padded, AvgPoolOptions::new([*size, 1]).with_stride([1, 1]).with_count_include_pad(true)) * (*size as f32);
            let denominator = (summed.reshape([n, c, h, w]) * (*alpha / *size as f32) + *bias).powf_scalar(*beta);
            from4(x / denominator)
        }
        OpKind::Gemm { weight, bias, trans_a } => {
            let a_dims = &input_dims[0];
            let k = *a_dims.last().expect("rank checked at import");
            let rows = a_dims.iter().product::<usize>() / k.max(1);
            let a: Tensor<2> = next().reshape([rows, k]);
            let a = if *trans_a { a.transpose() } else { a };
            let w: Tensor<2> = consts[*weight].clone().reshape([
                consts[*weight].dims()[MAX_RANK - 2],
                consts[*weight].dims()[MAX_RANK - 1],
            ]);
            let y = a.matmul(w);
            let y = y.reshape(pad_dims(out_dims));
            match bias {
                Some(b) => y + consts[*b].clone(),
                None => y,
            }
        }
        OpKind::MatMul => {
            let a = next();
            let b = next();
            a.matmul(b)
        }
        OpKind::Flatten { .. } | OpKind::Reshape => next().reshape(pad_dims(out_dims)),
        OpKind::Transpose { perm } => {
            let rank = perm.len();
            let offset = MAX_RANK - rank;
            let mut axes = [0usize; MAX_RANK];
            for (i, axis) in axes.iter_mut().enumerate() {
                *axis = if i < offset { i } else { offset + perm[i - offset] };
            }
            next().permute(axes)
        }
        OpKind::Softmax { axis, coerce_2d } => {
            let x = next();
            let rank = out_dims.len();
            if *coerce_2d {
                let outer: usize = out_dims[..*axis].iter().product();
                let inner: usize = out_dims[*axis..].iter().product();
                let flat: Tensor<2> = x.reshape([outer, inner]);
                softmax(flat, 1).reshape(pad_dims(out_dims))
            } else {
                softmax(x, MAX_RANK - rank + axis)
            }
        }
        OpKind::Identity => next(),
    }
}
