//! The one writer of the index: follows the catalog view's changes and is the one place that
//! commits and reloads readers. Changes are batched: the first change opens a batch window
//! (`commit_interval`), everything that arrives within it (or up to `max_pending` products)
//! goes into one commit, and only then is the reader reloaded and the index's applied
//! progress advanced. A burst of updates to one product is one document write.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use shopflow_events::Id;
use shopflow_views::{Changed, ProgressReport, Views};
use parking_lot::RwLock;

use crate::synonyms::Synonyms;
use tantivy::indexer::LogMergePolicy;
use tantivy::{IndexReader, IndexWriter, Term};
use tokio::sync::watch;

use crate::schema::{content_hash, document, units, Fields};
use crate::SearchError;

/// How segments are merged. Every query pays per segment (each term is looked up and each
/// fuzzy automaton walked in every segment), and every commit adds one: tantivy's default
/// waits for 8 segments of a size class before merging them; 4 keeps the count (and the
/// query cost) about half as high, at the price of merging small segments more often, which
/// at a commit per 100 ms is cheap.
pub(crate) fn merge_policy() -> LogMergePolicy {
    let mut policy = LogMergePolicy::default();
    policy.set_min_num_segments(4);
    policy
}

/// When the indexer commits.
#[derive(Clone, Copy, Debug)]
pub struct CommitPolicy {
    /// How long changes gather after the first before they are committed together. Freshness
    /// is about this plus the commit; a second keeps tantivy's refresh rule, less is fresher.
    pub commit_interval: Duration,
    /// A batch with this many changed products is committed at once.
    pub max_pending: usize,
    /// With nothing to index, how often the index's progress catches up with the views' (so a
    /// token for a write that changed no product is passed too).
    pub idle_poll: Duration,
}

impl Default for CommitPolicy {
    fn default() -> Self {
        Self { commit_interval: Duration::from_millis(100), max_pending: 20_000, idle_poll: Duration::from_millis(20) }
    }
}

/// What the indexer is asked to do; shared with the views' listener.
#[derive(Default)]
pub(crate) struct Pending {
    ids: HashSet<Id>,
    /// The synonyms view changed: reload it.
    synonyms: bool,
    /// Compare the whole index with the whole catalog view (start, rebuild).
    full_sync: bool,
    stop: bool,
}

#[derive(Default)]
pub(crate) struct Inbox {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Inbox {
    pub(crate) fn changed(&self, changed: &Changed<'_>) {
        let mut pending = self.pending.lock();
        pending.ids.extend(changed.products.iter().cloned());
        pending.synonyms |= changed.synonyms;
        drop(pending);
        self.wake.notify_one();
    }

    pub(crate) fn full_sync(&self) {
        self.pending.lock().full_sync = true;
        self.wake.notify_one();
    }

    pub(crate) fn stop(&self) {
        self.pending.lock().stop = true;
        self.wake.notify_one();
    }

    /// A views listener that feeds this inbox while it exists.
    pub(crate) fn listener(self: &Arc<Self>) -> shopflow_views::ChangeListener {
        let inbox: Weak<Inbox> = Arc::downgrade(self);
        Box::new(move |changed| {
            if let Some(inbox) = inbox.upgrade() {
                inbox.changed(changed);
            }
        })
    }
}

pub(crate) struct Indexer {
    pub views: Arc<Views>,
    pub writer: IndexWriter,
    pub reader: IndexReader,
    pub fields: Fields,
    pub policy: CommitPolicy,
    pub inbox: Arc<Inbox>,
    /// Product id → content hash of its document in the index.
    pub known: crate::store::Known,
    /// The offsets of the views the index reflects (one pseudo-worker reports them).
    pub applied: Arc<shopflow_views::Progress>,
    /// `true` once a full sync has been committed.
    pub synced: Arc<watch::Sender<bool>>,
    /// What searches expand words with: the synonyms view's `default` set, replaced by the
    /// indexer in the batch that saw it change (before that batch's progress is reported).
    pub synonyms: Arc<RwLock<Arc<Synonyms>>>,
    pub reports: u64,
    pub last_covered: Vec<shopflow_ingest::Position>,
}

impl Indexer {
    /// Runs until the index is dropped. A failed commit is logged and retried with the next
    /// batch (the changed ids are kept), never a panic.
    pub fn run(mut self) {
        while let Some((covered, ids, full_sync)) = self.next_batch() {
            let started = Instant::now();
            let result = if full_sync { self.sync_all() } else { self.apply(&ids) };
            match result.and_then(|written| self.commit().map(|()| written)) {
                Ok(written) => {
                    if written > 0 {
                        tracing::debug!(written, took_ms = started.elapsed().as_millis() as u64, "search index committed");
                    }
                    self.report(covered);
                    if full_sync {
                        self.synced.send_replace(true);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "search index commit failed; retrying with the next batch");
                    let mut pending = self.inbox.pending.lock();
                    pending.ids.extend(ids);
                    pending.full_sync |= full_sync;
                    // Unsent progress stays where it was, so tokens keep waiting rather than lie.
                    drop(pending);
                    std::thread::sleep(self.policy.commit_interval);
                }
            }
        }
        if let Err(e) = self.writer.wait_merging_threads() {
            tracing::warn!(error = %e, "search index merges did not finish");
        }
    }

    /// Waits for work and the batch window; returns the views' covered offsets taken *before*
    /// the changed ids were taken (every change those offsets cover was already in the inbox,
    /// since the views tell listeners before they report progress), or `None` to stop.
    fn next_batch(&mut self) -> Option<(Vec<shopflow_ingest::Position>, HashSet<Id>, bool)> {
        let mut pending = self.inbox.pending.lock();
        loop {
            if pending.stop {
                return None;
            }
            if !pending.ids.is_empty() || pending.full_sync {
                break;
            }
            let idle = self.inbox.wake.wait_for(&mut pending, self.policy.idle_poll).timed_out();
            if std::mem::take(&mut pending.synonyms) {
                // No commit needed: synonyms apply at query time. Reloaded under the inbox
                // lock, so progress taken after this covers the change.
                self.reload_synonyms();
            }
            if idle && pending.ids.is_empty() && !pending.full_sync {
                // Nothing changed in the products: everything the views cover is indexed.
                let covered = self.views.progress.covered_offsets();
                if pending.ids.is_empty() {
                    drop(pending);
                    self.report(covered);
                    pending = self.inbox.pending.lock();
                }
            }
        }
        let deadline = Instant::now() + self.policy.commit_interval;
        while !pending.stop && !pending.full_sync && pending.ids.len() < self.policy.max_pending {
            if self.inbox.wake.wait_until(&mut pending, deadline).timed_out() {
                break;
            }
        }
        drop(pending);
        let covered = self.views.progress.covered_offsets();
        let mut pending = self.inbox.pending.lock();
        let ids = std::mem::take(&mut pending.ids);
        let full_sync = std::mem::take(&mut pending.full_sync);
        if std::mem::take(&mut pending.synonyms) || full_sync {
            self.reload_synonyms();
        }
        Some((covered, ids, full_sync))
    }

    /// Writes the current state of each product; returns how many documents changed.
    fn apply(&mut self, ids: &HashSet<Id>) -> Result<usize, SearchError> {
        let mut written = 0;
        for id in ids {
            written += usize::from(self.write(id, self.views.products.get(id).as_ref())?);
        }
        Ok(written)
    }

    /// Makes one product's document match its row (`None`: gone). True if anything changed.
    fn write(&mut self, id: &Id, row: Option<&shopflow_views::ProductRow>) -> Result<bool, SearchError> {
        let term = Term::from_field_text(self.fields.id, id.as_str());
        match row {
            None => {
                if self.known.remove(id).is_none() {
                    return Ok(false);
                }
                self.writer.delete_term(term);
            }
            Some(row) => {
                let top = self.views.top_sellers.get(id);
                let hash = content_hash(row, units(top.as_ref()));
                if self.known.get(id) == Some(&hash) {
                    return Ok(false);
                }
                if self.known.insert(id.clone(), hash).is_some() {
                    self.writer.delete_term(term);
                }
                self.writer.add_document(document(&self.fields, row, top.as_ref(), hash))?;
            }
        }
        Ok(true)
    }

    /// Compares the index with the whole catalog view: writes what differs, deletes what the
    /// view no longer has. On an empty (new or rebuilt) index this is the rebuild.
    fn sync_all(&mut self) -> Result<usize, SearchError> {
        let rows = self.views.products.snapshot();
        let total = rows.len();
        let rebuilding = self.known.is_empty() && total > 0;
        tracing::info!(products = total, indexed = self.known.len(), rebuilding, "search index sync with the catalog view started");
        let started = Instant::now();
        let mut written = 0;
        let in_view: HashSet<&Id> = rows.iter().map(|(id, _)| id).collect();
        let gone: Vec<Id> = self.known.keys().filter(|id| !in_view.contains(id)).cloned().collect();
        for id in gone {
            written += usize::from(self.write(&id, None)?);
        }
        for (done, (id, row)) in rows.iter().enumerate() {
            written += usize::from(self.write(id, Some(row))?);
            if (done + 1) % 25_000 == 0 {
                tracing::info!(done = done + 1, total, "search index sync progress");
            }
        }
        tracing::info!(products = total, written, took_ms = started.elapsed().as_millis() as u64, "search index sync done");
        Ok(written)
    }

    fn reload_synonyms(&self) {
        let groups = self.views.synonyms.get(&Id::from(crate::synonyms::DEFAULT_SET)).map(|row| row.groups).unwrap_or_default();
        tracing::info!(groups = groups.len(), "search synonyms loaded");
        *self.synonyms.write() = Arc::new(Synonyms::new(&groups));
    }

    fn commit(&mut self) -> Result<(), SearchError> {
        self.writer.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Advances the index's applied progress to `covered` (if it moved).
    fn report(&mut self, covered: Vec<shopflow_ingest::Position>) {
        if covered == self.last_covered {
            return;
        }
        self.reports += 1;
        self.last_covered = covered.clone();
        self.applied.report(ProgressReport { worker: 0, peers: 1, frontier: self.reports, offsets: covered });
    }
}
