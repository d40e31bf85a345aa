//! BERT's parts: token and position embeddings, one encoder layer, the pooler and classifier.

use burn::module::Module;
use burn::nn::transformer::{TransformerEncoderConfig, TransformerEncoderLayer};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Int, Tensor};

use super::Dense;

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

