//! A read replica: tails the changelog topics into its own in-memory views. Frontier markers
//! drive the same progress tracking the pipeline uses in-process, so consistency tokens work
//! across replicas: a replica answers a token once every worker's marker, in every changelog,
//! has passed the epoch that covers the token's offset.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use shopflow_ingest::{EventLog, LogError, Position, Record};

use crate::publish::{changelog_topic, VIEW_NAMES};
use crate::views::{ProgressReport, ViewUpdate, Views};

const MARKER_PREFIX: &[u8] = b"__frontier__/";

/// Starts the tailing thread. It runs until `stop` is raised.
pub fn spawn(log: Arc<dyn EventLog>, views: Arc<Views>, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>, LogError> {
    let mut from = Vec::new();
    for view in VIEW_NAMES {
        let topic = changelog_topic(view);
        let partitions = futures::executor::block_on(log.partitions(&topic))?;
        from.extend((0..partitions).map(|p| Position::new(topic.clone(), p, 0)));
    }
    let mut reader = log.reader(&from)?;
    Ok(std::thread::Builder::new()
        .name("replica".into())
        .spawn(move || {
            let mut pending: Vec<ViewUpdate> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let records = match reader.poll(10_000, Duration::from_millis(50)) {
                    Ok(records) => records,
                    Err(error) => {
                        tracing::warn!(%error, "changelog read failed");
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                };
                for record in records {
                    apply(&record, &views, &mut pending);
                }
                views.apply(pending.drain(..));
            }
        })
        .expect("spawning a thread succeeds"))
}

fn apply(record: &Record, views: &Views, pending: &mut Vec<ViewUpdate>) {
    let Some(value) = &record.value else { return };
    if record.key.starts_with(MARKER_PREFIX) {
        match serde_json::from_slice::<ProgressReport>(value) {
            Ok(report) => {
                // Data before a marker in the same partition must be visible before it counts.
                views.apply(pending.drain(..));
                views.progress.report(as_view_reporter(&record.topic, report));
            }
            Err(error) => tracing::warn!(%error, topic = %record.topic, "unreadable frontier marker"),
        }
        return;
    }
    match serde_json::from_slice::<ViewUpdate>(value) {
        Ok(update) => pending.push(update),
        Err(error) => tracing::warn!(%error, topic = %record.topic, offset = record.offset, "unreadable changelog record"),
    }
}

/// Each (changelog, worker) pair reports separately: the views are complete below an epoch
/// only when every worker has marked it in every changelog.
fn as_view_reporter(topic: &str, report: ProgressReport) -> ProgressReport {
    let view = VIEW_NAMES.iter().position(|v| changelog_topic(v) == topic).unwrap_or(0);
    ProgressReport {
        worker: view * report.peers + report.worker,
        peers: VIEW_NAMES.len() * report.peers,
        frontier: report.frontier,
        offsets: report.offsets,
    }
}
