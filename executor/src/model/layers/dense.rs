//! Fully connected layer with activation.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::Act;
use crate::model::int8::QDense;

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
    /// The int8 form that runs instead, in int8 variants.
    #[module(skip)]
    pub int8: Option<std::sync::Arc<QDense>>,
}

impl Dense {
    pub fn new(d_in: usize, d_out: usize, act: Act, device: &Device) -> Self {
        Self {
            linear: LinearConfig::new(d_in, d_out).init(device),
            act,
            d_in,
            d_out,
            int8: None,
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match &self.int8 {
            Some(q) => q.forward(x),
            None => self.act.apply(self.linear.forward(x)),
        }
    }
}

