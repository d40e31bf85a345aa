//! The building blocks that stages are made of. Each block is a burn `Module`, knows the shape it
//! produces from the shape it receives (so that a cut's expected input is known before anything
//! runs), and counts its own multiply-adds. Residual blocks stay whole inside one layer, so no
//! cut can fall inside a skip connection.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::transformer::{TransformerEncoderConfig, TransformerEncoderLayer};
use burn::nn::{
    BatchNorm, BatchNormConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig, PaddingConfig2d,
};
use burn::tensor::activation::{relu, tanh};
use burn::tensor::{Device, Int, Tensor};

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

/// Convolution, optional batch norm, activation.
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: Option<BatchNorm>,
    #[module(skip)]
    pub act: Act,
    #[module(skip)]
    pub geometry: ConvGeometry,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ConvGeometry {
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
}

impl ConvGeometry {
    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        let spatial = |x: usize| (x + 2 * self.padding - self.kernel) / self.stride + 1;
        vec![input[0], self.c_out, spatial(input[2]), spatial(input[3])]
    }

    fn flops(&self, output: &[usize]) -> u64 {
        2 * output.iter().product::<usize>() as u64
            * (self.c_in / self.groups * self.kernel * self.kernel) as u64
    }
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        batch_norm: bool,
        act: Act,
        device: &Device,
    ) -> Self {
        let padding = kernel / 2;
        let conv = Conv2dConfig::new([c_in, c_out], [kernel, kernel])
            .with_stride([stride, stride])
            .with_groups(groups)
            .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
            .with_bias(!batch_norm)
            .init(device);
        let bn = batch_norm.then(|| BatchNormConfig::new(c_out).init(device));
        Self {
            conv,
            bn,
            act,
            geometry: ConvGeometry {
                c_in,
                c_out,
                kernel,
                stride,
                padding,
                groups,
            },
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.conv.forward(x);
        let x = match &self.bn {
            Some(bn) => bn.forward(x),
            None => x,
        };
        self.act.apply(x)
    }
}

/// Squeeze-and-excite as MobileNetV3 uses it: global average, 1×1 reduce (ReLU), 1×1 expand,
/// hard-sigmoid gate on every channel.
#[derive(Module, Debug)]
pub struct SqueezeExcite {
    pub reduce: Conv2d,
    pub expand: Conv2d,
    #[module(skip)]
    pub channels: usize,
    #[module(skip)]
    pub squeezed: usize,
}

impl SqueezeExcite {
    pub fn new(channels: usize, squeezed: usize, device: &Device) -> Self {
        Self {
            reduce: Conv2dConfig::new([channels, squeezed], [1, 1]).init(device),
            expand: Conv2dConfig::new([squeezed, channels], [1, 1]).init(device),
            channels,
            squeezed,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let pooled = x.clone().mean_dim(2).mean_dim(3);
        let gate = Act::HSigmoid.apply(self.expand.forward(relu(self.reduce.forward(pooled))));
        x * gate
    }

    fn flops(&self, input: &[usize]) -> u64 {
        (input.iter().product::<usize>() * 2 + 4 * input[0] * self.channels * self.squeezed) as u64
    }
}

/// The inverted residual of MobileNetV2 and V3: expand (1×1), depthwise (k×k), optional
/// squeeze-and-excite, project (1×1), with a skip when the shape is kept.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    pub expand: Option<ConvBn>,
    pub depthwise: ConvBn,
    pub se: Option<SqueezeExcite>,
    pub project: ConvBn,
    #[module(skip)]
    pub residual: bool,
}

/// The shape of a MobileNetV3 block: `mid` channels after expansion (equal to `c_in`: no
/// expansion), depthwise `kernel`, whether it has squeeze-and-excite and which activation.
#[derive(Clone, Copy, Debug)]
pub struct BlockShape {
    pub c_in: usize,
    pub mid: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub se: bool,
    pub act: Act,
}

impl InvertedResidual {
    /// MobileNetV2's block: 3×3, ReLU6, no squeeze-and-excite.
    pub fn new(c_in: usize, c_out: usize, stride: usize, expansion: usize, device: &Device) -> Self {
        let shape = BlockShape { c_in, mid: c_in * expansion, c_out, kernel: 3, stride, se: false, act: Act::Relu6 };
        Self::with_shape(shape, None, device)
    }

    /// A block of any shape; `se_channels`: the squeeze width when `shape.se`.
    pub fn with_shape(shape: BlockShape, se_channels: Option<usize>, device: &Device) -> Self {
        let BlockShape { c_in, mid, c_out, kernel, stride, se, act } = shape;
        Self {
            expand: (mid != c_in).then(|| ConvBn::new(c_in, mid, 1, 1, 1, true, act, device)),
            depthwise: ConvBn::new(mid, mid, kernel, stride, mid, true, act, device),
            se: se.then(|| SqueezeExcite::new(mid, se_channels.unwrap_or((mid / 4).max(8)), device)),
            project: ConvBn::new(mid, c_out, 1, 1, 1, true, Act::None, device),
            residual: stride == 1 && c_in == c_out,
        }
    }

    /// This block's shape, as latency tables key it.
    pub fn shape(&self) -> BlockShape {
        let d = self.depthwise.geometry;
        BlockShape {
            c_in: self.expand.as_ref().map_or(d.c_in, |e| e.geometry.c_in),
            mid: d.c_in,
            c_out: self.project.geometry.c_out,
            kernel: d.kernel,
            stride: d.stride,
            se: self.se.is_some(),
            act: self.depthwise.act,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = match &self.expand {
            Some(expand) => expand.forward(x.clone()),
            None => x.clone(),
        };
        let h = self.depthwise.forward(h);
        let h = match &self.se {
            Some(se) => se.forward(h),
            None => h,
        };
        let h = self.project.forward(h);
        if self.residual {
            h + x
        } else {
            h
        }
    }

    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        let hidden = self.depthwise.geometry.output_dims(input);
        self.project.geometry.output_dims(&hidden)
    }

    fn flops(&self, input: &[usize]) -> u64 {
        let expand = match &self.expand {
            Some(e) => e.geometry.flops(&e.geometry.output_dims(input)),
            None => 0,
        };
        let mut hidden_in = input.to_vec();
        hidden_in[1] = self.depthwise.geometry.c_in;
        let hidden_out = self.depthwise.geometry.output_dims(&hidden_in);
        expand
            + self.depthwise.geometry.flops(&hidden_out)
            + self.se.as_ref().map_or(0, |se| se.flops(&hidden_out))
            + self.project.geometry.flops(&self.project.geometry.output_dims(&hidden_out))
    }
}

/// ResNet's basic block: two 3×3 convolutions and a skip (projected when the shape changes).
#[derive(Module, Debug)]
pub struct BasicBlock {
    pub conv1: ConvBn,
    pub conv2: ConvBn,
    pub downsample: Option<ConvBn>,
}

impl BasicBlock {
    pub fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv1: ConvBn::new(c_in, c_out, 3, stride, 1, true, Act::Relu, device),
            conv2: ConvBn::new(c_out, c_out, 3, 1, 1, true, Act::None, device),
            downsample: (stride != 1 || c_in != c_out)
                .then(|| ConvBn::new(c_in, c_out, 1, stride, 1, true, Act::None, device)),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let skip = match &self.downsample {
            Some(d) => d.forward(x.clone()),
            None => x.clone(),
        };
        relu(self.conv2.forward(self.conv1.forward(x)) + skip)
    }

    fn flops(&self, input: &[usize]) -> u64 {
        let out = self.conv1.geometry.output_dims(input);
        let ds = match &self.downsample {
            Some(d) => d.geometry.flops(&out),
            None => 0,
        };
        self.conv1.geometry.flops(&out) + self.conv2.geometry.flops(&out) + ds
    }
}

/// Fully connected layer with activation. A 4-D input is flattened first, as a classifier
/// head does after its last convolution.
#[derive(Module, Debug)]
pub struct Dense {
    pub linear: Linear,
    #[module(skip)]
    pub act: Act,
    #[module(skip)]
    pub d_in: usize,
    #[module(skip)]
    pub d_out: usize,
}

impl Dense {
    pub fn new(d_in: usize, d_out: usize, act: Act, device: &Device) -> Self {
        Self {
            linear: LinearConfig::new(d_in, d_out).init(device),
            act,
            d_in,
            d_out,
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.act.apply(self.linear.forward(x))
    }
}

/// BERT's input embeddings: token plus learned position, then layer norm.
#[derive(Module, Debug)]
pub struct TokenEmbedding {
    pub tokens: Embedding,
    pub positions: Embedding,
    pub norm: LayerNorm,
    #[module(skip)]
    pub vocab: usize,
    #[module(skip)]
    pub hidden: usize,
    #[module(skip)]
    pub max_len: usize,
}

impl TokenEmbedding {
    pub fn new(vocab: usize, max_len: usize, hidden: usize, device: &Device) -> Self {
        Self {
            tokens: EmbeddingConfig::new(vocab, hidden).init(device),
            positions: EmbeddingConfig::new(max_len, hidden).init(device),
            norm: LayerNormConfig::new(hidden).init(device),
            vocab,
            hidden,
            max_len,
        }
    }

    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [batch, len] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..len as i64, &device)
            .reshape([1, len])
            .expand([batch, len]);
        self.norm
            .forward(self.tokens.forward(ids) + self.positions.forward(positions))
    }
}

/// One transformer encoder layer (self-attention and feed-forward, each with its residual).
#[derive(Module, Debug)]
pub struct EncoderBlock {
    pub layer: TransformerEncoderLayer,
    #[module(skip)]
    pub hidden: usize,
    #[module(skip)]
    pub ff: usize,
}

impl EncoderBlock {
    pub fn new(hidden: usize, heads: usize, ff: usize, device: &Device) -> Self {
        let config = TransformerEncoderConfig::new(hidden, ff, heads, 1).with_dropout(0.0);
        Self {
            layer: TransformerEncoderLayer::new(&config, device),
            hidden,
            ff,
        }
    }
}

/// BERT's pooler and classifier: the first token's state through a tanh dense layer, then the
/// task head.
#[derive(Module, Debug)]
pub struct Pooler {
    pub dense: Dense,
    pub classifier: Dense,
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
            Layer::Basic(b) => b.conv1.geometry.output_dims(input),
            Layer::Embed(e) => vec![input[0], input[1], e.hidden],
            Layer::Encoder(_) => input.to_vec(),
            Layer::Pooler(p) => vec![input[0], p.classifier.d_out],
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
                2 * n * l * (4 * d * d + 2 * d * f) + 4 * n * l * l * d
            }
            Layer::Pooler(p) => {
                2 * (input[0] * (p.dense.d_in * p.dense.d_out + p.classifier.d_in * p.classifier.d_out)) as u64
            }
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
            (Layer::Encoder(e), Activation::Sequence(x)) => {
                Activation::Sequence(e.layer.forward(x, None, None))
            }
            (Layer::Pooler(p), Activation::Sequence(x)) => {
                let [batch, _, hidden] = x.dims();
                let first = x.narrow(1, 0, 1).reshape([batch, hidden]);
                Activation::Features(p.classifier.forward(p.dense.forward(first)))
            }
            (layer, x) => unreachable!(
                "stage input kind was validated before running; {layer:?} got {:?}",
                x.dims()
            ),
        }
    }
}
