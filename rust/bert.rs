//! A BERT encoder's forward pass (the architecture of all-MiniLM-L6-v2).
//!
//! It computes what Hugging Face's `BertModel` computes, in fewer operations:
//! each layer's query, key and value projections are one matrix product, the
//! attention scale is folded into the query weights, and the padding mask is
//! only added when a batch has padding. The dense layers' products
//! (`dense.rs`, on weights packed once at load), GELU and the softmax
//! (`activations.rs`) are jamey's own; the rest runs on candle's CPU
//! operations. The word embeddings, read a row per token, are kept in half
//! precision: they are half of the model's bytes, and the embeddings it
//! computes stay within 1e-7 of float32's in cosine.

use std::collections::HashMap;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::LayerNorm;

use crate::activations::{gelu, softmax_rows};
use crate::dense::Dense;
use crate::encoder::EncoderError;

/// The sizes of a BERT model, from its `config.json`.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub hidden: usize,
    pub max_positions: usize,
    vocabulary: usize,
    types: usize,
    heads: usize,
    layers: usize,
    intermediate: usize,
    layer_norm_eps: f64,
}

fn config_error(message: impl Into<String>) -> EncoderError {
    EncoderError::Config(message.into())
}

impl Sizes {
    /// Read the sizes from a `config.json`, refusing what this pass does not
    /// compute (another activation, relative positions).
    pub fn parse(config: &str) -> Result<Self, EncoderError> {
        let value: serde_json::Value =
            serde_json::from_str(config).map_err(|e| config_error(e.to_string()))?;
        let size = |key: &str| {
            value
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n > 0)
                .ok_or_else(|| config_error(format!("{key} is missing or not a positive integer")))
        };
        let text = |key: &str, default: &str| {
            value
                .get(key)
                .map_or(Some(default.to_owned()), |v| v.as_str().map(str::to_owned))
                .ok_or_else(|| config_error(format!("{key} is not a string")))
        };
        let sizes = Self {
            hidden: size("hidden_size")?,
            heads: size("num_attention_heads")?,
            layers: size("num_hidden_layers")?,
            intermediate: size("intermediate_size")?,
            max_positions: size("max_position_embeddings")?,
            vocabulary: size("vocab_size")?,
            types: size("type_vocab_size")?,
            layer_norm_eps: value
                .get("layer_norm_eps")
                .map_or(Some(1e-12), serde_json::Value::as_f64)
                .ok_or_else(|| config_error("layer_norm_eps is not a number"))?,
        };
        if sizes.hidden % sizes.heads != 0 {
            return Err(config_error(
                "hidden_size is not a multiple of num_attention_heads",
            ));
        }
        if text("hidden_act", "gelu")? != "gelu" {
            return Err(config_error("hidden_act is not gelu"));
        }
        if text("position_embedding_type", "absolute")? != "absolute" {
            return Err(config_error("position_embedding_type is not absolute"));
        }
        Ok(sizes)
    }
}

/// `dense` applied to `x`, `(rows, inputs)`, then `activation` in place.
fn apply(dense: &Dense, x: &Tensor, activation: fn(&mut [f32])) -> candle_core::Result<Tensor> {
    let rows = x.dim(0)?;
    let mut out = dense.forward(&x.flatten_all()?.to_vec1::<f32>()?);
    activation(&mut out);
    Tensor::from_vec(out, (rows, dense.outputs()), x.device())
}

/// No activation.
fn identity(_: &mut [f32]) {}

struct Layer {
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    up: Dense,
    down: Dense,
    output_norm: LayerNorm,
}

/// The loaded model: embeddings and layers, immutable once built.
pub struct Bert {
    sizes: Sizes,
    words: Tensor,
    positions: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

struct Weights {
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    fn take(&mut self, name: &str) -> Result<Tensor, EncoderError> {
        self.tensors
            .remove(name)
            .ok_or_else(|| EncoderError::Weights(format!("{name} is missing")))
    }

    fn shaped(&mut self, name: &str, dims: &[usize]) -> Result<Tensor, EncoderError> {
        let tensor = self.take(name)?;
        if tensor.dims() != dims {
            return Err(EncoderError::Weights(format!(
                "{name} has shape {:?}, not {dims:?}",
                tensor.dims()
            )));
        }
        tensor.to_dtype(DType::F32).map_err(weights)
    }

    /// A tensor's values, row-major, after the same check as `shaped`.
    fn values(&mut self, name: &str, dims: &[usize]) -> Result<Vec<f32>, EncoderError> {
        self.shaped(name, dims)?
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(weights)
    }

    /// A linear layer's weight, `(outputs, inputs)`, and bias.
    fn linear(
        &mut self,
        name: &str,
        inputs: usize,
        outputs: usize,
    ) -> Result<(Vec<f32>, Vec<f32>), EncoderError> {
        Ok((
            self.values(&format!("{name}.weight"), &[outputs, inputs])?,
            self.values(&format!("{name}.bias"), &[outputs])?,
        ))
    }

    fn dense(&mut self, name: &str, inputs: usize, outputs: usize) -> Result<Dense, EncoderError> {
        let (weight, bias) = self.linear(name, inputs, outputs)?;
        Ok(Dense::new(&weight, &bias, inputs, outputs))
    }

    fn norm(&mut self, name: &str, sizes: &Sizes) -> Result<LayerNorm, EncoderError> {
        Ok(LayerNorm::new(
            self.shaped(&format!("{name}.weight"), &[sizes.hidden])?,
            self.shaped(&format!("{name}.bias"), &[sizes.hidden])?,
            sizes.layer_norm_eps,
        ))
    }
}

fn weights(error: candle_core::Error) -> EncoderError {
    EncoderError::Weights(error.to_string())
}

impl Bert {
    /// Load the model from safetensors bytes with the sizes of its config.
    pub fn load(safetensors: &[u8], sizes: Sizes) -> Result<Self, EncoderError> {
        let tensors =
            candle_core::safetensors::load_buffer(safetensors, &Device::Cpu).map_err(weights)?;
        let mut w = Weights { tensors };
        let hidden = sizes.hidden;
        let words = w
            .shaped(
                "embeddings.word_embeddings.weight",
                &[sizes.vocabulary, hidden],
            )?
            .to_dtype(DType::F16)
            .map_err(weights)?;
        let positions = w.shaped(
            "embeddings.position_embeddings.weight",
            &[sizes.max_positions, hidden],
        )?;
        // Every text is one segment: its token type embedding is the first,
        // added to each position's once here.
        let first_type = w
            .shaped(
                "embeddings.token_type_embeddings.weight",
                &[sizes.types, hidden],
            )?
            .get(0)
            .map_err(weights)?;
        let positions = positions.broadcast_add(&first_type).map_err(weights)?;
        let embedding_norm = w.norm("embeddings.LayerNorm", &sizes)?;
        let layers = (0..sizes.layers)
            .map(|index| Layer::load(&mut w, &format!("encoder.layer.{index}"), &sizes))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            sizes,
            words,
            positions,
            embedding_norm,
            layers,
        })
    }

    /// The last layer's token vectors, `(rows, width, hidden)`, of `ids`
    /// (`rows` texts padded to `width` tokens); `mask` is 1 for a real token,
    /// `None` when no text is padded.
    pub fn forward(
        &self,
        ids: &[u32],
        rows: usize,
        width: usize,
        mask: Option<&[u32]>,
    ) -> candle_core::Result<Tensor> {
        let device = Device::Cpu;
        let hidden = self.sizes.hidden;
        let ids = Tensor::from_slice(ids, rows * width, &device)?;
        let words = self.words.index_select(&ids, 0)?.to_dtype(DType::F32)?;
        let words = words.reshape((rows, width, hidden))?;
        let positions = self.positions.narrow(0, 0, width)?;
        let mut x = self
            .embedding_norm
            .forward(&words.broadcast_add(&positions)?)?
            .reshape((rows * width, hidden))?;
        // Padding gets a large negative score before the softmax, so it
        // weighs nothing; (rows, 1, 1, width) broadcasts over heads and rows.
        let padding = match mask {
            None => None,
            Some(mask) => {
                let mask = Tensor::from_slice(mask, (rows, 1, 1, width), &device)?;
                Some(((mask.to_dtype(DType::F32)? - 1.0)? * f64::from(f32::MAX))?)
            }
        };
        for layer in &self.layers {
            x = layer.forward(&x, rows, width, &self.sizes, padding.as_ref())?;
        }
        x.reshape((rows, width, hidden))
    }
}

impl Layer {
    fn load(w: &mut Weights, name: &str, sizes: &Sizes) -> Result<Self, EncoderError> {
        let hidden = sizes.hidden;
        let head_size = hidden / sizes.heads;
        let (mut weight, mut bias) =
            w.linear(&format!("{name}.attention.self.query"), hidden, hidden)?;
        // Scores are divided by the square root of a head's size: folded into
        // the query projection, which is linear.
        let scale = 1.0 / (head_size as f32).sqrt();
        weight.iter_mut().chain(&mut bias).for_each(|v| *v *= scale);
        for part in ["key", "value"] {
            let (w_part, b_part) =
                w.linear(&format!("{name}.attention.self.{part}"), hidden, hidden)?;
            weight.extend(w_part);
            bias.extend(b_part);
        }
        let qkv = Dense::new(&weight, &bias, hidden, 3 * hidden);
        let inner = sizes.intermediate;
        Ok(Self {
            qkv,
            attention_out: w.dense(&format!("{name}.attention.output.dense"), hidden, hidden)?,
            attention_norm: w.norm(&format!("{name}.attention.output.LayerNorm"), sizes)?,
            up: w.dense(&format!("{name}.intermediate.dense"), hidden, inner)?,
            down: w.dense(&format!("{name}.output.dense"), inner, hidden)?,
            output_norm: w.norm(&format!("{name}.output.LayerNorm"), sizes)?,
        })
    }

    /// One layer over `x`, `(rows * width, hidden)`.
    fn forward(
        &self,
        x: &Tensor,
        rows: usize,
        width: usize,
        sizes: &Sizes,
        padding: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (hidden, heads) = (sizes.hidden, sizes.heads);
        let head_size = hidden / heads;
        // (3, rows, heads, width, head_size): query, key and value by head.
        let qkv = apply(&self.qkv, x, identity)?
            .reshape((rows, width, 3, heads, head_size))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let (query, key, value) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let mut scores = query.matmul(&key.t()?)?;
        if let Some(padding) = padding {
            scores = scores.broadcast_add(padding)?;
        }
        let mut attention = scores.flatten_all()?.to_vec1::<f32>()?;
        softmax_rows(&mut attention, width);
        let attention = Tensor::from_vec(attention, scores.shape(), scores.device())?;
        let context = attention
            .matmul(&value)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((rows * width, hidden))?;
        let x = self
            .attention_norm
            .forward(&(apply(&self.attention_out, &context, identity)? + x)?)?;
        let inner = apply(&self.up, &x, gelu)?;
        self.output_norm
            .forward(&(apply(&self.down, &inner, identity)? + &x)?)
    }
}
