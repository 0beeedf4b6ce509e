//! English stemming that remembers the words it has stemmed. Indexing a catalog stems the same
//! few thousand words over and over: the Snowball stemmer was about 40 % of tantivy's indexing
//! threads in the search benchmark's profile, and a hash lookup is a fraction of a stemming.
//! The stems are the ones tantivy's `Stemmer` gives (same `frostem` algorithm; tested below).
//!
//! Tantivy clones an analyzer per indexing thread, per query and per snippet, so the memo is
//! shared by every clone of one analyzer (a concurrent map). A snippet clone stems some sixty
//! words and is dropped: with a memo of its own it stemmed every one of them cold (7 % of the
//! search benchmark's CPU over HTTP). An instance that has stemmed more than [`LOCAL_AFTER`]
//! words (an indexing thread) also keeps a private copy of what it uses, which it reads
//! without touching the shared map's locks. Both hash with foldhash: std's SipHash was an
//! eighth of an indexing thread's time in the memo's lookups. Both stop growing at [`MAX_WORDS`]; later new words
//! are stemmed every time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use foldhash::fast::RandomState;
use foldhash::HashMap;
use frostem::Algorithm;
use tantivy::tokenizer::{Token, TokenFilter, TokenStream, Tokenizer};

/// Words remembered at most, in the shared memo and in each private one.
pub const MAX_WORDS: usize = 200_000;
/// Words an instance stems through the shared memo before it keeps a private memo too.
pub const LOCAL_AFTER: usize = 4_096;

/// The filter: English stems, memoized. Clones share the memo; `default()` starts a new one.
#[derive(Clone, Debug, Default)]
pub struct CachedEnglishStemmer {
    shared: Arc<SharedStems>,
}

#[derive(Debug, Default)]
struct SharedStems {
    stems: DashMap<String, String, RandomState>,
    /// `DashMap::len` locks every shard; this is read on every insertion.
    len: AtomicUsize,
}

impl SharedStems {
    fn remember(&self, word: &str, stem: &str) {
        if self.len.load(Ordering::Relaxed) >= MAX_WORDS {
            return;
        }
        if let dashmap::Entry::Vacant(entry) = self.stems.entry(word.to_owned()) {
            entry.insert(stem.to_owned());
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl TokenFilter for CachedEnglishStemmer {
    type Tokenizer<T: Tokenizer> = CachedStemmerFilter<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> CachedStemmerFilter<T> {
        CachedStemmerFilter { inner: tokenizer, shared: self.shared, local: HashMap::default(), stemmed: 0 }
    }
}

pub struct CachedStemmerFilter<T> {
    inner: T,
    shared: Arc<SharedStems>,
    local: HashMap<String, String>,
    /// Words this instance looked up beyond its private memo.
    stemmed: usize,
}

/// A clone shares the memo and starts without a private one.
impl<T: Clone> Clone for CachedStemmerFilter<T> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: self.shared.clone(), local: HashMap::default(), stemmed: 0 }
    }
}

impl<T: Tokenizer> Tokenizer for CachedStemmerFilter<T> {
    type TokenStream<'a> = CachedStemmerStream<'a, T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        CachedStemmerStream {
            tail: self.inner.token_stream(text),
            shared: &self.shared,
            local: &mut self.local,
            stemmed: &mut self.stemmed,
            stemmer: None,
        }
    }
}

pub struct CachedStemmerStream<'a, S> {
    tail: S,
    shared: &'a SharedStems,
    local: &'a mut HashMap<String, String>,
    stemmed: &'a mut usize,
    /// Made on the first word the memos do not have.
    stemmer: Option<frostem::Stemmer>,
}

impl<S: TokenStream> TokenStream for CachedStemmerStream<'_, S> {
    fn advance(&mut self) -> bool {
        if !self.tail.advance() {
            return false;
        }
        let token = self.tail.token_mut();
        if let Some(stem) = self.local.get(token.text.as_str()) {
            token.text.clear();
            token.text.push_str(stem);
            return true;
        }
        *self.stemmed += 1;
        let keep = *self.stemmed > LOCAL_AFTER && self.local.len() < MAX_WORDS;
        let stem = match self.shared.stems.get(token.text.as_str()) {
            Some(stem) if !keep => {
                token.text.clear();
                token.text.push_str(stem.value());
                return true;
            }
            Some(stem) => stem.value().clone(),
            None => {
                let stemmer = self.stemmer.get_or_insert_with(|| frostem::Stemmer::new(Algorithm::English));
                let stem = stemmer.stem(&token.text).into_owned();
                self.shared.remember(&token.text, &stem);
                stem
            }
        };
        if keep {
            self.local.insert(std::mem::replace(&mut token.text, stem.clone()), stem);
        } else {
            token.text = stem;
        }
        true
    }

    fn token(&self) -> &Token {
        self.tail.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.tail.token_mut()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tantivy::tokenizer::{Language, LowerCaser, SimpleTokenizer, Stemmer, TextAnalyzer};

    use super::*;

    fn tokens(analyzer: &mut TextAnalyzer, text: &str) -> Vec<(String, usize, usize, usize)> {
        let mut out = Vec::new();
        analyzer.token_stream(text).process(&mut |t: &Token| out.push((t.text.clone(), t.position, t.offset_from, t.offset_to)));
        out
    }

    proptest! {
        #[test]
        fn stems_equal_tantivys_stemmer_also_when_remembered(
            words in prop::collection::vec(prop_oneof![
                Just("kettles".to_owned()), Just("insulated".to_owned()), Just("running".to_owned()),
                Just("bests".to_owned()), Just("Café".to_owned()), "[a-zA-Z]{1,12}", "\\PC{1,8}",
            ], 0..40),
        ) {
            let text = words.join(" ");
            let mut plain = TextAnalyzer::builder(SimpleTokenizer::default()).filter(LowerCaser).filter(Stemmer::new(Language::English)).build();
            let mut cached = TextAnalyzer::builder(SimpleTokenizer::default()).filter(LowerCaser).filter(CachedEnglishStemmer::default()).build();
            // Twice through the same instance: the second pass answers from the memo.
            let expected = tokens(&mut plain, &text);
            prop_assert_eq!(&tokens(&mut cached, &text), &expected);
            prop_assert_eq!(&tokens(&mut cached, &text), &expected);
            // A clone answers from the shared memo.
            prop_assert_eq!(&tokens(&mut cached.clone(), &text), &expected);
        }
    }

    #[test]
    fn clones_share_the_memo_and_only_a_busy_instance_keeps_a_private_one() {
        let mut filter = CachedEnglishStemmer::default().transform(SimpleTokenizer::default());
        filter.token_stream("kettles kettles lamps").process(&mut |_| {});
        assert_eq!(filter.shared.len.load(Ordering::Relaxed), 2);
        assert!(filter.local.is_empty(), "a few words are not worth a private memo");
        let mut clone = filter.clone();
        let mut stems = Vec::new();
        clone.token_stream("kettles").process(&mut |t: &Token| stems.push(t.text.clone()));
        assert_eq!(stems, ["kettl"]);
        assert_eq!(clone.shared.len.load(Ordering::Relaxed), 2, "the clone found the stem in the shared memo");

        let words: Vec<String> = (0..LOCAL_AFTER + 10).map(|i| format!("w{i}s")).collect();
        let mut clone = filter.clone();
        clone.token_stream(&words.join(" ")).process(&mut |_| {});
        assert_eq!(clone.local.len(), 10, "past LOCAL_AFTER words an instance remembers privately too");
        let text = "Running kettles w3s running kettles";
        let mut plain = Stemmer::new(Language::English).transform(SimpleTokenizer::default());
        let (mut expected, mut got) = (Vec::new(), Vec::new());
        plain.token_stream(text).process(&mut |t: &Token| expected.push(t.text.clone()));
        clone.token_stream(text).process(&mut |t: &Token| got.push(t.text.clone()));
        assert_eq!(got, expected, "stems read back from the private memo");
        assert!(clone.local.contains_key("kettles"));
        assert!(filter.local.is_empty() && CachedEnglishStemmer::default().shared.len.load(Ordering::Relaxed) == 0);
    }
}
