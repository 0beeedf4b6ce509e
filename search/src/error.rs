//! The search crate's one error type. Serving maps it to HTTP in one place
//! (`serving/src/error.rs`): `BadRequest` is the caller's fault (4xx), the rest are ours.

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A parameter the caller sent cannot be used (bad cursor, unknown sort, bad range).
    #[error("{field}: {message}")]
    BadRequest { field: &'static str, message: String },
    /// The index could not be read or written.
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("search index directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("search index directory: {0}")]
    OpenDirectory(#[from] tantivy::directory::error::OpenDirectoryError),
    /// The indexer thread stopped (it only stops when the index is dropped).
    #[error("the search indexer has stopped")]
    Stopped,
}

impl SearchError {
    pub(crate) fn bad(field: &'static str, message: impl Into<String>) -> Self {
        SearchError::BadRequest { field, message: message.into() }
    }
}
