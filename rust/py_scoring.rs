//! PyO3 glue for the rule scorer; the logic lives in `scoring.rs`.

use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::scoring;

/// Texts at least this long are scored with the GIL released. A shorter one
/// scores in a few microseconds, less than handing the GIL to another thread
/// and waiting to get it back costs (measured: POST /evaluate throughput
/// rose by a sixth when short actions kept the GIL).
const DETACH_BYTES: usize = 4096;

/// A finding as Python sees it: (rule, polarity, phrase, start, end, negated).
type PyFinding = (Py<PyString>, Py<PyString>, Py<PyString>, usize, usize, bool);

/// A compiled, immutable rule set.
///
/// Args:
///     rules: ``(name, weight, violations, affirmations)`` for each enabled
///         rule, in a stable order (scores are summed in that order).
///     deny_weight: a net-violated rule at least this heavy denies.
///
/// Raises:
///     RuleError: a weight is not a finite number above 0, or a phrase has
///         no words.
#[pyclass(module = "jamey._core", frozen)]
pub struct Scorer {
    inner: scoring::Scorer,
    // Python strings made once, shared by every finding that names them: a
    // text that matches thousands of phrases costs no string copies.
    names: Vec<Py<PyString>>,
    phrases: Vec<Vec<Py<PyString>>>,
    violation: Py<PyString>,
    affirmation: Py<PyString>,
}

#[pymethods]
impl Scorer {
    #[new]
    fn new(
        py: Python<'_>,
        rules: Vec<(String, f64, Vec<String>, Vec<String>)>,
        deny_weight: f64,
    ) -> PyResult<Self> {
        let specs: Vec<scoring::RuleSpec> = rules
            .into_iter()
            .map(
                |(name, weight, violations, affirmations)| scoring::RuleSpec {
                    name,
                    weight,
                    violations,
                    affirmations,
                },
            )
            .collect();
        let inner = py.detach(|| scoring::Scorer::new(&specs, deny_weight))?;
        let intern = |text: &str| PyString::new(py, text).unbind();
        let names = specs.iter().map(|r| intern(&r.name)).collect();
        let phrases = specs
            .iter()
            .map(|r| {
                r.violations
                    .iter()
                    .chain(&r.affirmations)
                    .map(|p| intern(p))
                    .collect()
            })
            .collect();
        Ok(Scorer {
            inner,
            names,
            phrases,
            violation: intern(scoring::Polarity::Violation.as_str()),
            affirmation: intern(scoring::Polarity::Affirmation.as_str()),
        })
    }

    /// Judge ``text``; returns ``(score, verdict, findings)``.
    ///
    /// The GIL is released while scoring a text of 4 KiB or more, so request
    /// threads and the MQTT worker evaluate long texts in parallel.
    fn evaluate(&self, py: Python<'_>, text: &str) -> (f64, &'static str, Vec<PyFinding>) {
        let result = if text.len() >= DETACH_BYTES {
            py.detach(|| self.inner.evaluate(text))
        } else {
            self.inner.evaluate(text)
        };
        let findings = result
            .findings
            .into_iter()
            .map(|f| {
                let polarity = match f.polarity {
                    scoring::Polarity::Violation => &self.violation,
                    scoring::Polarity::Affirmation => &self.affirmation,
                };
                (
                    self.names[f.rule].clone_ref(py),
                    polarity.clone_ref(py),
                    self.phrases[f.rule][f.phrase].clone_ref(py),
                    f.start,
                    f.end,
                    f.negated,
                )
            })
            .collect();
        (result.score, result.verdict.as_str(), findings)
    }
}
