//! PyO3 glue for the sentence encoder; the logic lives in `encoder.rs`.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::encoder;

/// A sentence encoder (BERT, mean pooling, unit length).
///
/// Args:
///     weights: the model's safetensors file.
///     config: the model's ``config.json``.
///     tokenizer: the model's ``tokenizer.json``.
///     max_tokens: texts are cut at this many tokens.
///     threads: threads that compute an encoding.
///
/// Raises:
///     EncoderError: the configuration, weights or tokenizer do not load.
#[pyclass(module = "jamey._core", frozen)]
pub struct Encoder {
    inner: encoder::Encoder,
}

#[pymethods]
impl Encoder {
    #[new]
    #[pyo3(signature = (weights, config, tokenizer, max_tokens = 256, threads = 1))]
    fn new(
        py: Python<'_>,
        weights: &Bound<'_, PyBytes>,
        config: &str,
        tokenizer: &Bound<'_, PyBytes>,
        max_tokens: usize,
        threads: usize,
    ) -> PyResult<Self> {
        // Borrowed, not copied: the bytes objects outlive the call, and the
        // tensors are built from them in place.
        let (weights, tokenizer) = (weights.as_bytes(), tokenizer.as_bytes());
        let inner =
            py.detach(|| encoder::Encoder::new(weights, config, tokenizer, max_tokens, threads))?;
        Ok(Self { inner })
    }

    /// Length of every embedding.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// The most tokens of a text the model sees; the rest is cut.
    #[getter]
    fn max_tokens(&self) -> usize {
        self.inner.max_tokens()
    }

    /// The tokens the model sees for ``text``, special ones included.
    fn tokens(&self, py: Python<'_>, text: &str) -> PyResult<Vec<String>> {
        let text = text.to_owned();
        Ok(py.detach(move || self.inner.tokens(&text))?)
    }

    /// Unit-length embeddings of ``texts``, in order, computed as one batch
    /// with the GIL released.
    fn encode(&self, py: Python<'_>, texts: Vec<String>) -> PyResult<Vec<Vec<f32>>> {
        Ok(py.detach(move || self.inner.encode(&texts))?)
    }
}
