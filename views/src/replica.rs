//! A read replica: tails the changelog topics into its own in-memory views. Frontier markers
//! drive the same progress tracking the pipeline uses in-process, so consistency tokens work
//! across replicas: a replica answers a token once every worker's marker, in every partition
//! of every changelog, has passed the epoch that covers the token's offset.
//!
//! The layout it reads is described in [`crate::changelog`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use shopflow_ingest::{EventLog, LogError, Position, Record};

use crate::changelog::{changelog_topic, is_control_key, is_marker_key, record_partition, tombstone_from, Marker};
use crate::{ProgressReport, ViewUpdate, Views, VIEW_NAMES};

/// Marker keys of pipelines from before the key-partitioned layout.
const LEGACY_MARKER_PREFIX: &[u8] = b"__frontier__/";

/// Starts the tailing thread. It runs until `stop` is raised.
pub fn spawn(log: Arc<dyn EventLog>, views: Arc<Views>, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>, LogError> {
    let mut from = Vec::new();
    let mut topics = Vec::new();
    for view in VIEW_NAMES {
        let topic = changelog_topic(view);
        let partitions = futures::executor::block_on(log.partitions(&topic))?;
        from.extend((0..partitions).map(|p| Position::new(topic.clone(), p, 0)));
        topics.push((view, partitions));
    }
    let mut tail = Tail::new(views, &topics);
    let mut reader = log.reader(&from)?;
    Ok(std::thread::Builder::new()
        .name("replica".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let records = match reader.poll(10_000, Duration::from_millis(50)) {
                    Ok(records) => records,
                    Err(error) => {
                        tracing::warn!(%error, "changelog read failed");
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                };
                for record in &records {
                    tail.apply(record);
                }
                tail.flush();
            }
        })
        .expect("spawning a thread succeeds"))
}

#[derive(Clone, Copy, Debug)]
struct TopicLayout {
    view: &'static str,
    partitions: u32,
    /// Index of this topic's partition 0 among the partitions of all changelogs.
    base: usize,
}

/// The replica's reading of the changelogs: updates into the views, markers into progress.
struct Tail {
    views: Arc<Views>,
    topics: HashMap<String, TopicLayout>,
    /// Partitions of all changelogs together.
    slots: usize,
    shape: Shape,
    pending: Vec<ViewUpdate>,
    /// Topics for which a misplaced record was reported (once each).
    misplaced_reported: Vec<&'static str>,
    /// The run generation of each worker index's latest markers (see [`Tail::marker`]).
    generations: HashMap<usize, u64>,
}

impl Tail {
    fn new(views: Arc<Views>, topics: &[(&'static str, u32)]) -> Self {
        let mut layout = HashMap::new();
        let mut slots = 0;
        for (view, partitions) in topics {
            layout.insert(changelog_topic(view), TopicLayout { view, partitions: *partitions, base: slots });
            slots += *partitions as usize;
        }
        Self {
            views,
            topics: layout,
            slots,
            shape: Shape::default(),
            pending: Vec::new(),
            misplaced_reported: Vec::new(),
            generations: HashMap::new(),
        }
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.views.apply(self.pending.drain(..));
        }
    }

    fn apply(&mut self, record: &Record) {
        let Some(layout) = self.topics.get(&*record.topic).copied() else { return };
        if record.partition >= layout.partitions {
            return;
        }
        if is_control_key(&record.key) {
            if is_marker_key(&record.key) {
                self.marker(layout, record);
            }
            return;
        }
        if record.partition != record_partition(&record.key, layout.partitions) {
            // A row from an older pipeline that placed records by worker: its key's current
            // row (or tombstone) lives in the key's own partition, where order is kept, while
            // this one could be stale and would race with it. Never written by this layout.
            if !self.misplaced_reported.contains(&layout.view) {
                self.misplaced_reported.push(layout.view);
                tracing::warn!(
                    topic = %record.topic, partition = record.partition, offset = record.offset,
                    "changelog record outside its key's partition (older layout?) ignored; further ones are ignored silently"
                );
            }
            return;
        }
        let update = match &record.value {
            None => match tombstone_from(layout.view, &record.key) {
                Some(delete) => delete,
                None => {
                    tracing::warn!(topic = %record.topic, offset = record.offset, "tombstone with an unreadable key");
                    return;
                }
            },
            Some(value) => match serde_json::from_slice::<ViewUpdate>(value) {
                Ok(update) => update,
                Err(_) if record.key.starts_with(LEGACY_MARKER_PREFIX) => return,
                Err(error) => {
                    tracing::warn!(%error, topic = %record.topic, offset = record.offset, "unreadable changelog record");
                    return;
                }
            },
        };
        self.pending.push(update);
    }

    fn marker(&mut self, layout: TopicLayout, record: &Record) {
        let Some(value) = &record.value else { return };
        let marker = match serde_json::from_slice::<Marker>(value) {
            Ok(marker) => marker,
            Err(error) => {
                tracing::warn!(%error, topic = %record.topic, "unreadable frontier marker");
                return;
            }
        };
        let report = marker.report;
        if report.worker >= report.peers {
            tracing::warn!(topic = %record.topic, worker = report.worker, peers = report.peers, "frontier marker of no worker");
            return;
        }
        if !self.shape.admit(marker.generation, report.peers) {
            return;
        }
        // A restarted worker numbers its epochs afresh, possibly below where its previous run
        // stopped, so its new markers would never pass the old run's last frontier: its
        // reports of the earlier run are forgotten, in every partition, the first time a
        // marker of the new run is read, and the earlier run's markers still unread in other
        // partitions are ignored. Until the new run's marker is read in every partition, the
        // frontier waits (an old marker does not vouch for the new run's data).
        let known = self.generations.entry(report.worker).or_insert(marker.generation);
        if marker.generation < *known {
            return;
        }
        if marker.generation > *known {
            *known = marker.generation;
            let (worker, peers) = (report.worker, report.peers);
            self.views.progress.forget((0..self.slots).map(|slot| slot * peers + worker));
        }
        // Data before a marker in the same partition must be visible before it counts.
        self.flush();
        let slot = layout.base + record.partition as usize;
        self.views.progress.report(as_view_reporter(slot, self.slots, report));
    }
}

/// Progress counts a "worker" as having reached F once its report says so, and the views as
/// complete below the least F over all workers. A pipeline worker's updates spread over every
/// partition of every changelog (partitioned by key), and the partitions are read
/// independently, so its marker ≥ F read in one partition says nothing about its data still
/// unread in another. Hence each (changelog partition, worker) pair reports as a worker of its
/// own — `slot * peers + worker`, with `slots * peers` of them, where `slot` numbers the
/// partitions of all changelogs — and worker w counts as at F for view V only once its marker
/// ≥ F was read in every partition of V (and, for the views as a whole, of every changelog).
/// Every pair carries the worker's same report (same frontier, same source offsets), so the
/// offsets covered at the least frontier are exactly the worker's.
///
/// A new cluster shape (other peer count) changes the pair count, which makes Progress forget
/// the reports of the old shape; which shape is current is decided by [`Shape`].
fn as_view_reporter(slot: usize, slots: usize, report: ProgressReport) -> ProgressReport {
    ProgressReport {
        worker: slot * report.peers + report.worker,
        peers: slots * report.peers,
        frontier: report.frontier,
        offsets: report.offsets,
    }
}

/// The current cluster shape, from marker generations. After a rescale the compacted topics
/// still hold markers of the old shape (compaction only supersedes a marker key that the new
/// shape writes again, and only eventually), and a cold replica reads the partitions in no
/// particular order relative to each other: old and new markers interleave. Counting both
/// would flip Progress between shapes (each flip forgets every report), and stale markers of
/// worker indexes the new shape lacks would hold the frontier back forever.
///
/// The rule: the marker with the greatest generation seen so far (runs are ordered by
/// generation, see [`Marker::generation`]) defines the shape's peer count; a marker of a
/// smaller generation counts only if it has that peer count (a worker of the same run whose
/// run record came earlier, or a same-shape earlier run whose markers are simply superseded
/// by the same worker indexes' newer ones). Markers of other shapes from older runs are
/// ignored, so the shape changes once per run, never back.
#[derive(Debug, Default)]
struct Shape {
    /// (greatest generation seen, peers of that marker)
    current: Option<(u64, usize)>,
}

impl Shape {
    fn admit(&mut self, generation: u64, peers: usize) -> bool {
        match self.current {
            Some((latest, shape)) if generation <= latest => peers == shape,
            _ => {
                self.current = Some((generation, peers));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changelog::marker_key;
    use crate::ProductRow;
    use shopflow_events::Id;

    const VIEWS: [(&str, u32); 2] = [("products", 2), ("stock", 2)];

    fn tail() -> Tail {
        Tail::new(Arc::new(Views::new()), &VIEWS)
    }

    fn record(topic: &str, partition: u32, key: &[u8], value: Option<Vec<u8>>) -> Record {
        Record { topic: topic.into(), partition, offset: 0, key: key.to_vec(), value, timestamp_ms: 0 }
    }

    fn marker(topic: &str, partition: u32, generation: u64, worker: usize, peers: usize, frontier: u64, offset: u64) -> Record {
        let marker = Marker {
            generation,
            report: ProgressReport {
                worker,
                peers,
                frontier,
                offsets: vec![Position::new("catalog", worker as u32, offset)],
            },
        };
        record(topic, partition, &marker_key(worker), Some(serde_json::to_vec(&marker).unwrap()))
    }

    /// Markers of one worker in every partition of every changelog.
    fn round(tail: &mut Tail, generation: u64, worker: usize, peers: usize, frontier: u64, offset: u64) {
        for (view, partitions) in VIEWS {
            for p in 0..partitions {
                tail.apply(&marker(&changelog_topic(view), p, generation, worker, peers, frontier, offset));
            }
        }
    }

    fn product(id: &str, name: &str) -> ViewUpdate {
        ViewUpdate::Product { key: Id::from(id), row: Some(ProductRow::sample(id, name)) }
    }

    fn data(update: &ViewUpdate, value: Option<Vec<u8>>) -> Record {
        let key = update.key_bytes();
        record(&changelog_topic(update.view_name()), record_partition(&key, 2), &key, value)
    }

    #[test]
    fn a_worker_counts_at_a_frontier_only_once_its_marker_is_read_in_every_partition() {
        let mut tail = tail();
        round(&mut tail, 1, 0, 2, 10, 5);
        // Worker 1: marker read in every partition but one.
        tail.apply(&marker("changelog.products", 0, 1, 1, 2, 10, 7));
        tail.apply(&marker("changelog.products", 1, 1, 1, 2, 10, 7));
        tail.apply(&marker("changelog.stock", 0, 1, 1, 2, 10, 7));
        assert_eq!(tail.views.progress.frontier(), 0);
        assert!(!tail.views.progress.has_passed(&[Position::new("catalog", 1, 6)]));
        tail.apply(&marker("changelog.stock", 1, 1, 1, 2, 10, 7));
        assert_eq!(tail.views.progress.frontier(), 10);
        assert!(tail.views.progress.has_passed(&[Position::new("catalog", 0, 4), Position::new("catalog", 1, 6)]));
        // A later marker of worker 0 in one partition does not move anything on its own.
        tail.apply(&marker("changelog.products", 1, 1, 0, 2, 20, 9));
        assert_eq!(tail.views.progress.frontier(), 10);
        assert!(!tail.views.progress.has_passed(&[Position::new("catalog", 0, 8)]));
    }

    #[test]
    fn tombstones_delete_and_data_is_visible_before_its_marker_counts() {
        let mut tail = tail();
        let kettle = product("p-1", "Kettle");
        tail.apply(&data(&kettle, Some(serde_json::to_vec(&kettle).unwrap())));
        round(&mut tail, 1, 0, 1, 10, 1);
        assert_eq!(tail.views.products.get(&Id::from("p-1")).unwrap().name, "Kettle");
        // A tombstone keyed by the view key deletes the row.
        tail.apply(&data(&ViewUpdate::Product { key: Id::from("p-1"), row: None }, None));
        tail.flush();
        assert!(tail.views.products.get(&Id::from("p-1")).is_none());
        // So does the older JSON delete.
        tail.apply(&data(&kettle, Some(serde_json::to_vec(&kettle).unwrap())));
        let delete = ViewUpdate::Product { key: Id::from("p-1"), row: None };
        tail.apply(&data(&delete, Some(serde_json::to_vec(&delete).unwrap())));
        tail.flush();
        assert!(tail.views.products.get(&Id::from("p-1")).is_none());
    }

    #[test]
    fn a_record_outside_its_keys_partition_is_ignored() {
        let mut tail = tail();
        let kettle = product("p-1", "Kettle");
        let key = kettle.key_bytes();
        let wrong = 1 - record_partition(&key, 2);
        tail.apply(&record("changelog.products", wrong, &key, Some(serde_json::to_vec(&kettle).unwrap())));
        tail.flush();
        assert!(tail.views.products.get(&Id::from("p-1")).is_none());
    }

    #[test]
    fn a_cold_replica_reading_old_and_new_shapes_interleaved_converges_on_the_new_one() {
        let mut tail = tail();
        // What a cold replica may read after a rescale from 2 workers (generation 5, 6) to 3
        // (generations 40, 41, 42): old and new markers, interleaved across partitions, and
        // even older markers of a 4-worker run whose worker 3 the new shape lacks.
        round(&mut tail, 1, 3, 4, 50, 0);
        round(&mut tail, 5, 0, 2, 100, 10);
        round(&mut tail, 6, 1, 2, 100, 11);
        assert_eq!(tail.views.progress.frontier(), 100, "the old shape alone is complete");
        // Products partition 0 has the new run's markers; other partitions are read later.
        for worker in 0..3 {
            tail.apply(&marker("changelog.products", 0, 40 + worker as u64, worker, 3, 200, 20 + worker as u64));
        }
        // The old shape's markers of the other partitions, read after the new ones: ignored,
        // they must not flip the shape back.
        round(&mut tail, 6, 1, 2, 110, 12);
        round(&mut tail, 1, 3, 4, 60, 0);
        assert_eq!(tail.views.progress.frontier(), 100);
        for worker in 0..3 {
            round(&mut tail, 40 + worker as u64, worker, 3, 200, 20 + worker as u64);
        }
        assert_eq!(tail.views.progress.frontier(), 200, "worker 3 of the old 4-worker run holds nothing back");
        assert!(tail.views.progress.has_passed(&[
            Position::new("catalog", 0, 19),
            Position::new("catalog", 1, 20),
            Position::new("catalog", 2, 21)
        ]));
    }

    #[test]
    fn a_restarted_worker_whose_epochs_start_below_its_last_frontier_still_moves_the_views() {
        let mut tail = tail();
        round(&mut tail, 1, 0, 1, 1_000, 5);
        assert!(tail.views.progress.has_passed(&[Position::new("catalog", 0, 4)]));
        // The next run's clock is behind where the last one stopped.
        tail.apply(&marker("changelog.products", 0, 7, 0, 1, 400, 6));
        // The old run's marker read late in another partition counts for nothing now.
        tail.apply(&marker("changelog.stock", 1, 1, 0, 1, 1_000, 5));
        round(&mut tail, 7, 0, 1, 500, 8);
        assert!(tail.views.progress.has_passed(&[Position::new("catalog", 0, 7)]), "the new run's offsets count");
        assert!(!tail.views.progress.has_passed(&[Position::new("catalog", 0, 8)]));
    }

    #[test]
    fn a_new_run_counts_only_once_its_marker_is_read_in_every_partition() {
        let mut tail = tail();
        round(&mut tail, 1, 0, 1, 1_000, 5);
        for (topic, partition) in [("changelog.products", 0), ("changelog.products", 1), ("changelog.stock", 0)] {
            tail.apply(&marker(topic, partition, 7, 0, 1, 2_000, 9));
        }
        assert!(!tail.views.progress.has_passed(&[Position::new("catalog", 0, 6)]), "stock partition 1 is unread");
        tail.apply(&marker("changelog.stock", 1, 7, 0, 1, 2_000, 9));
        assert!(tail.views.progress.has_passed(&[Position::new("catalog", 0, 8)]));
    }

    #[test]
    fn shapes_change_with_newer_generations_only() {
        let mut shape = Shape::default();
        assert!(shape.admit(5, 2));
        assert!(shape.admit(3, 2), "same shape, earlier run record");
        assert!(!shape.admit(4, 3), "older run of another shape");
        assert!(shape.admit(9, 3), "a newer run of another shape takes over");
        assert!(!shape.admit(6, 2));
        assert!(shape.admit(8, 3));
    }
}
