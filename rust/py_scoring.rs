//! PyO3 glue for the rule scorer; the logic lives in `scoring.rs`.

use pyo3::prelude::*;

use crate::scoring;

/// A finding as Python sees it: (rule, polarity, phrase, start, end, negated).
type PyFinding = (String, &'static str, String, usize, usize, bool);

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
    names: Vec<String>,
    phrases: Vec<Vec<String>>,
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
        let names = specs.iter().map(|r| r.name.clone()).collect();
        let phrases = specs
            .into_iter()
            .map(|r| r.violations.into_iter().chain(r.affirmations).collect())
            .collect();
        Ok(Scorer {
            inner,
            names,
            phrases,
        })
    }

    /// Judge ``text``; returns ``(score, verdict, findings)``.
    ///
    /// The GIL is released while scoring, so request threads and the MQTT
    /// worker evaluate in parallel.
    fn evaluate(&self, py: Python<'_>, text: &str) -> (f64, &'static str, Vec<PyFinding>) {
        let result = py.detach(|| self.inner.evaluate(text));
        let findings = result
            .findings
            .into_iter()
            .map(|f| {
                (
                    self.names[f.rule].clone(),
                    f.polarity.as_str(),
                    self.phrases[f.rule][f.phrase].clone(),
                    f.start,
                    f.end,
                    f.negated,
                )
            })
            .collect();
        (result.score, result.verdict.as_str(), findings)
    }

    /// How many rules were compiled.
    #[getter]
    fn rule_count(&self) -> usize {
        self.inner.rule_count()
    }
}
