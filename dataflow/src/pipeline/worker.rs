//! One timely worker: the four stages wired together. Source (stage 1) → state machine
//! (stage 2) → dataflow (stage 3: the jobs over the base collections) → publisher (stage 4,
//! `crate::publish`, attached to the dataflow's output). The loop below only moves records
//! between them and decides when an epoch is sealed.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shopflow_ingest::OutRecord;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::worker::Worker;

use super::machine::{RemapTruncation, StateMachine};
use super::side::SideWriter;
use super::source::Source;
use super::{append_durably, now_ms, PipelineError, Shared};
use crate::base::{Changes, Inputs};
use crate::jobs::{self, Epoch};
use crate::publish::{self, ChangelogSink, LocalSink, ViewSink};
use crate::remap::{RemapEntry, RemapHistory};
use crate::views::{ProgressReport, ViewUpdate};

/// Epochs sealed but not yet through the dataflow, at most: a slow dataflow slows reading
/// instead of queueing. (Records are only sealed into a new epoch while fewer than
/// `epochs_in_flight` are in flight; this bounds the idle epochs sealed meanwhile.)
const MAX_IN_FLIGHT: usize = 8;

/// Records re-appended during replay (remap entries, decisions, dead letters) are batched up
/// to this many per durable append.
const REPLAYED_SIDE_BATCH: usize = 5_000;

pub(super) fn run(worker: &mut Worker, shared: &Shared) -> Result<(), PipelineError> {
    let index = worker.index();
    let peers = worker.peers();
    let remap = Rc::new(RefCell::new(RemapHistory::default()));
    let mut inputs = Inputs::new();

    // Stages 3 and 4: the jobs, and publication of their output.
    let sink = sinks(shared);
    let probe: ProbeHandle<Epoch> = worker.dataflow::<Epoch, _, _>(|scope| {
        let base = inputs.collections(scope);
        let (probe, all) = jobs::views(&base).probe();
        publish::build(all.inner, index, peers, remap.clone(), sink);
        probe
    });

    // Stage 2: this worker's partitions (dealt round-robin over every source partition).
    let owned: Vec<(String, u32)> =
        shared.partitions.iter().enumerate().filter(|(i, _)| i % peers == index).map(|(_, tp)| tp.clone()).collect();
    // Worker 0 truncates `_remap` below what every partition's snapshot covers.
    let truncation = (index == 0).then(|| RemapTruncation { log: shared.log.clone(), partitions: shared.partitions.clone() });
    let mut machine = StateMachine::restore(&owned, &shared.config, truncation)?;
    // Stage 1: replays what the snapshots do not cover, then reads live.
    let mut source = Source::open(shared.log.clone(), &machine.next_offsets(), machine.remap_from())?;

    // The restored state enters in an epoch of its own, just before the first epoch that reads
    // records (replayed epochs lie in the past: before the first of them).
    let first: Epoch = source.recorded_epoch().unwrap_or_else(now_ms);
    let restored_at = first - 1;
    inputs.advance_to(restored_at);
    for mut rows in machine.insertions() {
        inputs.insert(&mut rows);
    }
    let mut epoch = first;
    inputs.advance_to(epoch);
    if let Some(partitions) = source.replaying() {
        tracing::info!(worker = index, ?partitions, "replaying recorded epochs");
    }
    tracing::info!(worker = index, peers, partitions = owned.len(), "pipeline worker started");
    remap.borrow_mut().push(restored_at, machine.positions());
    // The restored epoch is published alone before anything is read: consolidated together
    // with later epochs, a restored row deleted right after the restart would cancel out, and
    // its tombstone would never reach the changelogs, which still hold the row from before.
    while probe.less_equal(&restored_at) && !shared.stop.load(Ordering::Relaxed) {
        worker.step_or_park(Some(Duration::from_millis(1)));
    }

    let mut changes = Changes::default();
    let mut side: Vec<OutRecord> = Vec::new();
    let mut replayed_side: Vec<OutRecord> = Vec::new();
    let mut side_writer = SideWriter::new(shared.log.clone());
    let mut in_flight: VecDeque<Epoch> = VecDeque::new();
    let mut last_seal = Instant::now();
    let mut epoch_records = 0usize;
    let idle_tick = Duration::from_millis(shared.config.idle_tick_ms);
    let deadline_check = Duration::from_millis(shared.config.deadline_check_ms);
    let mut last_deadline_check = Instant::now();

    while !shared.stop.load(Ordering::Relaxed) {
        while in_flight.front().is_some_and(|e| !probe.less_equal(e)) {
            in_flight.pop_front();
        }
        // Nothing in flight: the poll waits (up to 1 ms) for records. Epochs in flight: it
        // only looks, and when there is nothing to read the worker parks until the dataflow
        // has work (messages from the other workers wake it) or 1 ms passes. Polling without
        // waiting and stepping in a loop spun both workers at a full core each whenever an
        // epoch was in flight, which at 100 orders/s over HTTP was most of the time: CPU the
        // server, payment worker and gateway then waited for.
        // An epoch waiting for room in the dataflow stops reading at `max_batch` records, so a
        // backlog still meets backpressure (a replayed epoch is read whole: it is recorded).
        let full = epoch_records >= shared.config.max_batch && !source.is_replaying();
        let wait = if in_flight.is_empty() { Duration::from_millis(1) } else { Duration::ZERO };
        let polled = if in_flight.len() < MAX_IN_FLIGHT && !full { source.poll(shared.config.max_batch, wait)? } else { None };
        let records = match polled {
            Some(records) if !records.is_empty() || in_flight.is_empty() => records,
            _ => {
                worker.step_or_park(Some(Duration::from_millis(1)));
                Vec::new()
            }
        };
        epoch_records += records.len();
        let epoch_read = epoch_records > 0;
        // The epoch's changes enter the dataflow when it is sealed, consolidated (below).
        machine.apply(&records, &mut changes, &mut side);

        let holding_back = epoch <= shared.data_epoch.load(Ordering::Acquire);
        let room = in_flight.len() < shared.config.epochs_in_flight.max(1);
        let due = if epoch_read { room } else { last_seal.elapsed() >= idle_tick };
        if source.epoch_complete(due || holding_back) {
            let folded = changes.rows();
            changes.consolidate();
            if folded > 0 {
                tracing::trace!(worker = index, epoch, folded, entered = changes.rows(), "epoch sealed");
            }
            inputs.insert(&mut changes);
            let offsets = machine.positions();
            if epoch_read {
                shared.data_epoch.fetch_max(epoch, Ordering::AcqRel);
                side.push(RemapEntry { worker: index, peers, epoch, offsets: offsets.clone() }.record());
                if source.is_replaying() {
                    // A replayed epoch's remap entry is durable already (replay follows it), and
                    // so were its decisions and dead letters, unless a crash split their append:
                    // they are appended again, idempotent by id, in batches rather than one
                    // durable append per epoch, and all before live reading starts. (The
                    // snapshot's remap position does not move during replay either.)
                    replayed_side.append(&mut side);
                    if replayed_side.len() >= REPLAYED_SIDE_BATCH {
                        append_durably(shared.log.as_ref(), std::mem::take(&mut replayed_side), &shared.stop)?;
                    }
                } else {
                    // The epoch's remap entry is durable, with its dead letters and decisions,
                    // before the frontier may pass the epoch. Those of earlier polls were
                    // appended as they were made; those of this poll go in the remap entry's
                    // append: one durable commit where two followed each other, which at a
                    // light load is every epoch (read, folded and sealed in one pass).
                    side_writer.settle(&shared.stop)?;
                    let written = append_durably(shared.log.as_ref(), std::mem::take(&mut side), &shared.stop)?;
                    if let Some(entry) = written.last() {
                        machine.remap_written(entry.offset);
                    }
                }
                remap.borrow_mut().push(epoch, offsets);
            }
            in_flight.push_back(epoch);
            epoch_records = 0;
            let was_replaying = source.is_replaying();
            let recorded = source.sealed(|| machine.positions())?;
            if was_replaying && !source.is_replaying() {
                append_durably(shared.log.as_ref(), std::mem::take(&mut replayed_side), &shared.stop)?;
                tracing::info!(worker = index, "replay of recorded epochs done");
            }
            epoch = recorded.unwrap_or((epoch + 1).max(now_ms()));
            inputs.advance_to(epoch);
            last_seal = Instant::now();
            machine.snapshot_if_due()?;
            if !source.is_replaying() && last_deadline_check.elapsed() >= deadline_check {
                last_deadline_check = Instant::now();
                let due = machine.due_deadlines(now_ms() as i64);
                if !due.is_empty() {
                    tracing::debug!(worker = index, orders = due.len(), "payment deadlines passed");
                    append_durably(shared.log.as_ref(), due, &shared.stop)?;
                }
            }
        }
        if !source.is_replaying() {
            side_writer.start(std::mem::take(&mut side));
        }
        worker.step();
    }
    side_writer.start(std::mem::take(&mut side));
    side_writer.settle(&shared.stop)?;
    append_durably(shared.log.as_ref(), replayed_side, &shared.stop)?;
    machine.finish(shared.config.snapshot_on_stop)?;
    changes.consolidate();
    inputs.insert(&mut changes);
    // Close the inputs and let the dataflow drain briefly; in a cluster the other processes
    // may be stopping later or not at all, so after a grace period the dataflow is dropped
    // locally rather than waiting for them. Nothing is lost: the snapshot is written, and
    // output is idempotent upserts.
    drop(inputs);
    let grace = Instant::now();
    while !probe.done() && grace.elapsed() < Duration::from_secs(2) {
        worker.step_or_park(Some(Duration::from_millis(10)));
    }
    for dataflow in worker.installed_dataflows() {
        worker.drop_dataflow(dataflow);
    }
    tracing::info!(worker = index, "pipeline worker stopped");
    Ok(())
}

/// Where publication goes: the in-process views, the changelogs, or both.
fn sinks(shared: &Shared) -> Box<dyn ViewSink> {
    let mut sinks: Vec<Box<dyn ViewSink>> = Vec::new();
    if let Some(views) = &shared.views {
        sinks.push(Box::new(LocalSink(views.clone())));
    }
    if shared.config.export_changelogs {
        let sink = ChangelogSink::new(shared.log.clone(), shared.config.changelog_partitions)
            .with_marker_interval(Duration::from_millis(shared.config.marker_interval_ms))
            .with_heartbeat_interval(Duration::from_millis(shared.config.heartbeat_interval_ms));
        sinks.push(Box::new(sink));
    }
    Box::new(Fanout(sinks))
}

/// Fans one publication out to several sinks.
struct Fanout(Vec<Box<dyn ViewSink>>);

impl ViewSink for Fanout {
    fn publish(&mut self, updates: Vec<ViewUpdate>, report: ProgressReport) {
        if let Some((last, rest)) = self.0.split_last_mut() {
            for sink in rest {
                sink.publish(updates.clone(), report.clone());
            }
            last.publish(updates, report);
        }
    }
}
