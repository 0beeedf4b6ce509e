//! English stemming that remembers the words it has stemmed. Indexing a catalog stems the same
//! few thousand words over and over: the Snowball stemmer was about 40 % of tantivy's indexing
//! threads in the search benchmark's profile, and a hash lookup is a fraction of a stemming.
//! The stems are the ones tantivy's `Stemmer` gives (same `frostem` algorithm; tested below).
//!
//! Each tokenizer instance has its own memo (tantivy clones an analyzer per indexing thread
//! and per query), so nothing is shared or locked; a clone starts empty, so cloning stays
//! cheap. The memo stops growing at [`MAX_WORDS`]; later new words are stemmed every time.

use std::collections::HashMap;

use frostem::Algorithm;
use tantivy::tokenizer::{Token, TokenFilter, TokenStream, Tokenizer};

/// Words remembered per tokenizer instance at most.
pub const MAX_WORDS: usize = 200_000;

/// The filter: English stems, memoized.
#[derive(Clone, Copy, Debug, Default)]
pub struct CachedEnglishStemmer;

impl TokenFilter for CachedEnglishStemmer {
    type Tokenizer<T: Tokenizer> = CachedStemmerFilter<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> CachedStemmerFilter<T> {
        CachedStemmerFilter { inner: tokenizer, stems: HashMap::new() }
    }
}

pub struct CachedStemmerFilter<T> {
    inner: T,
    stems: HashMap<String, String>,
}

/// A clone starts with an empty memo: analyzers are cloned per query.
impl<T: Clone> Clone for CachedStemmerFilter<T> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), stems: HashMap::new() }
    }
}

impl<T: Tokenizer> Tokenizer for CachedStemmerFilter<T> {
    type TokenStream<'a> = CachedStemmerStream<'a, T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        CachedStemmerStream { tail: self.inner.token_stream(text), stems: &mut self.stems, stemmer: frostem::Stemmer::new(Algorithm::English) }
    }
}

pub struct CachedStemmerStream<'a, S> {
    tail: S,
    stems: &'a mut HashMap<String, String>,
    stemmer: frostem::Stemmer,
}

impl<S: TokenStream> TokenStream for CachedStemmerStream<'_, S> {
    fn advance(&mut self) -> bool {
        if !self.tail.advance() {
            return false;
        }
        let token = self.tail.token_mut();
        if let Some(stem) = self.stems.get(token.text.as_str()) {
            token.text.clear();
            token.text.push_str(stem);
        } else {
            let stem = self.stemmer.stem(&token.text).into_owned();
            if self.stems.len() < MAX_WORDS {
                self.stems.insert(std::mem::replace(&mut token.text, stem.clone()), stem);
            } else {
                token.text = stem;
            }
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
            let mut cached = TextAnalyzer::builder(SimpleTokenizer::default()).filter(LowerCaser).filter(CachedEnglishStemmer).build();
            // Twice through the same instance: the second pass answers from the memo.
            let expected = tokens(&mut plain, &text);
            prop_assert_eq!(&tokens(&mut cached, &text), &expected);
            prop_assert_eq!(&tokens(&mut cached, &text), &expected);
        }
    }

    #[test]
    fn a_clone_starts_with_an_empty_memo() {
        let mut filter = CachedEnglishStemmer.transform(SimpleTokenizer::default());
        filter.token_stream("kettles kettles lamps").process(&mut |_| {});
        assert_eq!(filter.stems.len(), 2);
        assert!(filter.clone().stems.is_empty());
    }
}
