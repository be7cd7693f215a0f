//! `jamey._core`: the hot paths of Jamey, behind a small typed surface.
//!
//! Only the module declaration lives here; each capability keeps its pure
//! logic in its own file and its PyO3 glue in a `py_*.rs` beside it.

use pyo3::prelude::*;

mod activations;
mod bert;
mod dense;
mod encoder;
mod error;
mod meaning;
mod memory;
mod py_encoder;
mod py_memory;
mod py_scoring;
mod scoring;
mod version;
mod words;

/// The native core of Jamey. See `jamey/_core.pyi` for the typed surface.
#[pymodule(gil_used = false)]
pub mod _core {
    use pyo3::prelude::*;

    #[pymodule_export]
    use crate::py_encoder::Encoder;
    #[pymodule_export]
    use crate::py_memory::MemoryIndex;
    #[pymodule_export]
    use crate::py_scoring::Scorer;

    /// The version of the native extension.
    ///
    /// The daemon compares it with the Python package's version at start
    /// and in `/health/detailed`, so a half-upgraded install (a new wheel's
    /// Python code beside an old extension) is reported, not guessed at.
    #[pyfunction]
    fn version() -> &'static str {
        crate::version::VERSION
    }

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", crate::version::VERSION)
    }
}
