//! VGG-16 (configuration D) at 224×224: thirteen 3×3 convolutions and three dense layers. Its
//! early activations are far larger than its input, the classic case where a late split wins.

use burn::tensor::Device;

use crate::model::layers::{Act, ConvBn, Dense, Layer};
use crate::model::network::{Network, Stage};

pub fn build(device: &Device) -> Network {
    // (name, c_in, c_out, pool after)
    const CONVS: [(&str, usize, usize, bool); 13] = [
        ("conv1_1", 3, 64, false),
        ("conv1_2", 64, 64, true),
        ("conv2_1", 64, 128, false),
        ("conv2_2", 128, 128, true),
        ("conv3_1", 128, 256, false),
        ("conv3_2", 256, 256, false),
        ("conv3_3", 256, 256, true),
        ("conv4_1", 256, 512, false),
        ("conv4_2", 512, 512, false),
        ("conv4_3", 512, 512, true),
        ("conv5_1", 512, 512, false),
        ("conv5_2", 512, 512, false),
        ("conv5_3", 512, 512, true),
    ];
    let mut stages: Vec<Stage> = CONVS
        .iter()
        .map(|&(name, c_in, c_out, pool)| {
            let mut layers = vec![Layer::Conv(ConvBn::new(c_in, c_out, 3, 1, 1, false, Act::Relu, device))];
            if pool {
                layers.push(Layer::max_pool(2, 2, 0));
            }
            Stage::new(name, layers)
        })
        .collect();
    stages.push(Stage::new("fc6", vec![Layer::Dense(Dense::new(512 * 7 * 7, 4096, Act::Relu, device))]));
    stages.push(Stage::new("fc7", vec![Layer::Dense(Dense::new(4096, 4096, Act::Relu, device))]));
    stages.push(Stage::new("fc8", vec![Layer::Dense(Dense::new(4096, 1000, Act::None, device))]));
    Network::new("vgg16", vec![1, 3, 224, 224], stages)
}
