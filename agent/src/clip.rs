//! Gradient clipping by the global norm, as PyTorch's `clip_grad_norm_` (which CleanRL's PPO
//! uses): every gradient is scaled by one factor so that their joint L2 norm is at most the
//! limit. burn's `GradientClippingConfig::Norm` clips each tensor on its own, which changes the
//! direction of the update whenever one layer's gradient is large.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// Sums the squares of every float gradient of a module.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    sum: f64,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let squares: Vec<f32> = g.powi_scalar(2).sum().into_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default();
            self.sum += squares.iter().map(|&x| x as f64).sum::<f64>();
        }
    }
}

/// Multiplies every float gradient of a module by one factor.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f32,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g * self.factor);
        }
    }
}

/// The global L2 norm of `module`'s gradients.
pub fn global_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    let mut norm = SquaredNorm { grads, sum: 0.0 };
    module.visit(&mut norm);
    norm.sum.sqrt()
}

/// Scales `grads` so that their global norm is at most `max_norm`; returns the norm before.
pub fn clip_global_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let norm = global_norm(module, grads);
    // the 1e-6 is PyTorch's, and keeps a zero gradient from dividing by zero
    let factor = max_norm / (norm + 1e-6);
    if factor < 1.0 {
        module.visit(&mut Scale { grads, factor: factor as f32 });
    }
    norm
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, Tensor};

    use super::*;

    #[test]
    fn clipping_scales_all_gradients_by_one_factor() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let linear = LinearConfig::new(4, 3).init(&device);
        let x = Tensor::<2>::ones([2, 4], &device) * 50.0;
        let loss = linear.forward(x).sum();
        let mut grads = GradientsParams::from_grads(loss.backward(), &linear);
        let part = |g: &GradientsParams, id| {
            let t: Tensor<2> = g.get(id).unwrap();
            t.powi_scalar(2).sum().into_data().convert::<f32>().try_to_vec::<f32>().unwrap()[0].sqrt() as f64
        };
        let weight_before = part(&grads, linear.weight.id);
        let before = clip_global_norm(&linear, &mut grads, 0.5);
        assert!(before > 10.0, "the test needs a gradient over the limit, got {before}");
        let after = global_norm(&linear, &grads);
        assert!((after - 0.5).abs() < 1e-4, "global norm after clipping: {after}");
        // the weight's share of the norm is unchanged: the direction is kept
        let weight_after = part(&grads, linear.weight.id);
        assert!((weight_after / after - weight_before / before).abs() < 1e-4);
        // under the limit nothing changes
        let again = clip_global_norm(&linear, &mut grads, 10.0);
        assert!((global_norm(&linear, &grads) - again).abs() < 1e-6);
    }
}
