//! PyO3 glue for the rule scorer; the logic lives in `scoring.rs`.

use std::collections::HashMap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::error::RuleError;

use crate::meaning::{Examples, Meaning, Outcome, RuleVectors};
use crate::scoring;

/// Texts at least this long are scored with the GIL released. A shorter one
/// scores in a few microseconds, less than handing the GIL to another thread
/// and waiting to get it back costs (measured: POST /evaluate throughput
/// rose by a sixth when short actions kept the GIL).
const DETACH_BYTES: usize = 4096;

/// A finding as Python sees it: (rule, polarity, phrase, start, end, negated).
type PyFinding = (Py<PyString>, Py<PyString>, Py<PyString>, usize, usize, bool);

/// A meaning as Python sees it: (rule, outcome, strength, nearest example's
/// index and similarity, nearest counterexample's index and similarity).
type PyMeaning = (
    Py<PyString>,
    &'static str,
    f64,
    Option<(usize, f32)>,
    Option<(usize, f32)>,
);

/// A compiled, immutable rule set.
///
/// Args:
///     rules: ``(name, weight, violations, affirmations)`` for each enabled
///         rule, in a stable order (scores are summed in that order).
///     deny_weight: a net-violated rule at least this heavy denies.
///     examples: ``(examples, counterexamples)`` embeddings for each rule,
///         in the order of ``rules`` (unit vectors, all of one length).
///     threshold: the similarity a nearest example or counterexample must
///         pass to judge; required with ``examples``.
///
/// Raises:
///     RuleError: a weight is not a finite number above 0, a phrase has no
///         words, an embedding is not finite or not of the others' length,
///         or the threshold is not in (0, 1].
#[pyclass(module = "jamey._core", frozen)]
pub struct Scorer {
    inner: scoring::Scorer,
    examples: Option<Examples>,
    // Python strings made once, shared by every finding that names them: a
    // text that matches thousands of phrases costs no string copies.
    names: Vec<Py<PyString>>,
    // Each rule's position, for the guard model's rulings by name.
    positions: HashMap<String, usize>,
    phrases: Vec<Vec<Py<PyString>>>,
    violation: Py<PyString>,
    affirmation: Py<PyString>,
}

#[pymethods]
impl Scorer {
    #[new]
    #[pyo3(signature = (rules, deny_weight, *, examples=None, threshold=None))]
    fn new(
        py: Python<'_>,
        rules: Vec<(String, f64, Vec<String>, Vec<String>)>,
        deny_weight: f64,
        examples: Option<Vec<RuleVectors>>,
        threshold: Option<f64>,
    ) -> PyResult<Self> {
        let examples = match (examples, threshold) {
            (None, None) => None,
            (Some(examples), Some(threshold)) => {
                if examples.len() != rules.len() {
                    return Err(RuleError::new_err(format!(
                        "examples are given for {} rules, not for the {}",
                        examples.len(),
                        rules.len()
                    )));
                }
                let compiled = py.detach(|| Examples::new(examples, threshold));
                Some(compiled.map_err(|e| RuleError::new_err(e.to_string()))?)
            }
            _ => {
                return Err(PyValueError::new_err(
                    "examples and threshold are given together or not at all",
                ));
            }
        };
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
        let positions = specs
            .iter()
            .enumerate()
            .map(|(position, r)| (r.name.clone(), position))
            .collect();
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
            examples,
            names,
            positions,
            phrases,
            violation: intern(scoring::Polarity::Violation.as_str()),
            affirmation: intern(scoring::Polarity::Affirmation.as_str()),
        })
    }

    /// Judge ``text``; returns ``(score, verdict, findings, meanings)``.
    ///
    /// ``deny_weight`` overrides the scorer's own for this text (a stricter
    /// judgement). ``embedding`` is the text's, from the encoder that
    /// embedded the examples; without it (or without examples) the phrases
    /// judge alone and ``meanings`` is empty. ``rulings`` are a guard
    /// model's answers by rule name, ``True`` for violated: they decide the
    /// rules they name over phrases and examples (a violation at full
    /// strength, or no violation left), and are not among ``meanings``. The
    /// GIL is released while scoring a text of 4 KiB or more, so request
    /// threads and the MQTT worker evaluate long texts in parallel.
    ///
    /// Raises:
    ///     ValueError: a bad deny weight or embedding, or a ruling names no
    ///         enabled rule.
    #[pyo3(signature = (text, *, deny_weight=None, embedding=None, rulings=None))]
    fn evaluate(
        &self,
        py: Python<'_>,
        text: &str,
        deny_weight: Option<f64>,
        embedding: Option<Vec<f32>>,
        rulings: Option<HashMap<String, bool>>,
    ) -> PyResult<(f64, &'static str, Vec<PyFinding>, Vec<PyMeaning>)> {
        let deny_weight = match deny_weight {
            Some(weight) if !(weight.is_finite() && weight > 0.0) => {
                return Err(PyValueError::new_err(format!(
                    "deny_weight must be a finite number above 0, not {weight}"
                )));
            }
            Some(weight) => weight,
            None => self.inner.deny_weight(),
        };
        let meanings: Vec<Meaning> = match (&self.examples, embedding) {
            (Some(examples), Some(embedding)) => examples
                .judge(&embedding)
                .map_err(|e| PyValueError::new_err(e.to_string()))?,
            _ => Vec::new(),
        };
        let judged = meanings.len();
        let mut decisive = meanings;
        for (name, violated) in rulings.unwrap_or_default() {
            let Some(&rule) = self.positions.get(&name) else {
                return Err(PyValueError::new_err(format!(
                    "a ruling names {name:?}, which is no enabled rule"
                )));
            };
            decisive.push(Meaning {
                rule,
                example: None,
                counterexample: None,
                outcome: if violated {
                    Outcome::Violated(1.0)
                } else {
                    Outcome::Cleared
                },
            });
        }
        let result = if text.len() >= DETACH_BYTES {
            py.detach(|| self.inner.evaluate_with(text, deny_weight, &decisive))
        } else {
            self.inner.evaluate_with(text, deny_weight, &decisive)
        };
        decisive.truncate(judged);
        let meanings = decisive;
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
        let meanings = meanings
            .into_iter()
            .map(|m| {
                (
                    self.names[m.rule].clone_ref(py),
                    m.outcome.as_str(),
                    m.outcome.strength(),
                    m.example.map(|n| (n.index, n.similarity)),
                    m.counterexample.map(|n| (n.index, n.similarity)),
                )
            })
            .collect();
        Ok((result.score, result.verdict.as_str(), findings, meanings))
    }
}
