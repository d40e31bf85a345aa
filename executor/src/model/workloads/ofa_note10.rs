//! The Once-for-All MobileNetV3 sub-network that OFA's tutorial searched for a Samsung Note10
//! under 25 ms (`tutorial/ofa.ipynb` in mit-han-lab/once-for-all: "3x3_Conv_O24,
//! (3x3_MBConv1_RELU_O24, Identity), ((O32, E3.0, K5), None), …", 192×192 input, 24.73 ms on the
//! Note10 by its latency table, 76.9% ImageNet top-1 when the tutorial evaluated it). Its blocks
//! are exactly the ones the Note10 latency table (`../shared/data/profiles/ofa-note10`) measured,
//! so the phone's stage latencies come from that table rather than from a guess.

use burn::tensor::Device;

use super::make_divisible;
use crate::model::layers::{Act, BlockShape, ConvBn, Dense, InvertedResidual, Layer};
use crate::model::network::{Network, Stage};

/// Input side in pixels.
pub const RESOLUTION: usize = 192;

/// (output channels, expand ratio, kernel, stride, squeeze-and-excite, activation) per block
/// after the first, as the tutorial printed them; stride 2 opens stages 1, 2, 3 and 5.
const BLOCKS: [(usize, f32, usize, usize, bool, Act); 14] = [
    (32, 3.0, 5, 2, false, Act::Relu),
    (32, 3.0, 3, 1, false, Act::Relu),
    (48, 4.0, 5, 2, true, Act::Relu),
    (48, 4.0, 3, 1, true, Act::Relu),
    (96, 6.0, 7, 2, false, Act::HSwish),
    (96, 3.0, 7, 1, false, Act::HSwish),
    (96, 4.0, 3, 1, false, Act::HSwish),
    (136, 4.0, 5, 1, true, Act::HSwish),
    (136, 4.0, 5, 1, true, Act::HSwish),
    (136, 4.0, 7, 1, true, Act::HSwish),
    (136, 3.0, 3, 1, true, Act::HSwish),
    (192, 6.0, 3, 2, true, Act::HSwish),
    (192, 6.0, 3, 1, true, Act::HSwish),
    (192, 6.0, 5, 1, true, Act::HSwish),
];

pub fn build(device: &Device) -> Network {
    let mut stages = vec![
        Stage::new("stem", vec![Layer::Conv(ConvBn::new(3, 24, 3, 2, 1, true, Act::HSwish, device))]),
        Stage::new(
            "block0",
            vec![Layer::InvertedResidual(InvertedResidual::with_shape(
                BlockShape { c_in: 24, mid: 24, c_out: 24, kernel: 3, stride: 1, se: false, act: Act::Relu },
                None,
                device,
            ))],
        ),
    ];
    let mut c_in = 24;
    for (index, &(c_out, expand, kernel, stride, se, act)) in BLOCKS.iter().enumerate() {
        let mid = make_divisible(c_in as f32 * expand);
        let shape = BlockShape { c_in, mid, c_out, kernel, stride, se, act };
        let squeeze = make_divisible(mid as f32 / 4.0);
        stages.push(Stage::new(
            format!("block{}", index + 1),
            vec![Layer::InvertedResidual(InvertedResidual::with_shape(shape, Some(squeeze), device))],
        ));
        c_in = c_out;
    }
    stages.push(Stage::new("final_expand", vec![Layer::Conv(ConvBn::new(c_in, 1152, 1, 1, 1, true, Act::HSwish, device))]));
    stages.push(Stage::new(
        "classifier",
        vec![
            Layer::global_avg_pool(),
            Layer::Dense(Dense::new(1152, 1536, Act::HSwish, device)),
            Layer::Dense(Dense::new(1536, 1000, Act::None, device)),
        ],
    ));
    Network::new("ofa-note10", vec![1, 3, RESOLUTION, RESOLUTION], stages)
}
