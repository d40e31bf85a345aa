//! BERT's parts: token and position embeddings, one encoder layer, the pooler and classifier.

use burn::module::Module;
use burn::nn::transformer::{TransformerEncoderConfig, TransformerEncoderLayer};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Int, Tensor};

use burn::nn::attention::{MhaInput, MultiHeadAttention};
use burn::tensor::activation::softmax;

use super::Dense;
use crate::model::int8::QDense;

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
    /// The int8 token table that is looked up instead, in int8 variants.
    #[module(skip)]
    pub int8: Option<std::sync::Arc<crate::model::int8::QEmbedding>>,
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
            int8: None,
        }
    }

    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [batch, len] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..len as i64, &device)
            .reshape([1, len])
            .expand([batch, len]);
        let tokens = match &self.int8 {
            Some(table) => table.forward(ids),
            None => self.tokens.forward(ids),
        };
        self.norm.forward(tokens + self.positions.forward(positions))
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
    /// In int8 variants, the feed-forward's two dense layers (two thirds of the layer's
    /// multiply-adds) in int8; attention stays f32 with f32 weights.
    #[module(skip)]
    pub int8_ff: Option<std::sync::Arc<(QDense, QDense)>>,
}

impl EncoderBlock {
    pub fn new(hidden: usize, heads: usize, ff: usize, device: &Device) -> Self {
        let config = TransformerEncoderConfig::new(hidden, ff, heads, 1).with_dropout(0.0);
        Self {
            layer: TransformerEncoderLayer::new(&config, device),
            hidden,
            ff,
            int8_ff: None,
        }
    }

    /// Width of the attention's heads together: the hidden size, or less once heads are pruned.
    pub fn attention_width(&self) -> usize {
        self.layer.mha.n_heads * self.layer.mha.d_k
    }

    /// burn's `TransformerEncoderLayer::forward` in inference (dropout off), with the
    /// feed-forward's dense layers in int8 when the variant has them, and attention over fewer
    /// heads when they were pruned (burn's own attention assumes all heads fill the hidden size).
    pub fn forward(&self, input: Tensor<3>) -> Tensor<3> {
        let heads_pruned = self.attention_width() != self.hidden;
        if self.int8_ff.is_none() && !heads_pruned {
            return self.layer.forward(input, None, None);
        }
        let l = &self.layer;
        let attention_in = if l.norm_first { l.norm_2.forward(input.clone()) } else { input.clone() };
        let attended = if heads_pruned {
            pruned_attention(&l.mha, attention_in)
        } else {
            l.mha.forward(MhaInput::self_attn(attention_in)).context
        };
        let mut x = input + attended;
        let ff_in = if l.norm_first {
            l.norm_1.forward(x.clone())
        } else {
            x = l.norm_1.forward(x);
            x.clone()
        };
        let ff_out = match &self.int8_ff {
            Some(ff) => {
                let [batch, len, hidden] = ff_in.dims();
                let inner = l.pwff.activation.forward(ff.0.forward(ff_in.reshape([batch * len, hidden])));
                ff.1.forward(inner).reshape([batch, len, hidden])
            }
            None => l.pwff.forward(ff_in),
        };
        let x = x + ff_out;
        if l.norm_first {
            x
        } else {
            l.norm_2.forward(x)
        }
    }
}

/// Self-attention over however many heads `mha` keeps (each still `d_k` wide), projected back
/// to the hidden size: burn's arithmetic without its assumption that the heads fill it.
fn pruned_attention(mha: &MultiHeadAttention, x: Tensor<3>) -> Tensor<3> {
    let [batch, len, _] = x.dims();
    let heads = |linear: &burn::nn::Linear| {
        linear.forward(x.clone()).reshape([batch, len, mha.n_heads, mha.d_k]).swap_dims(1, 2)
    };
    let (query, key, value) = (heads(&mha.query), heads(&mha.key), heads(&mha.value));
    let scores = query.matmul(key.transpose()).div_scalar((mha.d_k as f32).sqrt());
    let context = softmax(scores, 3).matmul(value).swap_dims(1, 2).reshape([batch, len, mha.n_heads * mha.d_k]);
    mha.output.forward(context)
}

/// BERT's pooler and classifier: the first token's state through a tanh dense layer, then the
/// task head.
#[derive(Module, Debug)]
pub struct Pooler {
    pub dense: Dense,
    pub classifier: Dense,
}

