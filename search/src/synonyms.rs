//! Synonyms as admins manage them: groups of words that mean the same to a shopper
//! (`["sofa", "couch"]`). A query word in a group also matches the group's other words.
//! Groups are applied at query time, so changing them never re-indexes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The synonym set searches use.
pub const DEFAULT_SET: &str = "default";

/// At most this many groups and words per group (an admin API, but still bounded).
pub const MAX_GROUPS: usize = 10_000;
pub const MAX_GROUP_WORDS: usize = 32;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Synonyms {
    /// Lower-cased word → the other words of every group it is in.
    by_word: HashMap<String, Vec<String>>,
}

impl Synonyms {
    /// Builds the lookup from groups; words are trimmed and lower-cased, empty ones dropped.
    pub fn new(groups: &[Vec<String>]) -> Self {
        let mut by_word: HashMap<String, Vec<String>> = HashMap::new();
        for group in groups {
            let words: Vec<String> =
                group.iter().map(|w| w.trim().to_lowercase()).filter(|w| !w.is_empty()).collect();
            for word in &words {
                let others = by_word.entry(word.clone()).or_default();
                others.extend(words.iter().filter(|w| *w != word).cloned());
                others.sort();
                others.dedup();
            }
        }
        Self { by_word }
    }

    /// The other words `word` (any case) may be written as.
    pub fn of(&self, word: &str) -> &[String] {
        self.by_word.get(&word.to_lowercase()).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_of_a_group_finds_the_others_in_any_case() {
        let synonyms = Synonyms::new(&[vec!["Sofa".into(), "couch".into(), " settee ".into()], vec!["tv".into(), "television".into()]]);
        assert_eq!(synonyms.of("SOFA"), ["couch", "settee"]);
        assert_eq!(synonyms.of("settee"), ["couch", "sofa"]);
        assert_eq!(synonyms.of("tv"), ["television"]);
        assert!(synonyms.of("lamp").is_empty());
    }

    #[test]
    fn a_word_in_two_groups_gets_both() {
        let synonyms = Synonyms::new(&[vec!["pc".into(), "computer".into()], vec!["pc".into(), "laptop".into()]]);
        assert_eq!(synonyms.of("pc"), ["computer", "laptop"]);
    }
}
