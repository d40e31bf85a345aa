//! Residual blocks, kept whole so that no cut falls inside a skip connection: MobileNet's
//! inverted residual (with optional squeeze-and-excite) and ResNet's basic block.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::{Act, ConvBn};

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

    pub(super) fn flops(&self, input: &[usize]) -> u64 {
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

    pub(super) fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        let hidden = self.depthwise.geometry.output_dims(input);
        self.project.geometry.output_dims(&hidden)
    }

    pub(super) fn flops(&self, input: &[usize]) -> u64 {
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

    /// The block's output: the second convolution's (a pruned block is narrower only inside).
    pub(super) fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        self.conv2.geometry.output_dims(&self.conv1.geometry.output_dims(input))
    }

    pub(super) fn flops(&self, input: &[usize]) -> u64 {
        let inner = self.conv1.geometry.output_dims(input);
        let out = self.conv2.geometry.output_dims(&inner);
        let ds = match &self.downsample {
            Some(d) => d.geometry.flops(&d.geometry.output_dims(input)),
            None => 0,
        };
        self.conv1.geometry.flops(&inner) + self.conv2.geometry.flops(&out) + ds
    }
}

