//! The building blocks that stages are made of. Each block is a burn `Module`, knows the shape it
//! produces from the shape it receives (so that a cut's expected input is known before anything
//! runs), and counts its own multiply-adds. Residual blocks stay whole inside one layer, so no
//! cut can fall inside a skip connection.
//!
//! One file per family: `conv` (convolution + batch norm), `residual` (MobileNet's inverted
//! residual with squeeze-and-excite, ResNet's basic block), `dense`, `transformer` (BERT's
//! embeddings, encoder and pooler); this file holds the activation functions and the `Layer`
//! enum that a stage is a list of.

mod conv;
mod dense;
mod residual;
mod transformer;

use burn::module::Module;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::activation::{relu, tanh};
use burn::tensor::Tensor;

pub use conv::{ConvBn, ConvGeometry};
pub use dense::Dense;
pub use residual::{BasicBlock, BlockShape, InvertedResidual, SqueezeExcite};
pub use transformer::{EncoderBlock, Pooler, TokenEmbedding};

use crate::model::onnx::OnnxSegment;
use crate::Activation;

/// Non-linearity applied after a convolution or dense layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Act {
    #[default]
    None,
    Relu,
    Relu6,
    Tanh,
    /// MobileNetV3's x·relu6(x+3)/6.
    HSwish,
    /// relu6(x+3)/6, the gate of MobileNetV3's squeeze-and-excite.
    HSigmoid,
}

impl Act {
    /// The same function on one value (the int8 layers apply it as they dequantize).
    #[inline]
    pub fn apply_scalar(self, x: f32) -> f32 {
        match self {
            Act::None => x,
            Act::Relu => x.max(0.0),
            Act::Relu6 => x.clamp(0.0, 6.0),
            Act::Tanh => x.tanh(),
            Act::HSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
            Act::HSigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
        }
    }

    fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Act::None => x,
            Act::Relu => relu(x),
            Act::Relu6 => x.clamp(0.0, 6.0),
            Act::Tanh => tanh(x),
            Act::HSwish => x.clone() * ((x + 3.0).clamp(0.0, 6.0) / 6.0),
            Act::HSigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
        }
    }
}

/// Max pooling with its geometry kept for shape inference.
#[derive(Module, Debug)]
pub struct Pool {
    pub pool: MaxPool2d,
    #[module(skip)]
    pub kernel: usize,
    #[module(skip)]
    pub stride: usize,
    #[module(skip)]
    pub padding: usize,
}

/// One layer of a stage.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Layer {
    Conv(ConvBn),
    MaxPool(Pool),
    GlobalAvgPool(AdaptiveAvgPool2d),
    Dense(Dense),
    InvertedResidual(InvertedResidual),
    Basic(BasicBlock),
    Embed(TokenEmbedding),
    Encoder(EncoderBlock),
    Pooler(Pooler),
    /// A stage of an imported ONNX graph, run op by op.
    Onnx(OnnxSegment),
}

impl Layer {
    pub fn max_pool(kernel: usize, stride: usize, padding: usize) -> Self {
        Layer::MaxPool(Pool {
            pool: MaxPool2dConfig::new([kernel, kernel])
                .with_strides([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
                .init(),
            kernel,
            stride,
            padding,
        })
    }

    pub fn global_avg_pool() -> Self {
        Layer::GlobalAvgPool(AdaptiveAvgPool2dConfig::new([1, 1]).init())
    }

    /// Whether this layer reads token ids (INT64) rather than floats.
    pub fn takes_tokens(&self) -> bool {
        matches!(self, Layer::Embed(_))
    }

    /// The output shape for a (valid) input shape.
    pub fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        match self {
            Layer::Conv(c) => c.geometry.output_dims(input),
            Layer::MaxPool(p) => {
                let spatial = |x: usize| (x + 2 * p.padding - p.kernel) / p.stride + 1;
                vec![input[0], input[1], spatial(input[2]), spatial(input[3])]
            }
            Layer::GlobalAvgPool(_) => vec![input[0], input[1]],
            Layer::Dense(d) => vec![input[0], d.d_out],
            Layer::InvertedResidual(b) => b.output_dims(input),
            Layer::Basic(b) => b.output_dims(input),
            Layer::Embed(e) => vec![input[0], input[1], e.hidden],
            Layer::Encoder(_) => input.to_vec(),
            Layer::Pooler(p) => vec![input[0], p.classifier.d_out],
            Layer::Onnx(s) => s.output_dims(input),
        }
    }

    /// Floating-point operations (a multiply-add counts two) for one input of this shape.
    pub fn flops(&self, input: &[usize]) -> u64 {
        let out = self.output_dims(input);
        match self {
            Layer::Conv(c) => c.geometry.flops(&out),
            Layer::MaxPool(p) => (out.iter().product::<usize>() * p.kernel * p.kernel) as u64,
            Layer::GlobalAvgPool(_) => input.iter().product::<usize>() as u64,
            Layer::Dense(d) => 2 * (input[0] * d.d_in * d.d_out) as u64,
            Layer::InvertedResidual(b) => b.flops(input),
            Layer::Basic(b) => b.flops(input),
            Layer::Embed(e) => 4 * (input[0] * input[1] * e.hidden) as u64,
            Layer::Encoder(e) => {
                let (n, l, d, f) = (input[0] as u64, input[1] as u64, e.hidden as u64, e.ff as u64);
                let a = e.attention_width() as u64;
                2 * n * l * (4 * d * a + 2 * d * f) + 4 * n * l * l * a
            }
            Layer::Pooler(p) => {
                2 * (input[0] * (p.dense.d_in * p.dense.d_out + p.classifier.d_in * p.classifier.d_out)) as u64
            }
            Layer::Onnx(s) => s.flops(input),
        }
    }

    /// Runs the layer. The input's kind has been checked against [`Layer::expects`] already.
    pub fn forward(&self, x: Activation) -> Activation {
        match (self, x) {
            (Layer::Conv(c), Activation::Image(x)) => Activation::Image(c.forward(x)),
            (Layer::MaxPool(p), Activation::Image(x)) => Activation::Image(p.pool.forward(x)),
            (Layer::GlobalAvgPool(p), Activation::Image(x)) => {
                Activation::Features(p.forward(x).flatten(1, 3))
            }
            (Layer::Dense(d), Activation::Image(x)) => Activation::Features(d.forward(x.flatten(1, 3))),
            (Layer::Dense(d), Activation::Features(x)) => Activation::Features(d.forward(x)),
            (Layer::InvertedResidual(b), Activation::Image(x)) => Activation::Image(b.forward(x)),
            (Layer::Basic(b), Activation::Image(x)) => Activation::Image(b.forward(x)),
            (Layer::Embed(e), Activation::Tokens(ids)) => Activation::Sequence(e.forward(ids)),
            (Layer::Encoder(e), Activation::Sequence(x)) => Activation::Sequence(e.forward(x)),
            (Layer::Pooler(p), Activation::Sequence(x)) => {
                let [batch, _, hidden] = x.dims();
                let first = x.narrow(1, 0, 1).reshape([batch, hidden]);
                Activation::Features(p.classifier.forward(p.dense.forward(first)))
            }
            (Layer::Onnx(s), x) => s.forward(x),
            (layer, x) => unreachable!(
                "stage input kind was validated before running; {layer:?} got {:?}",
                x.dims()
            ),
        }
    }
}
