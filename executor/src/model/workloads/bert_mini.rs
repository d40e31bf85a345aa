//! A BERT-mini-like encoder (4 layers, hidden 256, 4 heads, feed-forward 1024) over 128 tokens:
//! embeddings, one stage per encoder layer, and a pooled two-class head (SST-2).

use burn::tensor::Device;

use crate::model::layers::{Act, Dense, EncoderBlock, Layer, Pooler, TokenEmbedding};
use crate::model::network::{Network, Stage};

pub const VOCAB: usize = 30_522;
pub const SEQUENCE: usize = 128;
const MAX_POSITIONS: usize = 512;
const HIDDEN: usize = 256;
const HEADS: usize = 4;
const FEED_FORWARD: usize = 1024;
const LAYERS: usize = 4;

pub fn build(device: &Device) -> Network {
    let mut stages = vec![Stage::new(
        "embeddings",
        vec![Layer::Embed(TokenEmbedding::new(VOCAB, MAX_POSITIONS, HIDDEN, device))],
    )];
    for layer in 0..LAYERS {
        stages.push(Stage::new(
            format!("encoder.{layer}"),
            vec![Layer::Encoder(EncoderBlock::new(HIDDEN, HEADS, FEED_FORWARD, device))],
        ));
    }
    stages.push(Stage::new(
        "pooler",
        vec![Layer::Pooler(Pooler {
            dense: Dense::new(HIDDEN, HIDDEN, Act::Tanh, device),
            classifier: Dense::new(HIDDEN, 2, Act::None, device),
        })],
    ));
    Network::new("bert-mini", vec![1, SEQUENCE], stages)
}
