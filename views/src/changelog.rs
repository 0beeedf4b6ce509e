//! The changelog export of scale-out mode, and what a replica needs to read it back.
//!
//! Every view goes to its compacted topic `changelog.<view>`:
//!
//! - **Data.** Key: [`ViewUpdate::key_bytes`] (`id`, or `a/b` for pair keys). Partition:
//!   [`partition_for`] of the key over the topic's partition count (murmur2, the same function
//!   as for events) — never the worker, whose index changes with the worker count. A key lives
//!   in exactly one partition whatever the pipeline's shape, so compaction keeps its latest
//!   record and a replica reads its changes in the order they were published. Value: the
//!   JSON `ViewUpdate` of an upsert; a delete is a real tombstone (no value), which compaction
//!   eventually removes and [`tombstone_from`] turns back into the delete.
//! - **Control records**, keyed `#…` (`#` is never in an id, so never in a view key):
//!   - `#frontier/<worker>`: a frontier [`Marker`], written by each worker to every partition
//!     of every changelog, after its data (see [`ChangelogSink`]).
//!   - `#run/<worker>`: appended once by each worker's sink when it starts; its offset is the
//!     worker's run *generation*, carried in its markers, so a replica can tell markers of an
//!     earlier cluster shape (left in the compacted topics after a rescale) from current ones.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shopflow_events::partition_for;
use shopflow_ingest::{EventLog, LogError, OutRecord, Position};

use crate::sink::ViewSink;
use crate::{ProgressReport, ViewUpdate, VIEW_NAMES};

/// Least time between two marker rounds of one worker while it publishes.
pub const DEFAULT_MARKER_INTERVAL: Duration = Duration::from_millis(100);
/// Least time between two marker rounds of an idle worker (nothing published, offsets
/// unchanged): the frontier still moves for the replicas' lag headers, just less often.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

const MARKER_PREFIX: &[u8] = b"#frontier/";
const RUN_PREFIX: &[u8] = b"#run/";

pub fn changelog_topic(view: &str) -> String {
    format!("changelog.{view}")
}

/// The key of a worker's frontier marker in every partition of a changelog topic; compaction
/// keeps the latest per worker index (a later run's worker of the same index supersedes it).
pub fn marker_key(worker: usize) -> Vec<u8> {
    [MARKER_PREFIX, worker.to_string().as_bytes()].concat()
}

fn run_key(worker: usize) -> Vec<u8> {
    [RUN_PREFIX, worker.to_string().as_bytes()].concat()
}

/// A control record (marker, run record) rather than a row of the view.
pub fn is_control_key(key: &[u8]) -> bool {
    key.first() == Some(&b'#')
}

pub fn is_marker_key(key: &[u8]) -> bool {
    key.starts_with(MARKER_PREFIX)
}

/// The changelog partition of a view key: a function of the key and the topic's partition
/// count only.
pub fn record_partition(key: &[u8], partitions: u32) -> u32 {
    partition_for(key, partitions)
}

/// The delete of `key` (as [`ViewUpdate::key_bytes`] wrote it) from `view` (as
/// [`ViewUpdate::view_name`] names it): what a tombstone in `changelog.<view>` means. `None`
/// for an unknown view or a key that is not a valid key of that view.
pub fn tombstone_from(view: &str, key: &[u8]) -> Option<ViewUpdate> {
    ViewUpdate::tombstone_from(view, key)
}

/// A frontier marker: a worker's progress report plus the generation of its run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Orders runs of the pipeline: the offset (+1) of the worker's `#run/` record, so a later
    /// run's markers carry a greater generation than any marker of an earlier run, whatever the
    /// clocks say. Workers of one run differ in generation (each appends its own run record);
    /// only the order between runs matters. 0 for markers from before generations existed.
    #[serde(default)]
    pub generation: u64,
    #[serde(flatten)]
    pub report: ProgressReport,
}

/// Scale-out mode: every view goes to its compacted changelog topic, partitioned by key (see
/// the module documentation), and frontier markers tell replicas when they have all of an
/// epoch.
///
/// Markers. One worker's updates spread over every partition, so its marker is written to
/// every partition of every changelog, after its data — a replica counts the worker at F for
/// a view only once it has read the worker's marker ≥ F in each of the view's partitions. A
/// marker is only written after every update of the epochs below its frontier has been
/// appended (it goes in the same append as this publication's data, after it, and earlier
/// publications' appends were acknowledged before), so markers are cumulative and skipping
/// some is harmless. They are rate-limited:
///
/// - while publishing (updates appended since the last marker, or the offsets moved): at most
///   one round per `marker_interval`;
/// - while idle: one round per heartbeat interval, so replicas' lag headers keep moving;
/// - the first publication and the last (the input closed) always end with a marker.
///
/// Publication happens on every frontier advance, at least every idle tick, so a marker
/// skipped for rate is written by a later publication within one interval.
pub struct ChangelogSink {
    log: Arc<dyn EventLog>,
    partitions: u32,
    policy: MarkerPolicy,
    /// Resolved on the first publication.
    layout: Vec<ViewTopic>,
    generation: Option<u64>,
    unknown_views_reported: Vec<&'static str>,
}

struct ViewTopic {
    view: &'static str,
    topic: String,
    partitions: u32,
}

impl ChangelogSink {
    /// `partitions` is the configured partition count of the changelog topics; the count of
    /// the existing topics, which the replicas also use, wins if they differ.
    pub fn new(log: Arc<dyn EventLog>, partitions: u32) -> Self {
        Self {
            log,
            partitions,
            policy: MarkerPolicy::new(DEFAULT_MARKER_INTERVAL, DEFAULT_HEARTBEAT_INTERVAL),
            layout: Vec::new(),
            generation: None,
            unknown_views_reported: Vec::new(),
        }
    }

    /// Least time between two marker rounds while publishing (default 100 ms).
    pub fn with_marker_interval(mut self, interval: Duration) -> Self {
        self.policy.interval = interval;
        self
    }

    /// Least time between two marker rounds while idle (default 1 s).
    pub fn with_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.policy.heartbeat = interval;
        self
    }

    /// The topics' partition counts, and this worker's generation (its run record's offset).
    fn start(&mut self, report: &ProgressReport) {
        if self.layout.is_empty() {
            for view in VIEW_NAMES {
                let topic = changelog_topic(view);
                let partitions =
                    until_ok("changelog partition count", || futures::executor::block_on(self.log.partitions(&topic)));
                if partitions != self.partitions {
                    tracing::warn!(
                        %topic, partitions, configured = self.partitions,
                        "changelog topic exists with another partition count; using the topic's"
                    );
                }
                self.layout.push(ViewTopic { view, topic, partitions });
            }
        }
        if self.generation.is_none() {
            let record = OutRecord {
                topic: self.layout[0].topic.clone(),
                partition: Some(0),
                key: run_key(report.worker),
                value: Some(
                    serde_json::to_vec(&serde_json::json!({"worker": report.worker, "peers": report.peers}))
                        .expect("json serialises"),
                ),
            };
            let positions =
                until_ok("changelog run record", || futures::executor::block_on(self.log.append(vec![record.clone()])));
            self.generation = Some(positions[0].offset + 1);
        }
    }

    fn data_record(&mut self, update: ViewUpdate) -> Option<OutRecord> {
        let view = update.view_name();
        let Some(target) = self.layout.iter().find(|t| t.view == view) else {
            if !self.unknown_views_reported.contains(&view) {
                self.unknown_views_reported.push(view);
                tracing::error!(view, "no changelog topic for this view; its updates are not exported");
            }
            return None;
        };
        let key = update.key_bytes();
        // A tombstone only when a replica can turn it back into exactly this delete; anything
        // else (a key that is not a valid id) keeps the JSON form, which replicas also apply.
        let value = if tombstone_from(view, &key).as_ref() == Some(&update) {
            None
        } else {
            Some(serde_json::to_vec(&update).expect("view updates serialise"))
        };
        Some(OutRecord { topic: target.topic.clone(), partition: Some(record_partition(&key, target.partitions)), key, value })
    }
}

impl ViewSink for ChangelogSink {
    fn publish(&mut self, updates: Vec<ViewUpdate>, report: ProgressReport) {
        self.publish_at(updates, report, Instant::now());
    }
}

impl ChangelogSink {
    /// `publish` as of `now`, the clock the marker rate follows (tests move it).
    fn publish_at(&mut self, updates: Vec<ViewUpdate>, report: ProgressReport, now: Instant) {
        self.start(&report);
        let mut records: Vec<OutRecord> = updates.into_iter().filter_map(|update| self.data_record(update)).collect();
        let marker = self.policy.due(now, &report, !records.is_empty());
        if let Some(frontier) = marker {
            let marker = Marker {
                generation: self.generation.unwrap_or_default(),
                report: ProgressReport { frontier, ..report.clone() },
            };
            let value = serde_json::to_vec(&marker).expect("markers serialise");
            for target in &self.layout {
                for partition in 0..target.partitions {
                    records.push(OutRecord {
                        topic: target.topic.clone(),
                        partition: Some(partition),
                        key: marker_key(report.worker),
                        value: Some(value.clone()),
                    });
                }
            }
        }
        if records.is_empty() {
            return;
        }
        // Publication is on the exposure path: a marker must not be visible before its data,
        // and nothing is exposed before it is durable, so this waits for the acknowledgement.
        // Records of one partition keep their order within an append: data, then marker.
        until_ok("changelog append", || futures::executor::block_on(self.log.append(records.clone())));
        if let Some(frontier) = marker {
            self.policy.marked(now, frontier, &report.offsets);
        }
    }
}

/// Retries a log operation until it succeeds (the log being briefly unavailable is no reason
/// to lose the pipeline, and publication must not skip anything).
fn until_ok<T>(what: &str, mut operation: impl FnMut() -> Result<T, LogError>) -> T {
    let mut attempt = 0u32;
    loop {
        match operation() {
            Ok(value) => return value,
            Err(error) => {
                attempt += 1;
                tracing::warn!(%error, attempt, "{what} failed, retrying");
                std::thread::sleep(Duration::from_millis(50 * u64::from(attempt.min(20))));
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// When a publication ends with a marker round.
#[derive(Debug)]
struct MarkerPolicy {
    interval: Duration,
    heartbeat: Duration,
    /// When the last marker round was written; `None` before the first.
    last: Option<Instant>,
    /// What the last marker said.
    marked_frontier: u64,
    marked_offsets: Vec<Position>,
    /// Updates were appended after the last marker.
    unmarked_data: bool,
    /// Greatest finite frontier seen.
    seen_frontier: u64,
}

impl MarkerPolicy {
    fn new(interval: Duration, heartbeat: Duration) -> Self {
        Self {
            interval,
            heartbeat,
            last: None,
            marked_frontier: 0,
            marked_offsets: Vec::new(),
            unmarked_data: false,
            seen_frontier: 0,
        }
    }

    /// The frontier of the marker this publication ends with, if it ends with one. `data`:
    /// the publication appends updates (before the marker).
    fn due(&mut self, now: Instant, report: &ProgressReport, data: bool) -> Option<u64> {
        self.unmarked_data |= data;
        if report.frontier == u64::MAX {
            // The input closed (the pipeline is stopping): everything this worker will ever
            // publish is appended, so the last marker is written whatever the rate. Not at
            // u64::MAX though: a replica keeps a worker's greatest frontier, and "complete
            // forever" would make it ignore every marker of the next run. Every epoch of this
            // run lies below "now" (epochs are wall-clock milliseconds), and a marker covers all
            // data before it whatever its frontier.
            return Some(self.seen_frontier.max(self.marked_frontier).max(now_ms()) + 1);
        }
        self.seen_frontier = self.seen_frontier.max(report.frontier);
        let Some(last) = self.last else { return Some(report.frontier) };
        if report.frontier <= self.marked_frontier {
            return None;
        }
        let active = self.unmarked_data || report.offsets != self.marked_offsets;
        let wait = if active { self.interval } else { self.heartbeat };
        (now.saturating_duration_since(last) >= wait).then_some(report.frontier)
    }

    /// A marker with this frontier and these offsets was appended.
    fn marked(&mut self, now: Instant, frontier: u64, offsets: &[Position]) {
        self.last = Some(now);
        self.marked_frontier = frontier;
        self.marked_offsets = offsets.to_vec();
        self.unmarked_data = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopflow_events::Id;
    use crate::{InteractionRow, ProductRow, PurchaseRow, RequestRow, StockRow, TrendingRow, WarehouseRow};
    use shopflow_ingest::{EmbeddedLog, Record, TopicSpec};

    fn product(id: &str, name: &str) -> ViewUpdate {
        ViewUpdate::Product { key: Id::from(id), row: Some(ProductRow::sample(id, name)) }
    }

    /// An upsert and a delete of every view.
    fn samples() -> Vec<ViewUpdate> {
        let (p, w, u) = (Id::from("p-1"), Id::from("w:2"), Id::from("u_3.x"));
        let event = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        vec![
            product("p-1", "Kettle"),
            ViewUpdate::Product { key: p.clone(), row: None },
            ViewUpdate::Stock {
                key: (p.clone(), w.clone()),
                row: Some(StockRow { product_id: p.clone(), warehouse_id: w.clone(), warehouse_name: None, quantity: 3 }),
            },
            ViewUpdate::Stock { key: (p.clone(), w.clone()), row: None },
            ViewUpdate::Warehouse {
                key: w.clone(),
                row: Some(WarehouseRow { warehouse_id: w.clone(), name: "W".into(), location: String::new() }),
            },
            ViewUpdate::Warehouse { key: w.clone(), row: None },
            ViewUpdate::Interaction {
                key: (u.clone(), p.clone()),
                row: Some(InteractionRow { user_id: u.clone(), product_id: p.clone(), weight: 4 }),
            },
            ViewUpdate::Interaction { key: (u.clone(), p.clone()), row: None },
            ViewUpdate::Purchase {
                key: (u.clone(), p.clone()),
                row: Some(PurchaseRow { user_id: u.clone(), product_id: p.clone(), quantity: 1 }),
            },
            ViewUpdate::Purchase { key: (u.clone(), p.clone()), row: None },
            ViewUpdate::Trending {
                key: p.clone(),
                row: Some(TrendingRow { product_id: p.clone(), category_id: None, score: 9 }),
            },
            ViewUpdate::Trending { key: p.clone(), row: None },
            ViewUpdate::Request {
                key: event,
                row: Some(RequestRow {
                    event_id: event,
                    fingerprint: "f".into(),
                    topic: "catalog".into(),
                    partition: 1,
                    offset: 2,
                    ts: 3,
                }),
            },
            ViewUpdate::Request { key: event, row: None },
        ]
    }

    fn is_delete(update: &ViewUpdate) -> bool {
        serde_json::to_value(update).unwrap()["row"].is_null()
    }

    #[test]
    fn a_tombstone_turns_back_into_the_delete_of_the_right_view_and_key() {
        // The codec is generated per view by the registry from its key type; the samples cover
        // every key type (single id, pair, uuid).
        let samples = samples();
        for update in samples.iter().filter(|u| is_delete(u)) {
            assert_eq!(tombstone_from(update.view_name(), &update.key_bytes()).as_ref(), Some(update));
        }
        assert_eq!(tombstone_from("products", b"a/b"), None, "a pair is not a product key");
        assert_eq!(tombstone_from("stock", b"a"), None, "a single id is not a stock key");
        assert_eq!(tombstone_from("stock", b"a/b/c"), None);
        assert_eq!(tombstone_from("products", &marker_key(0)), None, "control keys are not view keys");
        assert_eq!(tombstone_from("nothing", b"a"), None);
    }

    #[test]
    fn the_partition_of_a_key_does_not_depend_on_the_worker() {
        // The bug this replaces: partition = worker % partitions, so a rescale moved keys.
        for i in 0..200 {
            let key = format!("p-{i}");
            let expected = partition_for(key.as_bytes(), 4);
            assert_eq!(record_partition(key.as_bytes(), 4), expected);
        }
    }

    fn embedded(partitions: u32) -> (tempfile::TempDir, Arc<dyn EventLog>) {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        for view in VIEW_NAMES {
            futures::executor::block_on(log.ensure_topic(&TopicSpec::new(changelog_topic(view), partitions).compacted()))
                .unwrap();
        }
        (dir, Arc::new(log))
    }

    fn read_all(log: &dyn EventLog, topic: &str) -> Vec<Record> {
        let ends = futures::executor::block_on(log.end_offsets(topic)).unwrap();
        let from: Vec<Position> = (0..ends.len() as u32).map(|p| Position::new(topic, p, 0)).collect();
        let total: u64 = ends.iter().sum();
        let mut reader = log.reader(&from).unwrap();
        let mut out = Vec::new();
        while (out.len() as u64) < total {
            let batch = reader.poll(10_000, Duration::from_secs(1)).unwrap();
            assert!(!batch.is_empty(), "the log has {total} records, read {}", out.len());
            out.extend(batch);
        }
        out
    }

    fn report(worker: usize, peers: usize, frontier: u64, offset: u64) -> ProgressReport {
        ProgressReport { worker, peers, frontier, offsets: vec![Position::new("catalog", worker as u32, offset)] }
    }

    #[test]
    fn every_worker_writes_a_key_to_its_one_partition_and_deletes_as_tombstones() {
        let (_dir, log) = embedded(4);
        // The same keys published by workers of a 2-worker and of a 3-worker run.
        for (worker, peers) in [(0, 2), (1, 2), (0, 3), (2, 3)] {
            let mut sink = ChangelogSink::new(log.clone(), 4);
            let mut updates: Vec<ViewUpdate> = (0..20).map(|i| product(&format!("p-{i}"), &format!("by {worker}/{peers}"))).collect();
            updates.push(ViewUpdate::Product { key: Id::from("p-3"), row: None });
            sink.publish(updates, report(worker, peers, 10, 1));
        }
        let records = read_all(log.as_ref(), "changelog.products");
        let data: Vec<&Record> = records.iter().filter(|r| !is_control_key(&r.key)).collect();
        assert_eq!(data.len(), 4 * 21);
        for record in &data {
            assert_eq!(record.partition, partition_for(&record.key, 4), "key {:?}", String::from_utf8_lossy(&record.key));
        }
        let deletes: Vec<&&Record> = data.iter().filter(|r| r.key == b"p-3").filter(|r| r.value.is_none()).collect();
        assert_eq!(deletes.len(), 4, "every delete is a tombstone");
        let markers: Vec<&Record> = records.iter().filter(|r| is_marker_key(&r.key)).collect();
        assert_eq!(markers.len(), 4 * 4, "one marker per publication in each of the 4 partitions");
        for partition in 0..4 {
            // In each partition, each worker's marker comes after that worker's data.
            let in_partition: Vec<&Record> = records.iter().filter(|r| r.partition == partition).collect();
            let last_marker = in_partition.iter().rposition(|r| is_marker_key(&r.key)).unwrap();
            assert!(in_partition[last_marker..].iter().skip(1).all(|r| is_control_key(&r.key)));
        }
        // Generations order runs: a later sink's markers carry a greater one.
        let generations: Vec<u64> = markers
            .iter()
            .filter(|r| r.partition == 0)
            .map(|r| serde_json::from_slice::<Marker>(r.value.as_deref().unwrap()).unwrap().generation)
            .collect();
        assert_eq!(generations.len(), 4);
        assert!(generations.windows(2).all(|w| w[0] < w[1]), "{generations:?}");
    }

    #[test]
    fn markers_are_rate_limited_and_the_last_one_is_never_dropped() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut policy = MarkerPolicy::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut written = Vec::new();
        let mut step = |policy: &mut MarkerPolicy, at: u64, frontier: u64, offset: u64, data: bool| {
            let due = policy.due(ms(at), &report(0, 1, frontier, offset), data);
            if let Some(f) = due {
                policy.marked(ms(at), f, &report(0, 1, frontier, offset).offsets);
                written.push((at, f));
            }
            due
        };
        assert_eq!(step(&mut policy, 0, 1, 0, false), Some(1), "the first publication is marked");
        // Busy: data every 10 ms; a marker at most every 100 ms.
        for at in (10..=300).step_by(10) {
            step(&mut policy, at, at + 1, at, true);
        }
        // Data at 305, then the frontier moves on without data: the marker for 305's data comes
        // at the first publication 100 ms after the last marker (not only at the heartbeat).
        assert_eq!(step(&mut policy, 305, 306, 305, true), None);
        assert_eq!(step(&mut policy, 350, 351, 305, false), None);
        assert_eq!(step(&mut policy, 400, 401, 305, false), Some(401));
        // Idle (no data, same offsets): one heartbeat per second.
        for at in (410..=2500).step_by(10) {
            step(&mut policy, at, at + 1, 305, false);
        }
        // Offsets moved (records read that changed nothing) count as activity.
        step(&mut policy, 2510, 2511, 306, false);
        step(&mut policy, 2600, 2601, 306, false);
        // The input closed: the last marker is written at once, at a finite frontier.
        let last = step(&mut policy, 2605, u64::MAX, 306, true).unwrap();
        assert!(last > 2601 && last < u64::MAX);
        assert_eq!(
            written,
            vec![(0, 1), (100, 101), (200, 201), (300, 301), (400, 401), (1400, 1401), (2400, 2401), (2510, 2511), (2605, last)]
        );
    }

    #[test]
    fn an_idle_sink_writes_heartbeats_not_a_marker_per_tick() {
        let (_dir, log) = embedded(2);
        let mut sink = ChangelogSink::new(log.clone(), 2)
            .with_marker_interval(Duration::from_millis(20))
            .with_heartbeat_interval(Duration::from_millis(300));
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut frontier = 1;
        // 100 idle ticks, 5 ms apart: 0.5 s of the sink's clock.
        for tick in 0..100 {
            frontier += 1;
            sink.publish_at(Vec::new(), report(0, 1, frontier, 0), ms(tick * 5));
        }
        let markers = read_all(log.as_ref(), "changelog.products").iter().filter(|r| is_marker_key(&r.key)).count();
        // The first round and one heartbeat (at 300 ms), 2 partitions each.
        assert_eq!(markers, 4, "{markers} markers");
        // Data then the frontier moving: the data's marker follows within the interval.
        sink.publish_at(vec![product("p-1", "x")], report(0, 1, frontier + 1, 1), ms(500));
        sink.publish_at(Vec::new(), report(0, 1, frontier + 2, 1), ms(525));
        let records = read_all(log.as_ref(), "changelog.products");
        let last = records.iter().rfind(|r| is_marker_key(&r.key)).unwrap();
        let marker: Marker = serde_json::from_slice(last.value.as_deref().unwrap()).unwrap();
        assert!(marker.report.frontier > frontier, "the marker covers the data");
    }
}
