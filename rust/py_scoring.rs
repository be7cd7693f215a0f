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
    /// ``deny_weight`` overrides the scorer's own for this text (a stricter
    /// judgement). The GIL is released while scoring a text of 4 KiB or
    /// more, so request threads and the MQTT worker evaluate long texts in
    /// parallel.
    #[pyo3(signature = (text, *, deny_weight=None))]
    fn evaluate(
        &self,
        py: Python<'_>,
        text: &str,
        deny_weight: Option<f64>,
    ) -> PyResult<(f64, &'static str, Vec<PyFinding>)> {
        let deny_weight = match deny_weight {
            Some(weight) if !(weight.is_finite() && weight > 0.0) => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "deny_weight must be a finite number above 0, not {weight}"
                )));
            }
            Some(weight) => weight,
            None => self.inner.deny_weight(),
        };
        let result = if text.len() >= DETACH_BYTES {
            py.detach(|| self.inner.evaluate_with(text, deny_weight))
        } else {
            self.inner.evaluate_with(text, deny_weight)
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
        Ok((result.score, result.verdict.as_str(), findings))
    }
}
