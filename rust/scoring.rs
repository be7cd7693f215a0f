//! The conscience's hot path: judge a text against weighted rules.
//!
//! Text and phrases are normalised the same way (NFKC, case folding, word
//! tokens, English stemming) and phrases are matched as runs of stems, so
//! "harming" matches the phrase "harm" and "harmony" does not. A negator in
//! the three tokens before a match, within the same clause, flips it: "I
//! will not hurt them" affirms the rule that "hurt" violates.
//!
//! All phrases of all rules live in one trie keyed by stem ids, and the text
//! is walked once: the cost depends on the text, not on the number of rules.
//! The Python oracle in `tests/conscience_oracle.py` implements the same
//! algorithm step by step; keep the two in agreement.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::RwLock;

use rust_stemmers::{Algorithm, Stemmer};

use crate::meaning::{Meaning, Outcome};
use unicode_general_category::{get_general_category, GeneralCategory};
use unicode_normalization::UnicodeNormalization;

/// How many tokens before a match a negator may stand and still flip it.
pub const NEGATION_WINDOW: usize = 3;

/// Words that flip the polarity of a phrase that follows them closely.
/// Any token ending in "n't" ("don't", "won't") is a negator too.
const NEGATORS: &[&str] = &[
    "not",
    "no",
    "never",
    "without",
    "nor",
    "neither",
    "none",
    "nobody",
    "nothing",
    "nowhere",
    "cannot",
    "n't",
    "refuse",
    "refuses",
    "refused",
    "refusing",
    "avoid",
    "avoids",
    "avoided",
    "avoiding",
    "prevent",
    "prevents",
    "prevented",
    "preventing",
    "stop",
    "stops",
    "stopped",
    "stopping",
    "against",
];

const ROOT: u32 = 0;

/// Words remembered per scorer (normalised and stemmed once, not per text).
/// Bounded, because texts come from anyone; words longer than
/// `CACHED_WORD_BYTES` are not remembered.
const CACHE_WORDS: usize = 65_536;
const CACHED_WORD_BYTES: usize = 48;

/// A rule as the store hands it over: only enabled rules are compiled.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub name: String,
    pub weight: f64,
    pub violations: Vec<String>,
    pub affirmations: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polarity {
    Violation,
    Affirmation,
}

impl Polarity {
    pub fn as_str(self) -> &'static str {
        match self {
            Polarity::Violation => "violation",
            Polarity::Affirmation => "affirmation",
        }
    }

    fn flipped(self) -> Polarity {
        match self {
            Polarity::Violation => Polarity::Affirmation,
            Polarity::Affirmation => Polarity::Violation,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Review,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Review => "review",
            Verdict::Deny => "deny",
        }
    }
}

/// One phrase found in the text: which rule, which phrase, where.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub rule: usize,
    /// The polarity after negation.
    pub polarity: Polarity,
    /// The phrase as the rule wrote it.
    pub phrase: usize,
    /// Character (code point) offsets into the original text.
    pub start: usize,
    pub end: usize,
    pub negated: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub score: f64,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
}

/// Why a rule set cannot be compiled.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleSetError {
    Weight { rule: String },
    EmptyPhrase { rule: String, phrase: String },
}

impl fmt::Display for RuleSetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleSetError::Weight { rule } => {
                write!(f, "rule {rule}: weight must be a finite number above 0")
            }
            RuleSetError::EmptyPhrase { rule, phrase } => {
                write!(f, "rule {rule}: phrase {phrase:?} has no words")
            }
        }
    }
}

/// A token of text: its place in the original, its stem, its role.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub stem: String,
    pub start: usize,
    pub end: usize,
    /// Clauses are numbered; negation does not cross them.
    pub clause: u32,
    pub negator: bool,
}

fn is_word_char(c: char) -> bool {
    use GeneralCategory::*;
    if c.is_ascii() {
        return c.is_ascii_alphanumeric();
    }
    matches!(
        get_general_category(c),
        UppercaseLetter
            | LowercaseLetter
            | TitlecaseLetter
            | ModifierLetter
            | OtherLetter
            | NonspacingMark
            | SpacingMark
            | EnclosingMark
            | DecimalNumber
            | LetterNumber
            | OtherNumber
    )
}

fn is_apostrophe(c: char) -> bool {
    c == '\'' || c == '\u{2019}'
}

/// A sentence end or clause punctuation: "No worries, take care" does not
/// negate "take care".
fn ends_clause(c: char) -> bool {
    matches!(
        c,
        '.' | '!' | '?' | ';' | ',' | ':' | '(' | ')' | '\u{2013}' | '\u{2014}'
    )
}

/// The Snowball English stem, except that "-ate" forms keep their "ate":
/// the stemmer reduces "candidate" to "candid" and "fabricate" to "fabric",
/// which would make a word of one rule a phrase of another. "fabricated"
/// and "fabrication" still stem to "fabricate".
pub fn stem<'a>(stemmer: &Stemmer, normalized: &'a str) -> Cow<'a, str> {
    let stem = stemmer.stem(normalized);
    match normalized.strip_prefix(stem.as_ref()) {
        Some(rest) if rest.starts_with("at") => Cow::Owned(format!("{stem}ate")),
        _ => stem,
    }
}

/// NFKC and full case folding, with the typographic apostrophe made plain.
pub fn normalize(word: &str) -> Cow<'_, str> {
    if word.is_ascii() {
        return if word.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(word.to_ascii_lowercase())
        } else {
            Cow::Borrowed(word)
        };
    }
    let plain: String = word
        .chars()
        .map(|c| if c == '\u{2019}' { '\'' } else { c })
        .collect();
    let composed: String = plain.nfkc().collect();
    Cow::Owned(caseless::default_case_fold_str(&composed))
}

fn is_negator(normalized: &str) -> bool {
    normalized.ends_with("n't") || NEGATORS.contains(&normalized)
}

/// A word of a text, before normalisation.
struct Word<'a> {
    raw: &'a str,
    /// Character (code point) offsets into the text.
    start: usize,
    end: usize,
    clause: u32,
}

/// Call `visit` for every word of `text`, in order.
///
/// A word is a run of letters, marks and numbers; an apostrophe between two
/// such characters belongs to the word ("don't" is one token).
fn for_each_word<'a>(text: &'a str, mut visit: impl FnMut(Word<'a>)) {
    let mut chars = text.char_indices().peekable();
    let mut position = 0usize;
    let mut clause = 0u32;
    while let Some((first_byte, c)) = chars.next() {
        let start = position;
        position += 1;
        if !is_word_char(c) {
            if ends_clause(c) {
                clause += 1;
            }
            continue;
        }
        let mut end_byte = first_byte + c.len_utf8();
        while let Some(&(byte, next)) = chars.peek() {
            let after = byte + next.len_utf8();
            let joins =
                is_apostrophe(next) && text[after..].chars().next().is_some_and(is_word_char);
            if !(is_word_char(next) || joins) {
                break;
            }
            chars.next();
            position += 1;
            end_byte = after;
        }
        visit(Word {
            raw: &text[first_byte..end_byte],
            start,
            end: position,
            clause,
        });
    }
}

/// Split text into word tokens with character offsets and stems.
pub fn tokenize(text: &str, stemmer: &Stemmer) -> Vec<Token> {
    let mut tokens = Vec::new();
    for_each_word(text, |word| {
        let normalized = normalize(word.raw);
        tokens.push(Token {
            stem: stem(stemmer, &normalized).into_owned(),
            start: word.start,
            end: word.end,
            clause: word.clause,
            negator: is_negator(&normalized),
        });
    });
    tokens
}

/// FxHash (as in rustc): fast for the small keys of the compiled trie.
///
/// Not keyed, so only for maps whose keys come from the rules; anything
/// keyed by arbitrary input text uses the standard, randomised hasher.
#[derive(Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// What a word means to the rules: its stem's id (if any phrase uses the
/// stem) and whether it is a negator.
type WordFacts = (Option<u32>, bool);

/// A token of the text being judged: the stem's id, if any rule uses it.
struct Scanned {
    id: Option<u32>,
    start: usize,
    end: usize,
    clause: u32,
    negator: bool,
}

#[derive(Debug, Clone)]
struct Terminal {
    rule: usize,
    phrase: usize,
    polarity: Polarity,
}

#[derive(Debug)]
struct CompiledRule {
    weight: f64,
}

/// An immutable, compiled rule set. Changing rules means building a new one.
pub struct Scorer {
    rules: Vec<CompiledRule>,
    deny_weight: f64,
    stems: FxMap<String, u32>,
    edges: FxMap<(u32, u32), u32>,
    terminals: FxMap<u32, Vec<Terminal>>,
    stemmer: Stemmer,
    /// Raw word -> (stem id, negator). Only a cache: the result of a word
    /// depends on the compiled rules alone, so sharing it between threads
    /// changes no outcome. Keyed by input text, so it keeps std's
    /// randomised hasher.
    words: RwLock<HashMap<Box<str>, WordFacts>>,
}

impl fmt::Debug for Scorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scorer")
            .field("rules", &self.rules.len())
            .field("stems", &self.stems.len())
            .field("nodes", &(self.edges.len() + 1))
            .finish()
    }
}

impl Scorer {
    /// Compile rules into one trie of stem sequences.
    ///
    /// A rule's phrases are numbered violations first, then affirmations.
    pub fn new(rules: &[RuleSpec], deny_weight: f64) -> Result<Scorer, RuleSetError> {
        let stemmer = Stemmer::create(Algorithm::English);
        let mut scorer = Scorer {
            rules: Vec::with_capacity(rules.len()),
            deny_weight,
            stems: FxMap::default(),
            edges: FxMap::default(),
            terminals: FxMap::default(),
            stemmer,
            words: RwLock::new(HashMap::new()),
        };
        for (index, rule) in rules.iter().enumerate() {
            if !(rule.weight.is_finite() && rule.weight > 0.0) {
                return Err(RuleSetError::Weight {
                    rule: rule.name.clone(),
                });
            }
            scorer.rules.push(CompiledRule {
                weight: rule.weight,
            });
            let phrases = rule
                .violations
                .iter()
                .map(|p| (p, Polarity::Violation))
                .chain(rule.affirmations.iter().map(|p| (p, Polarity::Affirmation)));
            for (phrase_index, (phrase, polarity)) in phrases.enumerate() {
                scorer.insert(&rule.name, index, phrase_index, phrase, polarity)?;
            }
        }
        Ok(scorer)
    }

    fn insert(
        &mut self,
        rule_name: &str,
        rule: usize,
        phrase: usize,
        text: &str,
        polarity: Polarity,
    ) -> Result<(), RuleSetError> {
        let tokens = tokenize(text, &self.stemmer);
        if tokens.is_empty() {
            return Err(RuleSetError::EmptyPhrase {
                rule: rule_name.to_owned(),
                phrase: text.to_owned(),
            });
        }
        let mut node = ROOT;
        for token in tokens {
            let next_stem = self.stems.len() as u32;
            let stem = *self.stems.entry(token.stem).or_insert(next_stem);
            let next_node = self.edges.len() as u32 + 1;
            node = *self.edges.entry((node, stem)).or_insert(next_node);
        }
        let terminals = self.terminals.entry(node).or_default();
        // "truth" and "truthful" are one stem: the first phrase stands for both.
        if !terminals
            .iter()
            .any(|t| t.rule == rule && t.polarity == polarity)
        {
            terminals.push(Terminal {
                rule,
                phrase,
                polarity,
            });
        }
        Ok(())
    }

    /// A net-violated rule at least this heavy denies.
    pub fn deny_weight(&self) -> f64 {
        self.deny_weight
    }

    /// Judge a text with the scorer's own deny weight.
    #[cfg(test)]
    pub fn evaluate(&self, text: &str) -> Evaluation {
        self.evaluate_with(text, self.deny_weight, &[])
    }

    /// Judge a text: every phrase found, each rule's net, the verdict. The
    /// deny weight may differ from the scorer's own (stricter for someone
    /// trusted less); the findings and the score do not depend on it.
    /// `meanings` are what the rules' examples say about the text (see
    /// `meaning.rs`); a rule they say nothing about is judged by its phrases.
    pub fn evaluate_with(&self, text: &str, deny_weight: f64, meanings: &[Meaning]) -> Evaluation {
        let tokens = self.scan(text);
        let mut findings = Vec::new();
        for start in 0..tokens.len() {
            let mut node = ROOT;
            for end in start..tokens.len() {
                let Some(next) = tokens[end].id.and_then(|id| self.edges.get(&(node, id))) else {
                    break;
                };
                node = *next;
                if let Some(terminals) = self.terminals.get(&node) {
                    let negated = is_negated(&tokens, start);
                    for terminal in terminals {
                        findings.push(Finding {
                            rule: terminal.rule,
                            polarity: if negated {
                                terminal.polarity.flipped()
                            } else {
                                terminal.polarity
                            },
                            phrase: terminal.phrase,
                            start: tokens[start].start,
                            end: tokens[end].end,
                            negated,
                        });
                    }
                }
            }
        }
        self.judge(longest_only(findings), deny_weight, meanings)
    }

    /// Tokens of `text` with their stem ids. Normalising and stemming are
    /// most of the cost, and natural text repeats its words: each distinct
    /// word is worked out once per text, and common ones once per scorer.
    fn scan(&self, text: &str) -> Vec<Scanned> {
        let mut seen: HashMap<&str, WordFacts> = HashMap::new();
        let mut fresh: Vec<(&str, WordFacts)> = Vec::new();
        let mut tokens = Vec::new();
        {
            let cache = self.words.read().ok();
            for_each_word(text, |word| {
                let known = if let Some(&known) = seen.get(word.raw) {
                    known
                } else {
                    let cached = cache.as_ref().and_then(|c| c.get(word.raw).copied());
                    let known = cached.unwrap_or_else(|| self.lookup(word.raw));
                    if cached.is_none() && word.raw.len() <= CACHED_WORD_BYTES {
                        fresh.push((word.raw, known));
                    }
                    seen.insert(word.raw, known);
                    known
                };
                tokens.push(Scanned {
                    id: known.0,
                    start: word.start,
                    end: word.end,
                    clause: word.clause,
                    negator: known.1,
                });
            });
        }
        self.remember(fresh);
        tokens
    }

    fn lookup(&self, raw: &str) -> WordFacts {
        let normalized = normalize(raw);
        let stem = stem(&self.stemmer, &normalized);
        (
            self.stems.get(stem.as_ref()).copied(),
            is_negator(&normalized),
        )
    }

    fn remember(&self, fresh: Vec<(&str, WordFacts)>) {
        if fresh.is_empty() {
            return;
        }
        if let Ok(mut cache) = self.words.write() {
            for (word, known) in fresh {
                if cache.len() >= CACHE_WORDS {
                    break;
                }
                cache.insert(word.into(), known);
            }
        }
    }

    /// Each rule's net: by its phrases, -1 if any of its violations is
    /// found (an affirmation elsewhere in the text does not cancel it: "help
    /// me hurt him" is a violation), else 1 if an affirmation is, else 0;
    /// then what its examples say: a violation by meaning makes the net at
    /// most minus its strength, and a rule cleared by a counterexample has
    /// no violation left.
    fn judge(&self, findings: Vec<Finding>, deny_weight: f64, meanings: &[Meaning]) -> Evaluation {
        let mut nets = vec![0.0f64; self.rules.len()];
        for finding in &findings {
            let net = &mut nets[finding.rule];
            *net = match finding.polarity {
                Polarity::Violation => -1.0,
                Polarity::Affirmation if *net < 0.0 => *net,
                Polarity::Affirmation => 1.0,
            };
        }
        for meaning in meanings {
            let net = &mut nets[meaning.rule];
            *net = match meaning.outcome {
                Outcome::Violated(strength) => net.min(-strength),
                Outcome::Cleared => net.max(0.0),
                Outcome::Unsure => *net,
            };
        }
        let mut score = 0.0;
        let mut verdict = Verdict::Allow;
        for (rule, net) in self.rules.iter().zip(nets) {
            score += rule.weight * net;
            if net < 0.0 {
                if rule.weight >= deny_weight {
                    verdict = Verdict::Deny;
                } else if verdict == Verdict::Allow {
                    verdict = Verdict::Review;
                }
            }
        }
        Evaluation {
            score,
            verdict,
            findings,
        }
    }
}

/// Within a rule, drop a match that lies inside a longer one of the same
/// rule: in "hide the truth", "truth" is not an affirmation.
///
/// Findings arrive ordered by start, then end; the surviving ones keep that
/// order. Sorting by (start, end descending) lets one sweep see, for each
/// finding, the furthest end reached by the rule's earlier-starting ones.
fn longest_only(findings: Vec<Finding>) -> Vec<Finding> {
    let mut order: Vec<usize> = (0..findings.len()).collect();
    order.sort_by_key(|&i| {
        (
            findings[i].rule,
            findings[i].start,
            usize::MAX - findings[i].end,
        )
    });
    let mut keep = vec![true; findings.len()];
    let mut current_rule = usize::MAX;
    let mut reach: Option<(usize, usize)> = None; // (start, end) of the widest so far
    for &i in &order {
        let f = &findings[i];
        if f.rule != current_rule {
            current_rule = f.rule;
            reach = None;
        }
        match reach {
            Some((start, end)) if end >= f.end && (start, end) != (f.start, f.end) => {
                keep[i] = false;
            }
            Some((_, end)) if end >= f.end => {}
            _ => reach = Some((f.start, f.end)),
        }
    }
    findings
        .into_iter()
        .zip(keep)
        .filter_map(|(f, k)| k.then_some(f))
        .collect()
}

fn is_negated(tokens: &[Scanned], start: usize) -> bool {
    let clause = tokens[start].clause;
    tokens[start.saturating_sub(NEGATION_WINDOW)..start]
        .iter()
        .any(|t| t.negator && t.clause == clause)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, weight: f64, violations: &[&str], affirmations: &[&str]) -> RuleSpec {
        RuleSpec {
            name: name.into(),
            weight,
            violations: violations.iter().map(|s| s.to_string()).collect(),
            affirmations: affirmations.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn scorer() -> Scorer {
        Scorer::new(
            &[
                rule("no-harm", 10.0, &["hurt", "kill"], &["help", "protect"]),
                rule("truth", 8.0, &["lie", "deceive"], &["tell the truth"]),
                rule("tidy", 2.0, &["make a mess"], &[]),
            ],
            8.0,
        )
        .unwrap()
    }

    #[test]
    fn a_lower_deny_weight_only_changes_the_verdict() {
        let text = "they will make a mess";
        let usual = scorer().evaluate(text);
        let strict = scorer().evaluate_with(text, 1.0, &[]);
        assert_eq!(usual.verdict, Verdict::Review);
        assert_eq!(strict.verdict, Verdict::Deny);
        assert_eq!(
            (usual.score, usual.findings),
            (strict.score, strict.findings)
        );
    }

    #[test]
    fn stems_match_inflections_and_offsets_are_characters() {
        let result = scorer().evaluate("Élodie is hurting them");
        assert_eq!(result.verdict, Verdict::Deny);
        assert_eq!(result.score, -10.0);
        let finding = &result.findings[0];
        assert_eq!((finding.start, finding.end), (10, 17));
        assert_eq!(finding.polarity, Polarity::Violation);
    }

    #[test]
    fn negation_flips_within_three_tokens_and_one_clause() {
        let result = scorer().evaluate("I will not lie to you");
        assert_eq!(result.verdict, Verdict::Allow);
        assert_eq!(result.score, 8.0);
        assert!(result.findings[0].negated);
        let far = scorer().evaluate("not ever at all lie");
        assert_eq!(far.verdict, Verdict::Deny);
        let other_sentence = scorer().evaluate("No. I will hurt you");
        assert_eq!(other_sentence.verdict, Verdict::Deny);
        let contraction = scorer().evaluate("I won\u{2019}t hurt you");
        assert_eq!(contraction.verdict, Verdict::Allow);
        let other_clause = scorer().evaluate("No worries, I will kill it");
        assert_eq!(other_clause.verdict, Verdict::Deny);
        assert!(!other_clause.findings[0].negated);
    }

    #[test]
    fn ate_forms_keep_their_own_stem() {
        let stemmer = Stemmer::create(Algorithm::English);
        let stems = |words: &[&str]| -> Vec<String> {
            words
                .iter()
                .map(|w| stem(&stemmer, w).into_owned())
                .collect()
        };
        assert_eq!(
            stems(&["candidate", "candidates"]),
            ["candidate", "candidate"]
        );
        assert_eq!(stems(&["candid", "candidly"]), ["candid", "candid"]);
        assert_eq!(
            stems(&["fabricate", "fabricated", "fabrication", "fabric"]),
            ["fabricate", "fabricate", "fabricate", "fabric"]
        );
        assert_eq!(stems(&["hated", "hating"]), ["hate", "hate"]);
    }

    #[test]
    fn multi_word_phrases_and_light_rules_review() {
        let result = scorer().evaluate("they will MAKE A MESS, and tell the truth");
        assert_eq!(result.verdict, Verdict::Review);
        assert_eq!(result.score, 8.0 - 2.0);
        assert_eq!(result.findings.len(), 2);
    }

    #[test]
    fn an_affirmation_does_not_cancel_a_violation() {
        let result = scorer().evaluate("kill kill kill, help");
        assert_eq!(result.score, -10.0);
        assert_eq!(result.findings.len(), 4);
        let helped = scorer().evaluate("help me hurt him");
        assert_eq!(helped.verdict, Verdict::Deny);
        assert_eq!(scorer().evaluate("help and protect").score, 10.0);
    }

    #[test]
    fn meanings_violate_or_clear_a_rule() {
        use crate::meaning::Nearest;
        let scorer = scorer();
        let meaning = |outcome| Meaning {
            rule: 0,
            example: Some(Nearest {
                index: 0,
                similarity: 0.9,
            }),
            counterexample: None,
            outcome,
        };
        let harmless = "I will kill the process";
        assert_eq!(scorer.evaluate(harmless).verdict, Verdict::Deny);
        let cleared = scorer.evaluate_with(harmless, 8.0, &[meaning(Outcome::Cleared)]);
        assert_eq!(cleared.verdict, Verdict::Allow);
        assert_eq!(cleared.findings.len(), 1, "the phrase is still reported");
        let quiet = "I will make them disappear";
        assert_eq!(scorer.evaluate(quiet).verdict, Verdict::Allow);
        let violated = scorer.evaluate_with(quiet, 8.0, &[meaning(Outcome::Violated(0.25))]);
        assert_eq!(violated.verdict, Verdict::Deny);
        assert_eq!(violated.score, -2.5);
        let unsure = scorer.evaluate_with(harmless, 8.0, &[meaning(Outcome::Unsure)]);
        assert_eq!(unsure, scorer.evaluate(harmless));
    }

    #[test]
    fn harmony_is_not_harm_and_substrings_do_not_match() {
        let result = scorer().evaluate("skill and whelps hurtle");
        assert!(result.findings.is_empty(), "{:?}", result.findings);
    }

    #[test]
    fn the_word_cache_changes_no_outcome() {
        let scorer = scorer();
        let text = "I won't hurt you, but they kill and lie";
        let cold = scorer.evaluate(text);
        assert_eq!(scorer.evaluate(text), cold);
        let filler: String = (0..CACHE_WORDS + 10).map(|i| format!("w{i} ")).collect();
        scorer.evaluate(&filler);
        assert_eq!(scorer.words.read().unwrap().len(), CACHE_WORDS);
        assert_eq!(scorer.evaluate(text), cold);
        assert_eq!(scorer.evaluate("KILL").verdict, Verdict::Deny);
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(matches!(
            Scorer::new(&[rule("x", f64::NAN, &["a"], &[])], 8.0),
            Err(RuleSetError::Weight { .. })
        ));
        assert!(matches!(
            Scorer::new(&[rule("x", 1.0, &["!!"], &[])], 8.0),
            Err(RuleSetError::EmptyPhrase { .. })
        ));
    }

    #[test]
    fn tokens_keep_apostrophes_inside_words_only() {
        let stemmer = Stemmer::create(Algorithm::English);
        let tokens = tokenize("'don't' ﬁsh", &stemmer);
        let stems: Vec<&str> = tokens.iter().map(|t| t.stem.as_str()).collect();
        assert_eq!(stems, ["don't", "fish"]);
        assert!(tokens[0].negator);
        assert_eq!((tokens[1].start, tokens[1].end), (8, 11));
    }
}
