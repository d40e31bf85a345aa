//! ResNet-18 at 224×224: a strided stem, eight basic blocks (each a stage, so cuts never fall
//! inside a skip connection) and a pooled classifier.

use burn::tensor::Device;

use crate::model::layers::{Act, BasicBlock, ConvBn, Dense, Layer};
use crate::model::network::{Network, Stage};

pub fn build(device: &Device) -> Network {
    let mut stages = vec![Stage::new(
        "stem",
        vec![
            Layer::Conv(ConvBn::new(3, 64, 7, 2, 1, true, Act::Relu, device)),
            Layer::max_pool(3, 2, 1),
        ],
    )];
    let mut c_in = 64;
    for (group, c_out) in [64, 128, 256, 512].into_iter().enumerate() {
        for block in 0..2 {
            let stride = if group > 0 && block == 0 { 2 } else { 1 };
            stages.push(Stage::new(
                format!("layer{}.{}", group + 1, block),
                vec![Layer::Basic(BasicBlock::new(c_in, c_out, stride, device))],
            ));
            c_in = c_out;
        }
    }
    stages.push(Stage::new(
        "classifier",
        vec![Layer::global_avg_pool(), Layer::Dense(Dense::new(512, 1000, Act::None, device))],
    ));
    Network::new("resnet18", vec![1, 3, 224, 224], stages)
}
