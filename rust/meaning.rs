//! Judgement by meaning: a text against the examples of each rule.
//!
//! A rule's examples are texts that violate it, its counterexamples texts
//! that only look as if they did; all are unit-length sentence embeddings,
//! as is the text. For each rule the nearest example and the nearest
//! counterexample (cosine similarity, a dot product of unit vectors) decide:
//!
//! - **violated** when the nearest example is above the threshold and nearer
//!   than every counterexample; its strength is how far it stands above both,
//!   as a share of the room left up to 1;
//! - **cleared** when the nearest counterexample is at or above the
//!   threshold and at least as near as every example: the rule's phrase
//!   violations are overruled ("kill a process" is not harm);
//! - **unsure** otherwise (nothing the rule knows is near): its phrases
//!   decide alone.

use std::fmt;

/// What the examples of one rule say about a text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Violated, with a strength in (0, 1].
    Violated(f64),
    Cleared,
    Unsure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Violated(_) => "violated",
            Outcome::Cleared => "cleared",
            Outcome::Unsure => "unsure",
        }
    }

    /// How far the outcome moves the rule's net (negative is a violation).
    pub fn strength(self) -> f64 {
        match self {
            Outcome::Violated(strength) => strength,
            Outcome::Cleared | Outcome::Unsure => 0.0,
        }
    }
}

/// The nearest vector of one list: its position and its similarity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nearest {
    pub index: usize,
    pub similarity: f32,
}

/// One rule's judgement of a text by meaning.
#[derive(Debug, Clone, PartialEq)]
pub struct Meaning {
    pub rule: usize,
    pub example: Option<Nearest>,
    pub counterexample: Option<Nearest>,
    pub outcome: Outcome,
}

/// Why examples cannot be compiled, or a text's embedding not judged.
#[derive(Debug, Clone, PartialEq)]
pub enum MeaningError {
    /// A vector's length differs from the others'.
    Dimension { expected: usize, found: usize },
    /// A vector holds a NaN or an infinity.
    NotFinite,
    /// The threshold is not a number in (0, 1].
    Threshold(f64),
}

impl fmt::Display for MeaningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dimension { expected, found } => write!(
                f,
                "an embedding has {found} values where the others have {expected}"
            ),
            Self::NotFinite => write!(f, "an embedding holds a value that is not finite"),
            Self::Threshold(value) => {
                write!(
                    f,
                    "the example threshold must be above 0 and at most 1, not {value}"
                )
            }
        }
    }
}

impl std::error::Error for MeaningError {}

/// One rule's `(examples, counterexamples)`, each a list of embeddings.
pub type RuleVectors = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// Every rule's examples and counterexamples, each list one row-major matrix.
#[derive(Debug)]
pub struct Examples {
    dim: usize,
    threshold: f32,
    rules: Vec<(Vec<f32>, Vec<f32>)>,
}

impl Examples {
    /// Compile `(examples, counterexamples)` for each rule, in rule order.
    pub fn new(rules: Vec<RuleVectors>, threshold: f64) -> Result<Examples, MeaningError> {
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(MeaningError::Threshold(threshold));
        }
        let dim = rules
            .iter()
            .flat_map(|(e, c)| e.iter().chain(c))
            .map(Vec::len)
            .next()
            .unwrap_or(0);
        let mut compiled = Vec::with_capacity(rules.len());
        for (examples, counterexamples) in rules {
            compiled.push((flatten(examples, dim)?, flatten(counterexamples, dim)?));
        }
        Ok(Examples {
            dim,
            threshold: threshold as f32,
            rules: compiled,
        })
    }

    /// Whether any rule has an example or a counterexample.
    pub fn is_empty(&self) -> bool {
        self.rules.iter().all(|(e, c)| e.is_empty() && c.is_empty())
    }

    /// The judgement of each rule that has examples or counterexamples.
    pub fn judge(&self, embedding: &[f32]) -> Result<Vec<Meaning>, MeaningError> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        check(embedding, self.dim)?;
        let mut meanings = Vec::new();
        for (rule, (examples, counterexamples)) in self.rules.iter().enumerate() {
            if examples.is_empty() && counterexamples.is_empty() {
                continue;
            }
            let example = nearest(examples, embedding);
            let counterexample = nearest(counterexamples, embedding);
            meanings.push(Meaning {
                rule,
                example,
                counterexample,
                outcome: self.outcome(example, counterexample),
            });
        }
        Ok(meanings)
    }

    fn outcome(&self, example: Option<Nearest>, counterexample: Option<Nearest>) -> Outcome {
        let near = |n: Option<Nearest>| n.map_or(f32::NEG_INFINITY, |n| n.similarity);
        let (example, counter) = (near(example), near(counterexample));
        let bar = counter.max(self.threshold);
        if example > bar {
            let room = 1.0 - f64::from(bar);
            let strength = if room > 0.0 {
                (f64::from(example - bar) / room).min(1.0)
            } else {
                1.0
            };
            Outcome::Violated(strength)
        } else if counter >= self.threshold && counter >= example {
            Outcome::Cleared
        } else {
            Outcome::Unsure
        }
    }
}

fn check(vector: &[f32], dim: usize) -> Result<(), MeaningError> {
    if vector.len() != dim {
        return Err(MeaningError::Dimension {
            expected: dim,
            found: vector.len(),
        });
    }
    if !vector.iter().all(|v| v.is_finite()) {
        return Err(MeaningError::NotFinite);
    }
    Ok(())
}

fn flatten(vectors: Vec<Vec<f32>>, dim: usize) -> Result<Vec<f32>, MeaningError> {
    let mut matrix = Vec::with_capacity(vectors.len() * dim);
    for vector in vectors {
        check(&vector, dim)?;
        matrix.extend(vector);
    }
    Ok(matrix)
}

/// The row of `matrix` most similar to `query`; ties keep the first.
fn nearest(matrix: &[f32], query: &[f32]) -> Option<Nearest> {
    let mut best: Option<Nearest> = None;
    for (index, row) in matrix.chunks_exact(query.len()).enumerate() {
        let similarity: f32 = row.iter().zip(query).map(|(a, b)| a * b).sum();
        if best.is_none_or(|b| similarity > b.similarity) {
            best = Some(Nearest { index, similarity });
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(x: f32, y: f32) -> Vec<f32> {
        let norm = (x * x + y * y).sqrt();
        vec![x / norm, y / norm]
    }

    fn examples() -> Examples {
        Examples::new(
            vec![
                (vec![unit(1.0, 0.0)], vec![unit(0.0, 1.0)]),
                (vec![], vec![]),
            ],
            0.5,
        )
        .unwrap()
    }

    #[test]
    fn the_nearer_list_decides_above_the_threshold() {
        let meanings = examples().judge(&unit(1.0, 0.2)).unwrap();
        assert_eq!(meanings.len(), 1, "a rule without examples has no opinion");
        let Outcome::Violated(strength) = meanings[0].outcome else {
            panic!("{:?}", meanings[0]);
        };
        assert!(strength > 0.0 && strength <= 1.0);
        assert_eq!(meanings[0].example.unwrap().index, 0);
        let cleared = examples().judge(&unit(0.2, 1.0)).unwrap();
        assert_eq!(cleared[0].outcome, Outcome::Cleared);
    }

    #[test]
    fn nothing_near_is_unsure() {
        let meanings = examples().judge(&unit(-1.0, -1.0)).unwrap();
        assert_eq!(meanings[0].outcome, Outcome::Unsure);
    }

    #[test]
    fn strength_grows_with_the_margin() {
        let close = examples().judge(&unit(1.0, 0.9)).unwrap()[0].outcome;
        let far = examples().judge(&unit(1.0, 0.1)).unwrap()[0].outcome;
        assert!(close.strength() < far.strength(), "{close:?} {far:?}");
    }

    #[test]
    fn bad_vectors_and_thresholds_are_refused() {
        assert_eq!(
            Examples::new(vec![(vec![vec![1.0, 0.0], vec![1.0]], vec![])], 0.5).unwrap_err(),
            MeaningError::Dimension {
                expected: 2,
                found: 1
            }
        );
        assert_eq!(
            Examples::new(vec![(vec![vec![f32::NAN, 0.0]], vec![])], 0.5).unwrap_err(),
            MeaningError::NotFinite
        );
        assert!(Examples::new(vec![], 0.0).is_err());
        assert!(Examples::new(vec![], f64::NAN).is_err());
        assert!(examples().judge(&[1.0, 0.0, 0.0]).is_err());
    }
}
