//! From what a shopper typed to a tantivy query: BM25 over name, description, brand and
//! category with field boosts, English stemming (the index analyzer), typo tolerance by word
//! length, prefix matching on the last word, synonyms; and the filters.

use std::ops::Bound;

use serde::{Deserialize, Serialize};
use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Searcher, Term};

use crate::schema::{parse_category, Fields};
use crate::synonyms::Synonyms;
use crate::SearchError;

/// Longest query text accepted, in bytes; longer is `400` (no shopper types 1 kB).
pub const MAX_QUERY_BYTES: usize = 1_000;
/// Words after this many are ignored (as Meilisearch does with its 10).
pub const MAX_QUERY_WORDS: usize = 10;

/// How many typos a word may have, by its length in characters (Meilisearch's defaults:
/// none up to 4 characters, one from 5, two from 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypoRules {
    pub one_typo_from: usize,
    pub two_typos_from: usize,
}

impl Default for TypoRules {
    fn default() -> Self {
        Self { one_typo_from: 5, two_typos_from: 9 }
    }
}

impl TypoRules {
    pub fn allowed(&self, word: &str) -> u8 {
        let chars = word.chars().count();
        if chars >= self.two_typos_from {
            2
        } else if chars >= self.one_typo_from {
            1
        } else {
            0
        }
    }
}

/// Words that only glue a query together; dropped unless the query is nothing else.
const STOP_WORDS: [&str; 12] = ["a", "an", "and", "the", "for", "of", "with", "in", "on", "to", "by", "or"];

/// How much a match in each field counts.
const BOOSTS: [(FieldName, f32); 4] =
    [(FieldName::Name, 3.0), (FieldName::Brand, 2.0), (FieldName::Category, 1.5), (FieldName::Description, 1.0)];
/// A typo'd (or prefix) match counts this much of an exact match in the name. It is a
/// constant (fuzzy and prefix matches are not BM25-scored), so an exact word always adds more
/// than a near one to a product's score.
const INEXACT: f32 = 0.5;
/// A synonym's match counts this much of the word itself.
const SYNONYM: f32 = 0.8;

#[derive(Clone, Copy)]
enum FieldName {
    Name,
    Brand,
    Category,
    Description,
}

impl FieldName {
    fn field(self, fields: &Fields) -> Field {
        match self {
            FieldName::Name => fields.name,
            FieldName::Brand => fields.brand,
            FieldName::Category => fields.category,
            FieldName::Description => fields.description,
        }
    }
}

/// The filters of a search; each one narrows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filters {
    /// A category path (`Electronics/Audio`): that category and everything below it.
    pub category: Option<String>,
    /// Any of these brand ids.
    pub brands: Vec<String>,
    /// Inclusive bounds on the price in minor units.
    pub price_min: Option<i64>,
    pub price_max: Option<i64>,
    pub in_stock: bool,
    /// Products whose mean rating is at least this (0 to 5); products without reviews are left out.
    pub min_rating: Option<f64>,
}

/// Which fields text is matched in: all of them for search, the name for suggestions.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    All,
    Name,
}

/// When a word is matched with typos.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TypoMode {
    /// Only words the index does not have as written (nor, being typed, as the start of a
    /// word): a word it has is matched exactly. Typesense does the same by default (its
    /// `typo_tokens_threshold` is one), and it saves walking the term dictionaries with a
    /// Levenshtein automaton, the costliest part of a query. The caller searches again with
    /// `Always` when that finds nothing.
    WhenUnknown,
    Always,
}

/// Builds queries for one index (its fields and analyzer).
pub(crate) struct QueryBuilder<'a> {
    pub fields: Fields,
    /// The point-in-time view whose dictionaries say which words exist.
    pub searcher: &'a Searcher,
    pub mode: TypoMode,
    /// Set when some word was matched exactly where its length allowed typos.
    pub skipped_typos: bool,
    pub analyzer: TextAnalyzer,
    /// The analyzer of the unstemmed `words` field.
    pub raw: TextAnalyzer,
    pub typos: TypoRules,
    pub synonyms: &'a Synonyms,
}

impl QueryBuilder<'_> {
    /// The text part; `None` when the text has no searchable word (then every product matches).
    pub fn text(&mut self, text: &str, scope: Scope) -> Result<Option<Box<dyn Query>>, SearchError> {
        if text.len() > MAX_QUERY_BYTES {
            return Err(SearchError::bad("q", format!("longer than {MAX_QUERY_BYTES} bytes")));
        }
        let mut words: Vec<&str> = text.split_whitespace().take(MAX_QUERY_WORDS).collect();
        if words.iter().any(|w| !STOP_WORDS.contains(&w.to_lowercase().as_str())) {
            // Keep a trailing stop word that may be the start of another word ("the" → "theme").
            let last = words.len() - 1;
            let mut i = 0;
            words.retain(|w| {
                i += 1;
                i - 1 == last || !STOP_WORDS.contains(&w.to_lowercase().as_str())
            });
        }
        // The last word is still being typed unless the text ends with a space.
        let typing = !text.ends_with(char::is_whitespace);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (i, word) in words.iter().enumerate() {
            let prefix = typing && i + 1 == words.len();
            if let Some(clause) = self.word(word, prefix, scope) {
                clauses.push((Occur::Must, clause));
            }
        }
        Ok(match clauses.len() {
            0 => None,
            1 => Some(clauses.pop().expect("one clause").1),
            _ => Some(Box::new(BooleanQuery::new(clauses))),
        })
    }

    /// One word: itself in every field (boosted), with typos if it is long enough, as a prefix
    /// if it is being typed, or any of its synonyms. `None` if the analyzer leaves nothing of it.
    fn word(&mut self, word: &str, prefix: bool, scope: Scope) -> Option<Box<dyn Query>> {
        let stems = tokens(&mut self.analyzer, word);
        if stems.is_empty() {
            return None;
        }
        // The same analysis without the stemmer: one raw token per stemmed one.
        let raw = tokens(&mut self.raw, word);
        let typos = self.typos.allowed(word);
        let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        // A word the analyzer splits ("t-shirt") needs all its parts.
        let last = stems.len() - 1;
        let mut parts: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(stems.len());
        for (i, stem) in stems.iter().enumerate() {
            let raw = raw.get(i).map_or(stem.as_str(), String::as_str);
            parts.push((Occur::Must, self.token(stem, raw, typos, prefix && i == last, scope)));
        }
        alternatives.push((Occur::Should, one_or_all(parts)));
        let synonyms: Vec<String> = self.synonyms.of(word).to_vec();
        for synonym in synonyms {
            let mut parts: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for t in tokens(&mut self.analyzer, &synonym) {
                parts.push((Occur::Must, self.token(&t, &t, 0, false, scope)));
            }
            if !parts.is_empty() {
                alternatives.push((Occur::Should, Box::new(BoostQuery::new(one_or_all(parts), SYNONYM))));
            }
        }
        Some(one_or_any(alternatives))
    }

    /// One analyzed token: its stem in every field of the scope (BM25, boosted by field), and
    /// the word as written with its typos or as a prefix in the unstemmed `words` field (once,
    /// not per field: the automaton walks of fuzzy terms are a query's costliest part).
    fn token(&mut self, stem: &str, raw: &str, typos: u8, prefix: bool, scope: Scope) -> Box<dyn Query> {
        let typos = if typos > 0 && self.mode == TypoMode::WhenUnknown && self.known(stem, raw, prefix, scope) {
            self.skipped_typos = true;
            0
        } else {
            typos
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (name, boost) in BOOSTS {
            if scope == Scope::Name && !matches!(name, FieldName::Name) {
                continue;
            }
            let exact = TermQuery::new(Term::from_field_text(name.field(&self.fields), stem), IndexRecordOption::WithFreqs);
            clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(exact), boost))));
        }
        let near = BOOSTS[0].1 * INEXACT;
        let written = Term::from_field_text(self.fields.words, raw);
        if prefix {
            // A prefix (with its typos) also matches the whole word and its near misses.
            let started = FuzzyTermQuery::new_prefix(written, typos, true);
            clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(started), near))));
        } else if typos > 0 {
            let fuzzy = FuzzyTermQuery::new(written, typos, true);
            clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(fuzzy), near))));
        }
        one_or_any(clauses)
    }

    /// Whether the index has the word: as written in `words` (with `prefix`: some word starting
    /// with it), or its stem in a field of the scope. One dictionary lookup per segment.
    fn known(&self, stem: &str, raw: &str, prefix: bool, scope: Scope) -> bool {
        let has = |field: Field, text: &str, prefix: bool| {
            self.searcher.segment_readers().iter().any(|segment| {
                let Ok(index) = segment.inverted_index(field) else { return false };
                let terms = index.terms();
                if prefix {
                    let Ok(mut stream) = terms.range().ge(text.as_bytes()).into_stream() else { return false };
                    stream.advance() && stream.key().starts_with(text.as_bytes())
                } else {
                    terms.get(text.as_bytes()).is_ok_and(|info| info.is_some())
                }
            })
        };
        has(self.fields.words, raw, prefix)
            || BOOSTS.iter().any(|(name, _)| (scope == Scope::All || matches!(name, FieldName::Name)) && has(name.field(&self.fields), stem, false))
    }

    /// The filter clauses; they narrow the result without changing its scores.
    pub fn filters(&self, filters: &Filters) -> Result<Vec<Box<dyn Query>>, SearchError> {
        let f = &self.fields;
        let mut out: Vec<Box<dyn Query>> = Vec::new();
        if let Some(category) = &filters.category {
            let facet = parse_category(category).ok_or_else(|| SearchError::bad("category", "names no category"))?;
            out.push(Box::new(TermQuery::new(Term::from_facet(f.category_facet, &facet), IndexRecordOption::Basic)));
        }
        if !filters.brands.is_empty() {
            let any: Vec<(Occur, Box<dyn Query>)> = filters
                .brands
                .iter()
                .map(|b| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(Term::from_field_text(f.brand_id, b), IndexRecordOption::Basic));
                    (Occur::Should, q)
                })
                .collect();
            out.push(Box::new(BooleanQuery::new(any)));
        }
        if let (Some(min), Some(max)) = (filters.price_min, filters.price_max) {
            if min > max {
                return Err(SearchError::bad("price_min", "is above price_max"));
            }
        }
        if filters.price_min.is_some() || filters.price_max.is_some() {
            let bound = |v: Option<i64>| v.map_or(Bound::Unbounded, |v| Bound::Included(Term::from_field_i64(f.price, v)));
            out.push(Box::new(RangeQuery::new(bound(filters.price_min), bound(filters.price_max))));
        }
        if filters.in_stock {
            out.push(Box::new(RangeQuery::new(Bound::Included(Term::from_field_i64(f.stock, 1)), Bound::Unbounded)));
        }
        if let Some(min) = filters.min_rating {
            // `contains` is false for NaN too.
            if !(0.0..=5.0).contains(&min) {
                return Err(SearchError::bad("min_rating", "must be 0 to 5"));
            }
            out.push(Box::new(RangeQuery::new(Bound::Included(Term::from_field_f64(f.rating, min)), Bound::Unbounded)));
        }
        Ok(out)
    }

    /// Text and filters together: filters score nothing, so relevance is the text's alone.
    /// The bool says whether the text had a searchable word.
    pub fn full(&mut self, text: &str, filters: &Filters, scope: Scope) -> Result<(Box<dyn Query>, bool), SearchError> {
        let text = self.text(text, scope)?;
        let has_text = text.is_some();
        let filters = self.filters(filters)?;
        if filters.is_empty() {
            return Ok((text.unwrap_or_else(|| Box::new(AllQuery)), has_text));
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        clauses.push((Occur::Must, text.unwrap_or_else(|| Box::new(AllQuery))));
        for filter in filters {
            clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(filter, 0.0))));
        }
        Ok((Box::new(BooleanQuery::new(clauses)), has_text))
    }
}

fn tokens(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

fn one_or_any(mut clauses: Vec<(Occur, Box<dyn Query>)>) -> Box<dyn Query> {
    if clauses.len() == 1 {
        clauses.pop().expect("one clause").1
    } else {
        Box::new(BooleanQuery::new(clauses))
    }
}

fn one_or_all(clauses: Vec<(Occur, Box<dyn Query>)>) -> Box<dyn Query> {
    one_or_any(clauses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_allowed_grow_with_word_length() {
        let rules = TypoRules::default();
        assert_eq!([rules.allowed("mug"), rules.allowed("lamp"), rules.allowed("kettl"), rules.allowed("headphone")], [0, 0, 1, 2]);
        assert_eq!(rules.allowed("éééé"), 0, "counted in characters, not bytes");
        let strict = TypoRules { one_typo_from: 7, two_typos_from: 100 };
        assert_eq!([strict.allowed("kettle"), strict.allowed("speaker"), strict.allowed("headphones")], [0, 1, 1]);
    }
}
