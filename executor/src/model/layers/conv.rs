//! Convolution with optional batch norm and activation, and its output geometry and FLOPs.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use super::Act;
use crate::model::int8::QConv;

/// Convolution, optional batch norm, activation.
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: Option<BatchNorm>,
    #[module(skip)]
    pub act: Act,
    #[module(skip)]
    pub geometry: ConvGeometry,
    /// The int8 form (batch norm and activation folded in) that runs instead, in int8 variants.
    #[module(skip)]
    pub int8: Option<std::sync::Arc<QConv>>,
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
    pub(super) fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        let spatial = |x: usize| (x + 2 * self.padding - self.kernel) / self.stride + 1;
        vec![input[0], self.c_out, spatial(input[2]), spatial(input[3])]
    }

    pub(super) fn flops(&self, output: &[usize]) -> u64 {
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
            int8: None,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if let Some(q) = &self.int8 {
            return q.forward(x);
        }
        let x = self.conv.forward(x);
        let x = match &self.bn {
            Some(bn) => bn.forward(x),
            None => x,
        };
        self.act.apply(x)
    }
}

