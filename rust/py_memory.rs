//! PyO3 glue for the memory index; the logic lives in `memory.rs`.

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::memory;

/// A memory for the index: ``(id, layer, entity, timestamp_ms, content)``.
type PyMemory = (String, String, Option<String>, i64, String);

/// The one tantivy index of every memory layer.
///
/// Args:
///     path: the index directory (created if missing).
///     writer_bytes: the writer's memory budget (at least 15 MB).
///
/// Raises:
///     MemoryIndexError: the index cannot be opened (corrupt, locked).
#[pyclass(module = "jamey._core", frozen)]
pub struct MemoryIndex {
    inner: memory::MemoryIndex,
}

#[pymethods]
impl MemoryIndex {
    #[new]
    fn new(py: Python<'_>, path: PathBuf, writer_bytes: usize) -> PyResult<Self> {
        let inner = py.detach(|| memory::MemoryIndex::open(&path, writer_bytes))?;
        Ok(MemoryIndex { inner })
    }

    /// Add memories (never already in the index); visible after the next commit.
    fn add(&self, py: Python<'_>, memories: Vec<PyMemory>) -> PyResult<()> {
        let memories: Vec<memory::IndexedMemory> = memories
            .into_iter()
            .map(
                |(id, layer, entity, timestamp, content)| memory::IndexedMemory {
                    id,
                    layer,
                    entity,
                    timestamp,
                    content,
                },
            )
            .collect();
        Ok(py.detach(|| self.inner.add(&memories))?)
    }

    /// Remove memories by id; effective at the next commit.
    fn delete(&self, py: Python<'_>, ids: Vec<String>) -> PyResult<()> {
        Ok(py.detach(|| self.inner.delete(&ids))?)
    }

    /// Remove every document; effective at the next commit.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        Ok(py.detach(|| self.inner.clear())?)
    }

    /// Make the changes durable and searchable, recording ``sequence``.
    fn commit(&self, py: Python<'_>, sequence: u64) -> PyResult<()> {
        Ok(py.detach(|| self.inner.commit(sequence))?)
    }

    /// The journal sequence of the last commit (0 for a new index).
    #[getter]
    fn committed_sequence(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(py.detach(|| self.inner.committed_sequence())?)
    }

    /// Files whose checksum does not match (a truncated or damaged index).
    fn damaged_files(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        Ok(py.detach(|| self.inner.damaged_files())?)
    }

    /// Documents searchable now.
    #[getter]
    fn doc_count(&self) -> u64 {
        self.inner.doc_count()
    }

    /// Best matches as ``(id, score)``, best first; bad syntax never raises.
    #[pyo3(signature = (query, *, all_words=false, layer=None, entity=None, since=None, until=None, limit=10))]
    #[allow(clippy::too_many_arguments)]
    fn search(
        &self,
        py: Python<'_>,
        query: String,
        all_words: bool,
        layer: Option<String>,
        entity: Option<String>,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
    ) -> PyResult<Vec<(String, f32)>> {
        let search = memory::Search {
            query,
            all_words,
            layer,
            entity,
            since,
            until,
            limit,
        };
        Ok(py.detach(|| self.inner.search(&search))?)
    }
}
