//! The words of memories, as the index and every query see them.
//!
//! `WORDS` is one analyzer for both: tantivy's simple tokenizer (runs of
//! letters and digits, so numbers and the parts of a date are words), long
//! tokens dropped, lower case, irregular English forms mapped to their base
//! form ("drew" and "drawn" are "draw", "went" is "go", "children" is
//! "child"), then Snowball's English stemmer ("drawing" is "draw").

use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer, Token,
    TokenFilter, TokenStream, Tokenizer,
};

/// The analyzer's name in the index schema: an index made with another one
/// is of another layout, and rebuilt.
pub const WORDS: &str = "jamey_words";

/// Longer tokens (a hash, base64) are not words anyone searches for.
const MAX_TOKEN_BYTES: usize = 40;

/// Irregular forms and their base form, sorted by form. Forms that are
/// common words of their own are left out ("left", "lay", "rose", "bit",
/// "ground", "wound"), and so are forms the stemmer already joins.
const IRREGULAR: &[(&str, &str)] = &[
    ("arisen", "arise"),
    ("arose", "arise"),
    ("ate", "eat"),
    ("awoke", "awake"),
    ("awoken", "awake"),
    ("beaten", "beat"),
    ("became", "become"),
    ("been", "be"),
    ("began", "begin"),
    ("begun", "begin"),
    ("bent", "bend"),
    ("best", "good"),
    ("better", "good"),
    ("bitten", "bite"),
    ("bled", "bleed"),
    ("blew", "blow"),
    ("blown", "blow"),
    ("bought", "buy"),
    ("bred", "breed"),
    ("broke", "break"),
    ("broken", "break"),
    ("brought", "bring"),
    ("built", "build"),
    ("burnt", "burn"),
    ("came", "come"),
    ("caught", "catch"),
    ("children", "child"),
    ("chose", "choose"),
    ("chosen", "choose"),
    ("clung", "cling"),
    ("crept", "creep"),
    ("dealt", "deal"),
    ("did", "do"),
    ("done", "do"),
    ("drank", "drink"),
    ("drawn", "draw"),
    ("dreamt", "dream"),
    ("drew", "draw"),
    ("driven", "drive"),
    ("drove", "drive"),
    ("drunk", "drink"),
    ("dug", "dig"),
    ("eaten", "eat"),
    ("fallen", "fall"),
    ("fed", "feed"),
    ("feet", "foot"),
    ("fell", "fall"),
    ("felt", "feel"),
    ("fled", "flee"),
    ("flew", "fly"),
    ("flown", "fly"),
    ("flung", "fling"),
    ("forbade", "forbid"),
    ("forbidden", "forbid"),
    ("forgave", "forgive"),
    ("forgiven", "forgive"),
    ("forgot", "forget"),
    ("forgotten", "forget"),
    ("fought", "fight"),
    ("found", "find"),
    ("froze", "freeze"),
    ("frozen", "freeze"),
    ("gave", "give"),
    ("geese", "goose"),
    ("given", "give"),
    ("gone", "go"),
    ("got", "get"),
    ("gotten", "get"),
    ("grew", "grow"),
    ("grown", "grow"),
    ("had", "have"),
    ("has", "have"),
    ("heard", "hear"),
    ("held", "hold"),
    ("hid", "hide"),
    ("hidden", "hide"),
    ("hung", "hang"),
    ("kept", "keep"),
    ("knelt", "kneel"),
    ("knew", "know"),
    ("known", "know"),
    ("lain", "lie"),
    ("leapt", "leap"),
    ("learnt", "learn"),
    ("led", "lead"),
    ("lent", "lend"),
    ("lit", "light"),
    ("lost", "lose"),
    ("made", "make"),
    ("meant", "mean"),
    ("men", "man"),
    ("met", "meet"),
    ("mice", "mouse"),
    ("mistaken", "mistake"),
    ("mistook", "mistake"),
    ("overcame", "overcome"),
    ("paid", "pay"),
    ("ran", "run"),
    ("rang", "ring"),
    ("ridden", "ride"),
    ("risen", "rise"),
    ("rode", "ride"),
    ("rung", "ring"),
    ("said", "say"),
    ("sang", "sing"),
    ("sank", "sink"),
    ("sat", "sit"),
    ("saw", "see"),
    ("seen", "see"),
    ("sent", "send"),
    ("shaken", "shake"),
    ("shone", "shine"),
    ("shook", "shake"),
    ("shot", "shoot"),
    ("shown", "show"),
    ("shrank", "shrink"),
    ("shrunk", "shrink"),
    ("slept", "sleep"),
    ("slid", "slide"),
    ("sold", "sell"),
    ("sought", "seek"),
    ("spat", "spit"),
    ("sped", "speed"),
    ("spent", "spend"),
    ("spoke", "speak"),
    ("spoken", "speak"),
    ("sprang", "spring"),
    ("sprung", "spring"),
    ("spun", "spin"),
    ("stank", "stink"),
    ("stole", "steal"),
    ("stolen", "steal"),
    ("stood", "stand"),
    ("strode", "stride"),
    ("struck", "strike"),
    ("strung", "string"),
    ("stuck", "stick"),
    ("stung", "sting"),
    ("stunk", "stink"),
    ("sung", "sing"),
    ("sunk", "sink"),
    ("swam", "swim"),
    ("swept", "sweep"),
    ("swore", "swear"),
    ("sworn", "swear"),
    ("swum", "swim"),
    ("swung", "swing"),
    ("taken", "take"),
    ("taught", "teach"),
    ("teeth", "tooth"),
    ("thought", "think"),
    ("threw", "throw"),
    ("thrown", "throw"),
    ("told", "tell"),
    ("took", "take"),
    ("tore", "tear"),
    ("torn", "tear"),
    ("understood", "understand"),
    ("undid", "undo"),
    ("undone", "undo"),
    ("went", "go"),
    ("wept", "weep"),
    ("withdrawn", "withdraw"),
    ("withdrew", "withdraw"),
    ("woke", "wake"),
    ("woken", "wake"),
    ("women", "woman"),
    ("won", "win"),
    ("wore", "wear"),
    ("worn", "wear"),
    ("worse", "bad"),
    ("worst", "bad"),
    ("written", "write"),
    ("wrote", "write"),
];

/// The base form of an irregular form, if `word` (lower case) is one.
pub fn base_form(word: &str) -> Option<&'static str> {
    IRREGULAR
        .binary_search_by(|(form, _)| (*form).cmp(word))
        .ok()
        .map(|at| IRREGULAR[at].1)
}

/// The analyzer of memory text and of queries.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(BaseForms)
        .filter(Stemmer::new(Language::English))
        .build()
}

/// A token filter that replaces irregular forms by their base form.
#[derive(Clone)]
struct BaseForms;

impl TokenFilter for BaseForms {
    type Tokenizer<T: Tokenizer> = BaseFormsFilter<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> BaseFormsFilter<T> {
        BaseFormsFilter(tokenizer)
    }
}

#[derive(Clone)]
struct BaseFormsFilter<T>(T);

impl<T: Tokenizer> Tokenizer for BaseFormsFilter<T> {
    type TokenStream<'a> = BaseFormsStream<T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        BaseFormsStream(self.0.token_stream(text))
    }
}

struct BaseFormsStream<S>(S);

impl<S: TokenStream> TokenStream for BaseFormsStream<S> {
    fn advance(&mut self) -> bool {
        if !self.0.advance() {
            return false;
        }
        if let Some(base) = base_form(&self.0.token().text) {
            let token = self.0.token_mut();
            token.text.clear();
            token.text.push_str(base);
        }
        true
    }

    fn token(&self) -> &Token {
        self.0.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.0.token_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        let mut analyzer = analyzer();
        let mut stream = analyzer.token_stream(text);
        let mut found = Vec::new();
        while let Some(token) = stream.next() {
            found.push(token.text.clone());
        }
        found
    }

    #[test]
    fn the_table_is_sorted_and_has_each_form_once() {
        assert!(IRREGULAR.windows(2).all(|pair| pair[0].0 < pair[1].0));
    }

    #[test]
    fn irregular_forms_are_their_base_form() {
        assert_eq!(words("draw drew drawn drawing"), ["draw"; 4]);
        assert_eq!(words("go went gone going"), ["go"; 4]);
        assert_eq!(words("The children swam"), ["the", "child", "swim"]);
        assert_eq!(words("Stolen STOLE steals"), ["steal"; 3]);
        // Words of their own stay themselves.
        assert_eq!(words("left rose ground"), ["left", "rose", "ground"]);
    }

    #[test]
    fn numbers_and_dates_are_words() {
        assert_eq!(words("on 7 May 2023"), ["on", "7", "may", "2023"]);
        assert_eq!(
            words("2023-05-07 at 10:30"),
            ["2023", "05", "07", "at", "10", "30"]
        );
        assert_eq!(words(&"x".repeat(41)), Vec::<String>::new());
    }
}
