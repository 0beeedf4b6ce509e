//! Where an index lives and whether it can be reused: a directory with the index and a
//! `VERSION` file naming the schema version that wrote it. Missing, unreadable or another
//! version means: start empty, so the first sync rebuilds it from the views.

use std::collections::HashMap;
use std::path::Path;

use shopflow_events::Id;
use tantivy::schema::Schema;
use tantivy::{Index, Searcher};

use crate::schema::SCHEMA_VERSION;
use crate::SearchError;

const VERSION_FILE: &str = "VERSION";
const INDEX_DIR: &str = "index";

/// Opens the index under `dir`, or creates an empty one there when it is missing or was
/// written by another schema version. The bool says whether it was (re)created.
pub fn open_dir(dir: &Path, schema: Schema) -> Result<(Index, bool), SearchError> {
    let version = std::fs::read_to_string(dir.join(VERSION_FILE)).ok().and_then(|v| v.trim().parse::<u32>().ok());
    let index_dir = dir.join(INDEX_DIR);
    if version == Some(SCHEMA_VERSION) {
        match Index::open_in_dir(&index_dir) {
            Ok(index) if index.schema() == schema => return Ok((index, false)),
            Ok(_) => tracing::warn!(dir = %dir.display(), "search index schema differs from its version file: rebuilding"),
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "search index unreadable: rebuilding"),
        }
    } else {
        tracing::info!(dir = %dir.display(), found = ?version, current = SCHEMA_VERSION, "search index missing or of another schema version: rebuilding");
    }
    if index_dir.exists() {
        std::fs::remove_dir_all(&index_dir)?;
    }
    std::fs::create_dir_all(&index_dir)?;
    let index = Index::create_in_dir(&index_dir, schema)?;
    // Written once the empty index exists: a crash during the rebuild leaves a current-version
    // index that the next start's sync completes (it compares every document with the views).
    std::fs::write(dir.join(VERSION_FILE), format!("{SCHEMA_VERSION}\n"))?;
    Ok((index, true))
}

/// Product id → content hash of its document; looked up once per product change.
pub type Known = HashMap<Id, u64, foldhash::fast::RandomState>;

/// Product id → content hash of every live document (what a sync compares with the views).
pub fn known_documents(searcher: &Searcher) -> Result<Known, SearchError> {
    let mut known = Known::default();
    for segment in searcher.segment_readers() {
        let fast = segment.fast_fields();
        let content = fast.u64("content")?.first_or_default_col(0);
        let Some(ids) = fast.str("id")? else { continue };
        let alive = segment.alive_bitset();
        let mut id = String::new();
        for doc in 0..segment.max_doc() {
            if alive.is_none_or(|a| a.is_alive(doc)) {
                if let Some(ord) = ids.term_ords(doc).next() {
                    id.clear();
                    ids.ord_to_str(ord, &mut id)?;
                    if let Ok(parsed) = Id::new(&id) {
                        known.insert(parsed, content.get_val(doc));
                    }
                }
            }
        }
    }
    Ok(known)
}
