//! A sentence encoder: a BERT model (all-MiniLM-L6-v2 and its kin), mean
//! pooling over the tokens, then unit length, as sentence-transformers
//! computes it. No PyO3 here; `py_encoder.rs` is the glue.
//!
//! The weights, the model's configuration and its tokenizer are handed in as
//! bytes: the caller decides where they come from and checks them first.
//! Nothing is downloaded or read from disk here.

use std::fmt;

use crate::bert::{Bert, Sizes};

use candle_core::{DType, Device, Tensor};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams, TruncationStrategy};

/// Why an encoder could not be built or could not encode.
#[derive(Debug)]
pub enum EncoderError {
    /// The model's configuration is not a BERT configuration.
    Config(String),
    /// The weights do not load into that configuration.
    Weights(String),
    /// The tokenizer cannot be read, or fails on a text.
    Tokenizer(String),
    /// The forward pass failed.
    Inference(String),
}

impl fmt::Display for EncoderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "the model configuration is not usable: {e}"),
            Self::Weights(e) => write!(f, "the model weights do not load: {e}"),
            Self::Tokenizer(e) => write!(f, "the tokenizer failed: {e}"),
            Self::Inference(e) => write!(f, "the encoder failed: {e}"),
        }
    }
}

impl std::error::Error for EncoderError {}

fn inference(error: candle_core::Error) -> EncoderError {
    EncoderError::Inference(error.to_string())
}

/// A loaded encoder. Immutable: `encode` takes `&self` and may run from
/// several threads at once.
pub struct Encoder {
    model: Bert,
    tokenizer: Tokenizer,
    pool: rayon::ThreadPool,
    dim: usize,
    max_tokens: usize,
}

impl Encoder {
    /// Build an encoder from safetensors weights, a `config.json` and a
    /// `tokenizer.json`. Texts are cut at `max_tokens` tokens (the model's
    /// own limit, special tokens included); `threads` threads compute.
    pub fn new(
        weights: &[u8],
        config: &str,
        tokenizer: &[u8],
        max_tokens: usize,
        threads: usize,
    ) -> Result<Self, EncoderError> {
        let sizes = Sizes::parse(config)?;
        let dim = sizes.hidden;
        if max_tokens < 2 || max_tokens > sizes.max_positions {
            return Err(EncoderError::Config(format!(
                "max_tokens {max_tokens} is outside 2..={}",
                sizes.max_positions
            )));
        }
        let model = Bert::load(weights, sizes)?;
        let mut tokenizer =
            Tokenizer::from_bytes(tokenizer).map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                ..TruncationParams::default()
            }))
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("jamey-encoder-{i}"))
            .build()
            .map_err(|e| EncoderError::Config(e.to_string()))?;
        Ok(Self {
            model,
            tokenizer,
            pool,
            dim,
            max_tokens,
        })
    }

    /// Length of every embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The most tokens of a text the model sees; the rest is cut.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The tokens the model sees for `text`, special ones included.
    pub fn tokens(&self, text: &str) -> Result<Vec<String>, EncoderError> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_tokens().to_vec())
    }

    /// Unit-length embeddings of `texts`, in order, computed as one batch.
    pub fn encode(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EncoderError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.pool.install(|| self.encode_batch(texts))
    }

    fn encode_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EncoderError> {
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for encoding in &encodings {
            ids.extend_from_slice(encoding.get_ids());
            mask.extend_from_slice(encoding.get_attention_mask());
        }
        let padded = mask.contains(&0);
        let hidden = self
            .model
            .forward(&ids, rows, width, padded.then_some(mask.as_slice()))
            .map_err(inference)?;
        let mask = Tensor::from_vec(mask, (rows, width), &Device::Cpu).map_err(inference)?;
        mean_pooled_unit(&hidden, &mask).map_err(inference)
    }
}

/// The mean of each row's unmasked token vectors, scaled to unit length.
fn mean_pooled_unit(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Vec<Vec<f32>>> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    // Every text has at least its two special tokens, so no count is 0.
    let mean = summed.broadcast_div(&mask.sum(1)?)?;
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
    mean.broadcast_div(&norm.maximum(1e-12)?)?.to_vec2::<f32>()
}
