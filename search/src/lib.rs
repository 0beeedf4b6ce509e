//! Product search: a tantivy index of the catalog view, kept up to date from the view's
//! changes, and the queries shoppers send it.
//!
//! - [`schema`]: the fields and the English analyzer, versioned ([`SCHEMA_VERSION`]).
//! - `indexer`: the one writer. It follows the views through [`Views::on_product_change`],
//!   batches changes into one commit per `commit_interval`, reloads the reader, and only then
//!   advances [`SearchIndex::applied`], the offsets the index reflects. A consistency token is
//!   waited for against that, so a search after a write sees the write.
//! - `query` and `search`: BM25 with field boosts, typos by word length, prefix on the last
//!   word, synonyms, filters, facets, sorts, cursors, snippets; [`SearchIndex::suggest`].
//! - `store`: the index directory and its version file. The index is derived: missing or of
//!   another version, it starts empty and the first [`SearchIndex::sync`] rebuilds it.
//!
//! ```ignore
//! let index = SearchIndex::open(SearchConfig::default(), views.clone())?;
//! index.sync();                          // once the views have caught up with the log
//! index.wait_synced().await;
//! let results = index.search(&SearchRequest { text: "kettle".into(), limit: 10, ..Default::default() })?;
//! ```

mod error;
mod facets;
mod indexer;
pub mod query;
pub mod schema;
mod search;
pub mod stem;
mod store;
pub mod synonyms;

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use shopflow_views::{Progress, Views};
use tantivy::collector::TopDocs;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, IndexReader, ReloadPolicy, Searcher, TantivyDocument};
use tokio::sync::watch;

pub use error::SearchError;
pub use indexer::CommitPolicy;
pub use query::{Filters, TypoRules};
pub use schema::SCHEMA_VERSION;
pub use search::{FacetCount, FacetCounts, Highlight, Hit, Price, SearchRequest, SearchResults, Sort, MAX_LIMIT};
pub use synonyms::Synonyms;

use crate::indexer::{Inbox, Indexer};
use crate::query::{QueryBuilder, Scope, TypoMode};
use crate::schema::Fields;

#[derive(Clone, Debug, Default)]
pub struct SearchConfig {
    /// Where the index is kept; `None`: in memory (tests, benchmarks).
    pub dir: Option<PathBuf>,
    pub commit: CommitPolicy,
    pub typos: TypoRules,
    /// Memory for the writer's indexing buffers (tantivy's minimum is 15 MB per thread); a
    /// budget, filled only as documents arrive. Default 256 MB: a rebuild of 100k products
    /// then flushes one segment per thread instead of several to merge later.
    pub writer_memory: Option<usize>,
    pub writer_threads: Option<usize>,
}

/// One suggestion for search-as-you-type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Suggestion {
    pub id: String,
    pub name: String,
}

/// Most suggestions one request can get.
pub const MAX_SUGGESTIONS: usize = 20;

/// The search index of one process: its reader and the handle of its indexer thread.
pub struct SearchIndex {
    fields: Fields,
    /// The query-side analyzers, built once (each query clones them: a clone is cheap, a
    /// lookup in the index's tokenizer registry takes its lock).
    english: TextAnalyzer,
    raw: TextAnalyzer,
    reader: IndexReader,
    typos: TypoRules,
    synonyms: Arc<RwLock<Arc<Synonyms>>>,
    inbox: Arc<Inbox>,
    applied: Arc<Progress>,
    synced: Arc<watch::Sender<bool>>,
    indexer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl SearchIndex {
    /// Opens (or creates, or rebuilds) the index and starts its indexer, which from now on
    /// follows every product change applied to `views`. Products already in the views are
    /// indexed by [`SearchIndex::sync`].
    pub fn open(config: SearchConfig, views: Arc<Views>) -> Result<Arc<Self>, SearchError> {
        let (schema, fields) = schema::schema();
        let (index, created) = match &config.dir {
            Some(dir) => store::open_dir(dir, schema)?,
            None => (Index::create_in_ram(schema), true),
        };
        let english = schema::register_tokenizers(&index);
        let threads = config.writer_threads.unwrap_or(2).max(1);
        let memory = config.writer_memory.unwrap_or(256 << 20).max((threads * 16) << 20);
        let writer = index.writer_with_num_threads(threads, memory)?;
        writer.set_merge_policy(Box::new(indexer::merge_policy()));
        // Manual: the indexer reloads right after each commit, and only then says the
        // index reflects the batch; a timer-driven reload could not say when it happened.
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let known = if created { Default::default() } else { store::known_documents(&reader.searcher())? };
        tracing::info!(documents = known.len(), created, "search index opened");
        let inbox = Arc::new(Inbox::default());
        views.on_change(inbox.listener());
        let synonyms = Arc::new(RwLock::new(Arc::new(Synonyms::default())));
        let applied = Arc::new(Progress::default());
        let synced = Arc::new(watch::channel(false).0);
        let indexer = Indexer {
            views,
            writer,
            reader: reader.clone(),
            fields,
            policy: config.commit,
            inbox: inbox.clone(),
            known,
            applied: applied.clone(),
            synced: synced.clone(),
            synonyms: synonyms.clone(),
            reports: 0,
            last_covered: Vec::new(),
        };
        let handle = std::thread::Builder::new().name("search-indexer".into()).spawn(move || indexer.run())?;
        Ok(Arc::new(Self {
            fields,
            english,
            raw: schema::raw(),
            reader,
            typos: config.typos,
            synonyms,
            inbox,
            applied,
            synced,
            indexer: Mutex::new(Some(handle)),
        }))
    }

    /// Asks the indexer to compare the whole index with the whole catalog view (and so to
    /// build it if it is empty). Call once the views have caught up with the log: a product
    /// deleted while this process was down is removed only by a sync.
    pub fn sync(&self) {
        self.inbox.full_sync();
    }

    /// `true` once a sync has been committed.
    pub fn synced(&self) -> watch::Receiver<bool> {
        self.synced.subscribe()
    }

    pub async fn wait_synced(&self) {
        let mut synced = self.synced();
        // The sender lives in `self`, so this cannot fail while we borrow it.
        let _ = synced.wait_for(|s| *s).await;
    }

    /// The log offsets the index reflects (as searchable documents): what a search with a
    /// consistency token waits for.
    pub fn applied(&self) -> &Progress {
        &self.applied
    }

    /// Replaces the synonym groups until the synonyms view next changes; the next search
    /// uses them. (Servers take them from the view; this is for tests and benchmarks.)
    pub fn set_synonyms(&self, synonyms: Synonyms) {
        *self.synonyms.write() = Arc::new(synonyms);
    }

    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    /// Live documents in the index as of the last commit.
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    fn builder<'a>(&self, synonyms: &'a Synonyms, searcher: &'a Searcher, mode: TypoMode) -> QueryBuilder<'a> {
        QueryBuilder {
            fields: self.fields,
            searcher,
            mode,
            skipped_typos: false,
            analyzer: self.english.clone(),
            raw: self.raw.clone(),
            typos: self.typos,
            synonyms,
        }
    }

    /// One page of a search (blocking: call from a blocking thread in async code). Words the
    /// index has are matched exactly; only when that finds nothing are they given their typos
    /// too (see [`TypoMode`]).
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResults, SearchError> {
        let synonyms = self.synonyms.read().clone();
        let searcher = self.reader.searcher();
        let mut builder = self.builder(&synonyms, &searcher, TypoMode::WhenUnknown);
        let (query, has_text) = builder.full(&request.text, &request.filters, Scope::All)?;
        let results = search::run(&searcher, &self.fields, query.as_ref(), request, has_text)?;
        if results.total > 0 || !builder.skipped_typos {
            return Ok(results);
        }
        let (query, has_text) = self.builder(&synonyms, &searcher, TypoMode::Always).full(&request.text, &request.filters, Scope::All)?;
        search::run(&searcher, &self.fields, query.as_ref(), request, has_text)
    }

    /// Products whose name matches what is being typed (the last word as a prefix, typos by
    /// length), best first; at most `limit` (1..=MAX_SUGGESTIONS).
    pub fn suggest(&self, text: &str, limit: usize) -> Result<Vec<Suggestion>, SearchError> {
        if limit == 0 || limit > MAX_SUGGESTIONS {
            return Err(SearchError::bad("limit", format!("must be 1 to {MAX_SUGGESTIONS}")));
        }
        let synonyms = self.synonyms.read().clone();
        let searcher = self.reader.searcher();
        let mut builder = self.builder(&synonyms, &searcher, TypoMode::WhenUnknown);
        let Some(mut query) = builder.text(text, Scope::Name)? else { return Ok(Vec::new()) };
        let mut top = searcher.search(query.as_ref(), &TopDocs::with_limit(limit * 3).order_by_score())?;
        if top.is_empty() && builder.skipped_typos {
            let mut builder = self.builder(&synonyms, &searcher, TypoMode::Always);
            let Some(again) = builder.text(text, Scope::Name)? else { return Ok(Vec::new()) };
            query = again;
            top = searcher.search(query.as_ref(), &TopDocs::with_limit(limit * 3).order_by_score())?;
        }
        let mut out: Vec<Suggestion> = Vec::new();
        for (_, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            let field = |f| doc.get_first(f).and_then(|v| tantivy::schema::Value::as_str(&v)).unwrap_or_default().to_owned();
            let name = field(self.fields.name);
            // One line per distinct name: a shopper picks a phrase, not a SKU.
            if !out.iter().any(|s| s.name.eq_ignore_ascii_case(&name)) {
                out.push(Suggestion { id: field(self.fields.id), name });
            }
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }
}

impl Drop for SearchIndex {
    fn drop(&mut self) {
        self.inbox.stop();
        if let Some(handle) = self.indexer.lock().take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests;
