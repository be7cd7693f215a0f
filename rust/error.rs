//! The one place where Rust errors become Python exceptions.
//!
//! The exception classes are defined once, in `jamey/errors.py`; Rust imports
//! them, so Python code catches the same classes whichever side failed.

use pyo3::PyErr;

use crate::encoder::EncoderError as EncoderFailure;
use crate::memory::IndexError;
use crate::scoring::RuleSetError;

pyo3::import_exception!(jamey.errors, EncoderError);
pyo3::import_exception!(jamey.errors, MemoryIndexError);
pyo3::import_exception!(jamey.errors, RuleError);

impl From<IndexError> for PyErr {
    fn from(error: IndexError) -> PyErr {
        MemoryIndexError::new_err(error.to_string())
    }
}

impl From<RuleSetError> for PyErr {
    fn from(error: RuleSetError) -> PyErr {
        RuleError::new_err(error.to_string())
    }
}

impl From<EncoderFailure> for PyErr {
    fn from(error: EncoderFailure) -> PyErr {
        EncoderError::new_err(error.to_string())
    }
}
