//! MobileNetV2 at 224×224 with a width multiplier (1.0, 0.75, 0.5): a stem, seventeen inverted
//! residual blocks (one stage each), a 1×1 head and a pooled classifier.

use burn::tensor::Device;

use crate::model::layers::{Act, ConvBn, Dense, InvertedResidual, Layer};
use crate::model::network::{Network, Stage};

use super::make_divisible;

pub fn build(width: f32, device: &Device) -> Network {
    // (expansion, channels, repeats, first stride), from the paper's Table 2.
    const SETTINGS: [(usize, usize, usize, usize); 7] = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    let stem_channels = make_divisible(32.0 * width);
    let last_channels = make_divisible(1280.0 * width.max(1.0));
    let mut stages = vec![Stage::new(
        "stem",
        vec![Layer::Conv(ConvBn::new(3, stem_channels, 3, 2, 1, true, Act::Relu6, device))],
    )];
    let mut c_in = stem_channels;
    let mut index = 1;
    for (expansion, channels, repeats, stride) in SETTINGS {
        let c_out = make_divisible(channels as f32 * width);
        for repeat in 0..repeats {
            let s = if repeat == 0 { stride } else { 1 };
            stages.push(Stage::new(
                format!("block{index}"),
                vec![Layer::InvertedResidual(InvertedResidual::new(c_in, c_out, s, expansion, device))],
            ));
            c_in = c_out;
            index += 1;
        }
    }
    stages.push(Stage::new(
        "head",
        vec![Layer::Conv(ConvBn::new(c_in, last_channels, 1, 1, 1, true, Act::Relu6, device))],
    ));
    stages.push(Stage::new(
        "classifier",
        vec![Layer::global_avg_pool(), Layer::Dense(Dense::new(last_channels, 1000, Act::None, device))],
    ));
    Network::new("mobilenetv2", vec![1, 3, 224, 224], stages)
}
