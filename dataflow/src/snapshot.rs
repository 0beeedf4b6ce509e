//! Snapshots of the per-partition state (postcard), one file per source partition, written atomically
//! (temporary file, fsync, rename) so a crash leaves either the old or the new snapshot.
//! Per-partition files keep restarts independent of the worker count: whichever worker owns
//! a partition after the restart loads its file.
//!
//! Files are versioned: `SHOPSNAP`, a little-endian u32 format, then the postcard body. A
//! file without the header is format 1 (before versions existed) and is migrated. A file of a
//! format this build does not know (written by a newer build), or one that does not decode,
//! is never a reason to refuse to start: its partition is rebuilt from the log, which keeps
//! every event (entity topics have unlimited retention, see `ingest`'s topic specs).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::state::{PartitionSnapshot, PartitionState};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot i/o on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

const MAGIC: &[u8; 8] = b"SHOPSNAP";
/// The format this build writes: the core plus one section per state part. A part's section
/// carries its own version, so changing one part does not need a new file format.
pub const FORMAT: u32 = 3;

/// Decodes a snapshot of any known format into a partition's state; the error says why not.
fn decode(bytes: &[u8], topic: &str, partition: u32) -> Result<(u32, PartitionState), String> {
    let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        let v1: legacy::V1 = postcard::from_bytes(bytes).map_err(|e| format!("format 1: {e}"))?;
        return Ok((1, legacy::V2::from(v1).into_state(topic, partition)));
    };
    let (format, body) = rest.split_first_chunk::<4>().ok_or("truncated header")?;
    match u32::from_le_bytes(*format) {
        2 => {
            let v2: legacy::V2 = postcard::from_bytes(body).map_err(|e| format!("format 2: {e}"))?;
            Ok((2, v2.into_state(topic, partition)))
        }
        FORMAT => {
            let snapshot: PartitionSnapshot = postcard::from_bytes(body).map_err(|e| format!("format {FORMAT}: {e}"))?;
            Ok((FORMAT, PartitionState::from_snapshot(topic, partition, snapshot)?))
        }
        other => Err(format!("format {other} is not known to this build (it reads 1 to {FORMAT})")),
    }
}

/// Formats this build no longer writes, and how each becomes the current state.
mod legacy {
    use serde::Deserialize;
    use shopflow_events::Id;

    use crate::state::{AccountsState, SearchState, CatalogState, InteractionState, InventoryState, PartitionSnapshot, PartitionState, Parts, ProductBase};
    use crate::views::{RequestRow, WarehouseRow};

    /// The tables formats 1 and 2 stored, in their order. postcard writes a nested struct's
    /// fields inline, so both formats embed this without any framing of their own.
    #[derive(Deserialize)]
    pub struct Tables {
        pub products: Vec<(Id, Product)>,
        pub categories: Vec<(Id, String)>,
        pub brands: Vec<(Id, String)>,
        pub suppliers: Vec<(Id, String)>,
        pub warehouses: Vec<(Id, WarehouseRow)>,
        pub stock: Vec<((Id, Id), i64)>,
        pub interactions: Vec<((Id, Id), i64)>,
        pub purchases: Vec<((Id, Id), i64)>,
        /// Open orders' lines.
        pub orders: Vec<(Id, Vec<(Id, Id, i64)>)>,
        pub window: Vec<(i64, Id, i64)>,
        pub recent: Vec<uuid::Uuid>,
    }

    /// A product as formats 1 and 2 stored it: before creation times and ratings.
    #[derive(Deserialize)]
    pub struct Product {
        pub name: String,
        pub description: String,
        pub price: shopflow_events::Money,
        pub sku: String,
        pub category_id: Id,
        pub brand_id: Id,
        pub supplier_id: Id,
    }

    impl From<Product> for ProductBase {
        fn from(p: Product) -> Self {
            // Unknown then: those builds kept neither (and ignored reviews).
            let (created_at, rating_sum, rating_count) = (0, 0, 0);
            let Product { name, description, price, sku, category_id, brand_id, supplier_id } = p;
            ProductBase { name, description, price, sku, category_id, brand_id, supplier_id, created_at, rating_sum, rating_count }
        }
    }

    /// Format 1: plain postcard, no header, no remap position, no idempotency index.
    #[derive(Deserialize)]
    pub struct V1 {
        pub next_offset: u64,
        pub tables: Tables,
    }

    /// Format 2: one flat struct, with the remap position and the idempotency index.
    #[derive(Deserialize)]
    pub struct V2 {
        pub next_offset: u64,
        pub remap_next: u64,
        pub latest_ts: i64,
        pub tables: Tables,
        pub requests: Vec<RequestRow>,
    }

    impl From<V1> for V2 {
        fn from(v1: V1) -> Self {
            V2 {
                next_offset: v1.next_offset,
                // Unknown: the whole remap is read once, as without a snapshot.
                remap_next: 0,
                latest_ts: v1.tables.window.iter().map(|(ts, _, _)| *ts).max().unwrap_or(0),
                tables: v1.tables,
                // Format 1 predates idempotency keys: no write carried one.
                requests: Vec::new(),
            }
        }
    }

    impl V2 {
        pub fn into_state(self, topic: &str, partition: u32) -> PartitionState {
            let t = self.tables;
            let parts = Parts {
                catalog: CatalogState {
                    products: t.products.into_iter().map(|(id, p)| (id, p.into())).collect(),
                    categories: t.categories.into_iter().collect(),
                    brands: t.brands.into_iter().collect(),
                    suppliers: t.suppliers.into_iter().collect(),
                    reviews: Default::default(),
                },
                inventory: InventoryState::from_stock(t.warehouses.into_iter().collect(), t.stock),
                interactions: InteractionState {
                    interactions: t.interactions.into_iter().collect(),
                    purchases: t.purchases.into_iter().collect(),
                    orders: t.orders.into_iter().collect(),
                    window: t.window.into_iter().collect(),
                },
                // Format 2 predates accounts: the pipeline did not read `users` then.
                accounts: AccountsState::default(),
                // Nor search synonyms.
                search: SearchState::default(),
                // Nor the order saga.
                ..Parts::default()
            };
            let core = PartitionSnapshot {
                next_offset: self.next_offset,
                remap_next: self.remap_next,
                latest_ts: self.latest_ts,
                recent: t.recent,
                requests: self.requests,
                sections: Vec::new(),
            };
            PartitionState::from_core(topic, partition, core, parts)
        }
    }
}

#[derive(Clone, Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, topic: &str, partition: u32) -> PathBuf {
        self.dir.join(format!("{topic}-{partition}.snap"))
    }

    /// The partition's state as of its snapshot; `None` when there is none, or when it cannot
    /// be used (then the partition is rebuilt from the log).
    pub fn load(&self, topic: &str, partition: u32) -> Result<Option<PartitionState>, SnapshotError> {
        let path = self.path(topic, partition);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SnapshotError::Io { path, source }),
        };
        match decode(&bytes, topic, partition) {
            Ok((format, state)) => {
                if format != FORMAT {
                    tracing::info!(path = %path.display(), from = format, to = FORMAT, "snapshot migrated");
                }
                Ok(Some(state))
            }
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "snapshot unusable, rebuilding the partition from the log");
                Ok(None)
            }
        }
    }

    pub fn save(&self, topic: &str, partition: u32, state: &PartitionState) -> Result<(), SnapshotError> {
        self.write(topic, partition, &state.to_snapshot())
    }

    /// Writes an already taken snapshot (so the caller can take it, and another thread write it).
    pub fn write(&self, topic: &str, partition: u32, snapshot: &PartitionSnapshot) -> Result<(), SnapshotError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SnapshotError::Io { path, source }
        };
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let path = self.path(topic, partition);
        let tmp = path.with_extension("snap.tmp");
        // A compact binary encoding: a snapshot of every row of a partition is written every
        // few seconds on a 2-core machine, and JSON encoding competed with the workers.
        let mut bytes = Vec::with_capacity(4096);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT.to_le_bytes());
        bytes.extend(postcard::to_allocvec(snapshot).expect("snapshots serialise"));
        let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        // After the snapshot is durable: where its remap entries end, for `remap_floor`. A
        // crash between the two leaves an older (smaller) mark, which is always safe.
        let mark = self.dir.join(format!("{topic}-{partition}.remap"));
        fs::write(&mark, snapshot.remap_next.to_string()).map_err(io(&mark))?;
        Ok(())
    }

    /// The least remap offset any of `partitions`' snapshots may still need: every `_remap`
    /// entry below it describes records all snapshots already hold, so the topic may be
    /// truncated there. `None` while some partition has no snapshot (it would replay from its
    /// first record and want every entry).
    pub fn remap_floor<'a>(&self, partitions: impl IntoIterator<Item = &'a (String, u32)>) -> Option<u64> {
        partitions
            .into_iter()
            .map(|(topic, partition)| {
                let mark = fs::read_to_string(self.dir.join(format!("{topic}-{partition}.remap"))).ok()?;
                mark.trim().parse::<u64>().ok()
            })
            .try_fold(u64::MAX, |floor, next| next.map(|n| floor.min(n)))
            .filter(|floor| *floor != u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::weights::InteractionWeights;
    use crate::state::Changes;
    use shopflow_events::types::StockReceived;
    use shopflow_events::{Envelope, Event};

    fn fixture_dir(format: u32) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/snapshot-format{format}"))
    }

    #[test]
    fn a_format_1_snapshot_is_migrated() {
        // Written by the build before snapshot versions existed (commit 5026359).
        let state = SnapshotStore::new(fixture_dir(1)).load("catalog", 0).unwrap().expect("the fixture loads");
        let rows = state.as_insertions();
        assert_eq!(state.next_offset, 2);
        assert_eq!(state.remap_next, 0, "unknown in format 1: the whole remap is read");
        assert_eq!(rows.products.len(), 1);
        assert_eq!(rows.products[0].0 .1.name, "Fixture Kettle");
        assert_eq!(rows.interactions.len(), 1);
    }

    #[test]
    fn a_format_2_snapshot_is_migrated_with_its_idempotency_index() {
        // Written by commit 8f5e3ed (one flat struct, before state parts had sections).
        let mut state = SnapshotStore::new(fixture_dir(2)).load("catalog", 0).unwrap().expect("the fixture loads");
        assert_eq!((state.next_offset, state.remap_next), (2, 17));
        let rows = state.as_insertions();
        assert_eq!(rows.products[0].0 .1.name, "Fixture Teapot");
        assert_eq!(rows.stock, vec![((("fixture-p2".into(), "w1".into()), 4), 1)]);
        assert_eq!(rows.requests.len(), 1);
        // The key it remembers still drops a repeat.
        let receipt = Event::StockReceived(StockReceived { product_id: "fixture-p2".into(), warehouse_id: "w1".into(), quantity: 4 });
        let mut repeat = Envelope::idempotent(receipt, shopflow_events::idempotent_event_id("admin", "fixture-key"), "fixture-fp".into());
        // Within the key's retention in log time (the fixture is weeks old by the wall clock).
        repeat.ts = rows.requests[0].0 .1.ts + 1_000;
        assert!(!state.apply(2, &repeat, &InteractionWeights::default(), &mut Changes::default()));
    }

    #[test]
    fn a_part_missing_from_a_snapshot_means_rebuild() {
        // A snapshot written before a part existed (or with another version of it) cannot say
        // what that part holds: the partition is rebuilt from the log.
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::new(dir.path());
        let mut snapshot = PartitionState::new("catalog", 0).to_snapshot();
        snapshot.sections.retain(|s| s.name != "inventory");
        store.write("catalog", 0, &snapshot).unwrap();
        assert!(store.load("catalog", 0).unwrap().is_none());
        let mut snapshot = PartitionState::new("catalog", 1).to_snapshot();
        snapshot.sections.iter_mut().for_each(|s| s.version += 1);
        store.write("catalog", 1, &snapshot).unwrap();
        assert!(store.load("catalog", 1).unwrap().is_none());
    }

    #[test]
    fn the_current_format_round_trips_with_its_idempotency_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::new(dir.path());
        let mut state = PartitionState::new("inventory", 3);
        let receipt = Event::StockReceived(StockReceived { product_id: "p".into(), warehouse_id: "w".into(), quantity: 5 });
        let keyed = Envelope::idempotent(receipt, shopflow_events::idempotent_event_id("admin", "k1"), "fp".into());
        assert!(state.apply(7, &keyed, &InteractionWeights::default(), &mut Changes::default()));
        store.save("inventory", 3, &state).unwrap();

        let mut restored = store.load("inventory", 3).unwrap().unwrap();
        assert_eq!(restored, state);
        let again = Envelope { ts: keyed.ts + 1, ..keyed };
        assert!(!restored.apply(8, &again, &InteractionWeights::default(), &mut Changes::default()), "the repeat is dropped after a restart");
    }

    #[test]
    fn an_unknown_or_unreadable_snapshot_means_rebuild_not_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::new(dir.path());
        fs::write(dir.path().join("catalog-0.snap"), [MAGIC.as_slice(), &99u32.to_le_bytes(), b"future"].concat()).unwrap();
        fs::write(dir.path().join("catalog-1.snap"), b"\xff\xff\xff garbage").unwrap();
        assert!(store.load("catalog", 0).unwrap().is_none());
        assert!(store.load("catalog", 1).unwrap().is_none());
    }
}
