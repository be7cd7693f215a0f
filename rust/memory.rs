//! The memory index: one tantivy index for all five layers.
//!
//! SQLite is the truth; this index only answers "which memories match",
//! so content is indexed but not stored, and the index can always be rebuilt
//! from the database. Each commit records, as its payload, the last journal
//! sequence it contains, so a restart replays exactly what is newer.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashSet};
use std::fmt;
use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;

use tantivy::directory::MmapDirectory;
use tantivy::query::{
    BooleanQuery, EnableScoring, Occur, Query, QueryParser, RangeQuery, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, STRING,
};
use tantivy::{
    doc, DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Score, Searcher, Term,
};

use crate::words;

/// The smallest writer arena tantivy accepts, and the default here: edge
/// devices have little memory, and the indexer batches anyway.
pub const MIN_WRITER_BYTES: usize = 15_000_000;

/// Why the index cannot be used.
#[derive(Debug)]
pub struct IndexError(pub String);

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<tantivy::TantivyError> for IndexError {
    fn from(error: tantivy::TantivyError) -> IndexError {
        IndexError(error.to_string())
    }
}

impl From<tantivy::directory::error::OpenDirectoryError> for IndexError {
    fn from(error: tantivy::directory::error::OpenDirectoryError) -> IndexError {
        IndexError(error.to_string())
    }
}

/// A memory as the index sees it.
#[derive(Debug, Clone)]
pub struct IndexedMemory {
    pub id: String,
    pub layer: String,
    pub entity: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub content: String,
}

/// What to look for: words (parsed leniently) and exact filters.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub query: String,
    /// Every word required (the conjunction), rather than any word ranked.
    pub all_words: bool,
    pub layer: Option<String>,
    pub entity: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: usize,
}

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    layer: Field,
    entity: Field,
    timestamp: Field,
    content: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let content = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(words::WORDS)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    // Filters are terms with frequencies (always 1): tantivy prunes a
    // conjunction of such terms block by block (block-max WAND), a filtered
    // search included; a term without them makes it score every match.
    let keyword = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        // Ids are indexed for deletes and read back from their column: a
        // stored field would decompress a whole document block per hit.
        id: builder.add_text_field("id", STRING | FAST),
        layer: builder.add_text_field("layer", keyword.clone()),
        entity: builder.add_text_field("entity", keyword),
        // Range filters run on the column; an inverted index of nearly
        // unique timestamps would only slow indexing down.
        timestamp: builder.add_i64_field("timestamp", FAST),
        content: builder.add_text_field("content", content),
    };
    (builder.build(), fields)
}

/// The index, its single writer and a reader refreshed at each commit.
///
/// The writer (its threads and its arena) is made at the first change, not
/// at open: a daemon that starts with nothing to index starts faster and
/// stays smaller until it is given something to remember.
pub struct MemoryIndex {
    index: Index,
    fields: Fields,
    reader: IndexReader,
    writer: Mutex<Option<IndexWriter>>,
    writer_bytes: usize,
    // Queries of every word, and of any word.
    all_words: QueryParser,
    any_word: QueryParser,
    // The stems of QUERY_STOPWORDS, as the index's analyzer makes them.
    stopwords: HashSet<String>,
}

/// Words a question is made of that say nothing of what it asks about:
/// dropped from an any-word query unless nothing else is left. Lucene's
/// English list, and the question words, auxiliaries and pronouns.
const QUERY_STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with", "what", "which", "who", "whom", "whose", "when",
    "where", "why", "how", "do", "does", "did", "doing", "done", "have", "has", "had", "having",
    "am", "were", "been", "being", "can", "could", "would", "should", "shall", "may", "might",
    "must", "i", "me", "my", "mine", "you", "your", "yours", "he", "him", "his", "she", "her",
    "hers", "we", "us", "our", "ours", "them", "its", "about", "from", "so", "than", "too", "very",
    "just", "any", "some", "ever", "tell", "know",
];

impl MemoryIndex {
    /// Open the index in `dir`, creating it if the directory is empty.
    pub fn open(dir: &Path, writer_bytes: usize) -> Result<MemoryIndex, IndexError> {
        std::fs::create_dir_all(dir).map_err(|e| IndexError(format!("{}: {e}", dir.display())))?;
        let (schema, fields) = schema();
        let directory = MmapDirectory::open(dir)?;
        let index = Index::open_or_create(directory, schema)?;
        index.tokenizers().register(words::WORDS, words::analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let mut all_words = QueryParser::for_index(&index, vec![fields.content]);
        all_words.set_conjunction_by_default();
        let any_word = QueryParser::for_index(&index, vec![fields.content]);
        let stopwords = stems(&index, QUERY_STOPWORDS)?;
        Ok(MemoryIndex {
            index,
            fields,
            reader,
            writer: Mutex::new(None),
            writer_bytes: writer_bytes.max(MIN_WRITER_BYTES),
            all_words,
            any_word,
            stopwords,
        })
    }

    /// Run `change` with the writer, opening it on first use.
    ///
    /// A writer that fails (a full disk while it writes a segment or
    /// commits) is dropped with everything it held uncommitted: kept, its
    /// next commit would report success and add nothing. The next change
    /// opens a fresh one from the last commit, and the caller applies what
    /// was not committed again.
    fn with_writer<T>(
        &self,
        change: impl FnOnce(&mut IndexWriter) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        let mut slot = self
            .writer
            .lock()
            .map_err(|_| IndexError("the index writer panicked earlier".into()))?;
        if slot.is_none() {
            *slot = Some(self.index.writer_with_num_threads(1, self.writer_bytes)?);
        }
        let Some(writer) = slot.as_mut() else {
            return Err(IndexError("the index writer could not be opened".into()));
        };
        let result = change(writer);
        if result.is_err() {
            *slot = None;
        }
        result
    }

    /// Add memories.
    ///
    /// No delete-before-add: the index holds exactly the journal up to its
    /// committed sequence and only what is newer is replayed, so an add is
    /// never a duplicate (and a pending delete per document would cost the
    /// writer memory in proportion to the batch, measured at 120 MB per
    /// 100,000 documents). A start-up count check catches any disagreement.
    pub fn add(&self, memories: &[IndexedMemory]) -> Result<(), IndexError> {
        if memories.is_empty() {
            return Ok(());
        }
        let f = self.fields;
        self.with_writer(|writer| {
            for memory in memories {
                let mut document = doc!(
                    f.id => memory.id.as_str(),
                    f.layer => memory.layer.as_str(),
                    f.timestamp => memory.timestamp,
                    f.content => memory.content.as_str(),
                );
                if let Some(entity) = &memory.entity {
                    document.add_text(f.entity, entity);
                }
                writer.add_document(document)?;
            }
            Ok(())
        })
    }

    pub fn delete(&self, ids: &[String]) -> Result<(), IndexError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.with_writer(|writer| {
            for id in ids {
                writer.delete_term(Term::from_field_text(self.fields.id, id));
            }
            Ok(())
        })
    }

    /// Make everything added so far durable and searchable, recording the
    /// journal sequence it reaches.
    pub fn commit(&self, sequence: u64) -> Result<(), IndexError> {
        self.with_writer(|writer| {
            let mut prepared = writer.prepare_commit()?;
            prepared.set_payload(&sequence.to_string());
            prepared.commit()?;
            Ok(())
        })?;
        self.reader.reload()?;
        Ok(())
    }

    /// The journal sequence of the last commit (0 for a new index).
    pub fn committed_sequence(&self) -> Result<u64, IndexError> {
        let metas = self.index.load_metas()?;
        Ok(metas
            .payload
            .and_then(|p| p.parse().ok())
            .unwrap_or_default())
    }

    /// Files whose checksum does not match (a truncated or damaged index).
    pub fn damaged_files(&self) -> Result<Vec<String>, IndexError> {
        let mut damaged: Vec<String> = self
            .index
            .validate_checksum()?
            .into_iter()
            .map(|path| path.display().to_string())
            .collect();
        damaged.sort();
        Ok(damaged)
    }

    pub fn doc_count(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Remove every document (before a rebuild from the database).
    pub fn clear(&self) -> Result<(), IndexError> {
        self.with_writer(|writer| {
            writer.delete_all_documents()?;
            Ok(())
        })
    }

    /// Ids and BM25 scores of the best matches, best first.
    ///
    /// The query is parsed leniently: syntax it cannot read is dropped, never
    /// an error. A query with no words matches nothing. Its words are
    /// alternatives ranked by BM25 (a question is a query), its stopwords
    /// dropped while other words are left; with `all_words`, each is
    /// required.
    ///
    /// Required words and the filters make one flat conjunction, and a lone
    /// word is searched as itself: tantivy skips whole blocks of a posting
    /// list that cannot reach the top k only for a term or a conjunction of
    /// terms, not for one nested in another (a common word took 1.3 ms at
    /// 1 M documents, scoring every document that has it).
    pub fn search(&self, search: &Search) -> Result<Vec<(String, f32)>, IndexError> {
        let query = self.query_of(search);
        let searcher = self.reader.searcher();
        let top = top_by_score(&searcher, query.as_ref(), search.limit.max(1))?;
        let mut found = Vec::with_capacity(top.len());
        for Hit { score, address } in top {
            if let Some(id) = memory_id(&searcher, address)? {
                found.push((id, score));
            }
        }
        Ok(found)
    }

    /// The query a search runs: its words and its filters.
    fn query_of(&self, search: &Search) -> Box<dyn Query> {
        let mut clauses = if search.all_words {
            conjunction_of(self.all_words.parse_query_lenient(&search.query).0)
        } else {
            let parsed = self.any_word.parse_query_lenient(&search.query).0;
            vec![(Occur::Must, without_stopwords(parsed, &self.stopwords))]
        };
        let f = self.fields;
        for (field, value) in [(f.layer, &search.layer), (f.entity, &search.entity)] {
            if let Some(value) = value {
                let term = Term::from_field_text(field, value);
                clauses.push((
                    Occur::Must,
                    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)),
                ));
            }
        }
        if search.since.is_some() || search.until.is_some() {
            let bound = |value: Option<i64>, inclusive: bool| match value {
                None => Bound::Unbounded,
                Some(v) if inclusive => Bound::Included(Term::from_field_i64(f.timestamp, v)),
                Some(v) => Bound::Excluded(Term::from_field_i64(f.timestamp, v)),
            };
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    bound(search.since, true),
                    bound(search.until, true),
                )),
            ));
        }
        match clauses.len() {
            1 => clauses.swap_remove(0).1,
            _ => Box::new(BooleanQuery::new(clauses)),
        }
    }
}

/// The terms the content field's analyzer makes of `words`.
fn stems(index: &Index, words: &[&str]) -> Result<HashSet<String>, IndexError> {
    let mut analyzer = index
        .tokenizers()
        .get(words::WORDS)
        .ok_or_else(|| IndexError("the words analyzer is not registered".into()))?;
    let mut found = HashSet::new();
    for word in words {
        let mut stream = analyzer.token_stream(word);
        while let Some(token) = stream.next() {
            found.insert(token.text.clone());
        }
    }
    Ok(found)
}

/// An any-word query less its stopword terms, unless they are all it has.
fn without_stopwords(parsed: Box<dyn Query>, stopwords: &HashSet<String>) -> Box<dyn Query> {
    let Some(boolean) = parsed.downcast_ref::<BooleanQuery>() else {
        return parsed;
    };
    let is_stopword = |query: &dyn Query| {
        query.downcast_ref::<TermQuery>().is_some_and(|term| {
            term.term()
                .value()
                .as_str()
                .is_some_and(|text| stopwords.contains(text))
        })
    };
    let kept: Vec<(Occur, Box<dyn Query>)> = boolean
        .clauses()
        .iter()
        .filter(|(occur, query)| *occur != Occur::Should || !is_stopword(query.as_ref()))
        .map(|(occur, query)| (*occur, query.box_clone()))
        .collect();
    match kept.len() {
        0 => parsed,
        1 if kept[0].0 != Occur::MustNot => kept.into_iter().next().map_or(parsed, |k| k.1),
        _ => Box::new(BooleanQuery::new(kept)),
    }
}

/// The clauses that must all match: those of a conjunction (what the parser
/// makes of several words), or else the query itself (a query without words
/// is an empty one, which matches nothing, filtered or not).
fn conjunction_of(parsed: Box<dyn Query>) -> Vec<(Occur, Box<dyn Query>)> {
    if let Some(boolean) = parsed.downcast_ref::<BooleanQuery>() {
        let clauses = boolean.clauses();
        if !clauses.is_empty() && clauses.iter().all(|(occur, _)| *occur == Occur::Must) {
            return clauses
                .iter()
                .map(|(occur, query)| (*occur, query.box_clone()))
                .collect();
        }
    }
    vec![(Occur::Must, parsed)]
}

/// A match in the running top k. Ordered by score, and of equal scores the
/// earlier document ranks higher, as in tantivy's own collector.
#[derive(PartialEq)]
struct Hit {
    score: Score,
    address: DocAddress,
}

impl Eq for Hit {}

impl Ord for Hit {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.address.cmp(&self.address))
    }
}

impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The best `limit` matches over every segment, best first.
///
/// tantivy's `TopDocs` starts each segment from nothing: every segment
/// scores until it holds a top k of its own before block-max WAND can skip
/// anything. Here a segment starts from the k-th best score found so far.
fn top_by_score(
    searcher: &Searcher,
    query: &dyn Query,
    limit: usize,
) -> Result<Vec<Hit>, IndexError> {
    let weight = query.weight(EnableScoring::enabled_from_searcher(searcher))?;
    let mut best: BinaryHeap<Reverse<Hit>> = BinaryHeap::with_capacity(limit + 1);
    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
        let segment = u32::try_from(ord).map_err(|_| IndexError("too many segments".into()))?;
        let alive = reader.alive_bitset();
        let mut threshold = kth_score(&best, limit);
        weight.for_each_pruning(threshold, reader, &mut |doc, score| {
            if alive.is_some_and(|bits| bits.is_deleted(doc)) {
                return threshold;
            }
            best.push(Reverse(Hit {
                score,
                address: DocAddress::new(segment, doc),
            }));
            if best.len() > limit {
                best.pop();
            }
            threshold = kth_score(&best, limit);
            threshold
        })?;
    }
    let mut hits: Vec<Hit> = best.into_iter().map(|Reverse(hit)| hit).collect();
    hits.sort_by(|a, b| b.cmp(a));
    Ok(hits)
}

/// The score a match must beat to enter a full top k (any, until it is full).
fn kth_score(best: &BinaryHeap<Reverse<Hit>>, limit: usize) -> Score {
    match best.peek() {
        Some(Reverse(lowest)) if best.len() >= limit => lowest.score,
        _ => Score::MIN,
    }
}

/// The memory id of a document, from the id column of its segment.
fn memory_id(searcher: &Searcher, address: DocAddress) -> Result<Option<String>, IndexError> {
    let segment = searcher.segment_reader(address.segment_ord);
    let Some(column) = segment.fast_fields().str("id")? else {
        return Ok(None);
    };
    let Some(ord) = column.ords().first(address.doc_id) else {
        return Ok(None);
    };
    let mut id = String::new();
    let found = column
        .ord_to_str(ord, &mut id)
        .map_err(|e| IndexError(format!("reading a memory id: {e}")))?;
    Ok(found.then_some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(id: &str, layer: &str, entity: Option<&str>, ts: i64, text: &str) -> IndexedMemory {
        IndexedMemory {
            id: id.into(),
            layer: layer.into(),
            entity: entity.map(Into::into),
            timestamp: ts,
            content: text.into(),
        }
    }

    fn search(query: &str) -> Search {
        Search {
            query: query.into(),
            limit: 10,
            ..Search::default()
        }
    }

    fn ids(found: Vec<(String, f32)>) -> Vec<String> {
        let mut ids: Vec<String> = found.into_iter().map(|(id, _)| id).collect();
        ids.sort();
        ids
    }

    #[test]
    fn add_search_filter_delete_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let index = MemoryIndex::open(dir.path(), MIN_WRITER_BYTES).unwrap();
        index
            .add(&[
                memory("a", "episodic", Some("ana"), 1_000, "Ana planted tomatoes"),
                memory("b", "semantic", None, 2_000, "Tomatoes need sun"),
                memory("c", "episodic", Some("bo"), 3_000, "Bo painted the fence"),
            ])
            .unwrap();
        index.commit(3).unwrap();
        assert_eq!(index.doc_count(), 3);
        assert_eq!(ids(index.search(&search("tomato")).unwrap()), ["a", "b"]);
        let mut filtered = search("tomatoes");
        filtered.layer = Some("episodic".into());
        assert_eq!(ids(index.search(&filtered).unwrap()), ["a"]);
        let mut by_time = search("tomatoes OR fence");
        by_time.since = Some(2_000);
        by_time.until = Some(3_000);
        assert_eq!(ids(index.search(&by_time).unwrap()), ["b", "c"]);
        let mut by_entity = search("painted");
        by_entity.entity = Some("bo".into());
        assert_eq!(ids(index.search(&by_entity).unwrap()), ["c"]);

        index.delete(&["a".into(), "b".into()]).unwrap();
        let beans = memory("a", "episodic", Some("ana"), 1_000, "Ana planted beans");
        index.add(&[beans]).unwrap();
        index.commit(5).unwrap();
        assert_eq!(index.doc_count(), 2, "deleted, then added again");
        assert!(index.search(&search("tomatoes")).unwrap().is_empty());
        drop(index);

        let again = MemoryIndex::open(dir.path(), MIN_WRITER_BYTES).unwrap();
        assert_eq!(again.committed_sequence().unwrap(), 5);
        assert_eq!(ids(again.search(&search("beans")).unwrap()), ["a"]);
    }

    #[test]
    fn all_words_and_filters_make_one_conjunction() {
        let dir = tempfile::tempdir().unwrap();
        let index = MemoryIndex::open(dir.path(), MIN_WRITER_BYTES).unwrap();
        index
            .add(&[
                memory(
                    "a",
                    "episodic",
                    Some("ana"),
                    1,
                    "red apples and green pears",
                ),
                memory("b", "episodic", None, 2, "red apples"),
                memory(
                    "c",
                    "semantic",
                    Some("ana"),
                    3,
                    "green pears and red apples",
                ),
            ])
            .unwrap();
        index.commit(1).unwrap();
        let mut both = Search {
            all_words: true,
            ..search("apples pears")
        };
        assert_eq!(ids(index.search(&both).unwrap()), ["a", "c"]);
        both.layer = Some("episodic".into());
        assert_eq!(ids(index.search(&both).unwrap()), ["a"]);
        both.layer = None;
        both.entity = Some("ana".into());
        assert_eq!(ids(index.search(&both).unwrap()), ["a", "c"]);
        let mut either = search("pears OR plums");
        either.layer = Some("semantic".into());
        assert_eq!(ids(index.search(&either).unwrap()), ["c"]);
        let mut one = search("apples");
        one.layer = Some("episodic".into());
        assert_eq!(ids(index.search(&one).unwrap()), ["a", "b"]);
        // A filter without words matches nothing, not its whole layer.
        for words in ["", "   ", "((", "😀"] {
            let mut none = search(words);
            none.layer = Some("episodic".into());
            assert!(index.search(&none).unwrap().is_empty(), "{words:?}");
        }
    }

    #[test]
    fn any_word_ranks_and_leaves_out_stopwords() {
        let dir = tempfile::tempdir().unwrap();
        let index = MemoryIndex::open(dir.path(), MIN_WRITER_BYTES).unwrap();
        index
            .add(&[
                memory("tea", "semantic", None, 1, "Alice likes green tea"),
                memory("coffee", "semantic", None, 2, "Bob drinks his coffee black"),
                memory("chatter", "semantic", None, 3, "What does it do? Who knows"),
                memory("both", "semantic", None, 4, "Alice drinks water"),
            ])
            .unwrap();
        index.commit(1).unwrap();
        let found = index.search(&search("What does Alice drink?")).unwrap();
        let order: Vec<&str> = found.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(order[0], "both");
        assert_eq!(ids(found), ["both", "coffee", "tea"]);
        // Only stopwords: they are the query.
        assert_eq!(
            ids(index.search(&search("what does it do")).unwrap()),
            ["chatter"]
        );
        let required = Search {
            all_words: true,
            ..search("What does Alice drink?")
        };
        assert!(index.search(&required).unwrap().is_empty());
        let mut filtered = search("alice coffee");
        filtered.limit = 10;
        filtered.since = Some(2);
        assert_eq!(ids(index.search(&filtered).unwrap()), ["both", "coffee"]);
    }

    #[test]
    fn the_top_k_over_segments_is_tantivys() {
        let dir = tempfile::tempdir().unwrap();
        let index = MemoryIndex::open(dir.path(), MIN_WRITER_BYTES).unwrap();
        let words = ["apple", "pear", "plum", "fig", "kiwi", "lime"];
        for segment in 0..4 {
            let batch: Vec<IndexedMemory> = (0..60)
                .map(|i| {
                    let n = segment * 60 + i;
                    let text: Vec<&str> = (0..(n % 13 + 1))
                        .map(|j| words[(n * 7 + j * j) % 6])
                        .collect();
                    let layer = if n % 3 == 0 { "episodic" } else { "semantic" };
                    memory(&format!("m{n}"), layer, None, 0, &text.join(" "))
                })
                .collect();
            index.add(&batch).unwrap();
            index.commit(segment as u64 + 1).unwrap();
        }
        let searcher = index.reader.searcher();
        assert!(searcher.segment_readers().len() > 1);
        for (text, layer) in [
            ("apple", None),
            ("pear fig", None),
            ("fig", Some("episodic")),
            ("pear kiwi", Some("semantic")),
        ] {
            let mut wanted = search(text);
            wanted.layer = layer.map(Into::into);
            let query = index.query_of(&wanted);
            let ours: Vec<Score> = top_by_score(&searcher, query.as_ref(), 7)
                .unwrap()
                .iter()
                .map(|hit| hit.score)
                .collect();
            let theirs: Vec<Score> = searcher
                .search(
                    query.as_ref(),
                    &tantivy::collector::TopDocs::with_limit(7).order_by_score(),
                )
                .unwrap()
                .iter()
                .map(|(score, _)| *score)
                .collect();
            assert_eq!(ours.len(), 7, "{text}");
            assert_eq!(ours, theirs, "{text}");
        }
    }

    #[test]
    fn an_index_of_another_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut other = Schema::builder();
        other.add_text_field("layer", STRING);
        Index::create_in_dir(dir.path(), other.build()).unwrap();
        assert!(MemoryIndex::open(dir.path(), MIN_WRITER_BYTES).is_err());
    }

    #[test]
    fn garbage_queries_never_fail() {
        let dir = tempfile::tempdir().unwrap();
        let index = MemoryIndex::open(dir.path(), MIN_WRITER_BYTES).unwrap();
        index
            .add(&[memory("a", "working", None, 1, "hello world")])
            .unwrap();
        index.commit(1).unwrap();
        let long = "x".repeat(10_000);
        for query in [
            "\"unbalanced",
            "content:",
            "layer:episodic",
            "AND OR NOT",
            "((",
            "-",
            "\0",
            "😀",
            "",
            "   ",
            "*",
            "hello^",
            "[a TO",
            &long,
        ] {
            assert!(index.search(&search(query)).is_ok(), "{query:?}");
        }
        assert_eq!(ids(index.search(&search("HELLO")).unwrap()), ["a"]);
    }
}
