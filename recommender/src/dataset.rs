//! Loader for RecBole's atomic `.inter` files (MovieLens 100K as shipped in the `recbole`
//! wheel, see `scripts/fetch-datasets.sh`): tab-separated, a typed header such as
//! `user_id:token  item_id:token  rating:float  timestamp:float`.

use std::collections::HashMap;
use std::path::Path;

use thiserror::Error;

use crate::eval::Interaction;

#[derive(Debug, Error)]
pub enum DatasetError {
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: missing column {column} in header")]
    MissingColumn { path: String, column: &'static str },
    #[error("{path}:{line}: {reason}")]
    Parse { path: String, line: usize, reason: String },
}

/// Dense ids for external tokens, in order of first appearance (deterministic for a file).
#[derive(Debug, Clone, Default)]
pub struct IdMap {
    index: HashMap<String, usize>,
    tokens: Vec<String>,
}

impl IdMap {
    pub fn get_or_insert(&mut self, token: &str) -> usize {
        if let Some(&i) = self.index.get(token) {
            return i;
        }
        let i = self.tokens.len();
        self.index.insert(token.to_owned(), i);
        self.tokens.push(token.to_owned());
        i
    }
    pub fn get(&self, token: &str) -> Option<usize> {
        self.index.get(token).copied()
    }
    pub fn token(&self, i: usize) -> Option<&str> {
        self.tokens.get(i).map(String::as_str)
    }
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// A loaded interaction file: events with dense ids, and the id maps.
#[derive(Debug, Clone, Default)]
pub struct InterFile {
    pub events: Vec<Interaction>,
    pub users: IdMap,
    pub items: IdMap,
}

/// Loads a `.inter` file. `value` of each event is the `rating` column if present, else 1.
pub fn load_inter(path: impl AsRef<Path>) -> Result<InterFile, DatasetError> {
    let p = path.as_ref().display().to_string();
    let text = std::fs::read_to_string(path.as_ref()).map_err(|source| DatasetError::Io { path: p.clone(), source })?;
    parse_inter(&text, &p)
}

pub fn parse_inter(text: &str, path: &str) -> Result<InterFile, DatasetError> {
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, h)| h).unwrap_or("");
    let cols: Vec<&str> = header.split('\t').map(|c| c.split(':').next().unwrap_or("").trim()).collect();
    let find = |name: &'static str| {
        cols.iter().position(|c| *c == name).ok_or(DatasetError::MissingColumn { path: path.to_owned(), column: name })
    };
    let (cu, ci, ct) = (find("user_id")?, find("item_id")?, find("timestamp")?);
    let cr = cols.iter().position(|c| *c == "rating");
    let mut out = InterFile::default();
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let err = |reason: String| DatasetError::Parse { path: path.to_owned(), line: n + 1, reason };
        let field = |c: usize| f.get(c).copied().ok_or_else(|| err(format!("expected at least {} fields", c + 1)));
        let ts: f64 = field(ct)?.trim().parse().map_err(|e| err(format!("timestamp: {e}")))?;
        let value: f64 = match cr {
            Some(c) => field(c)?.trim().parse().map_err(|e| err(format!("rating: {e}")))?,
            None => 1.0,
        };
        let user = out.users.get_or_insert(field(cu)?.trim());
        let item = out.items.get_or_insert(field(ci)?.trim());
        out.events.push(Interaction { user, item, value, timestamp: ts as i64 });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_recbole_format() {
        let text = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t5\t881250950\n";
        let f = parse_inter(text, "x").unwrap();
        assert_eq!(f.events.len(), 3);
        assert_eq!(f.users.len(), 2);
        assert_eq!(f.items.len(), 2);
        assert_eq!(f.events[2], Interaction { user: 0, item: 1, value: 5.0, timestamp: 881250950 });
        assert_eq!(f.items.token(1), Some("302"));
    }

    #[test]
    fn reports_bad_lines() {
        let text = "user_id:token\titem_id:token\ttimestamp:float\n1\t2\tsoon\n";
        assert!(matches!(parse_inter(text, "x"), Err(DatasetError::Parse { line: 2, .. })));
        assert!(matches!(parse_inter("a\tb\n", "x"), Err(DatasetError::MissingColumn { column: "user_id", .. })));
    }
}
