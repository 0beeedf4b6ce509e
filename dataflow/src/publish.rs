//! Publication of view output. Every worker receives the changes of the keys it owns
//! (exchanged by view key, so one key's changes never race across workers), holds them until
//! the frontier says their epoch is complete, consolidates each epoch into upserts, and hands
//! them to the sinks together with a progress report.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use shopflow_ingest::Position;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::Stream;

use crate::jobs::Epoch;
use crate::views::{ProgressReport, ViewUpdate};

pub use crate::views::sink::{LocalSink, ViewSink};
pub use crate::views::{ViewRow, VIEW_NAMES};

// Scale-out export: the changelog sink, its topic layout and frontier markers live in
// `crate::changelog`.
pub use crate::changelog::{changelog_topic, marker_key, ChangelogSink};

pub use crate::remap::RemapHistory;

/// The upsert for one key's consolidated changes: its inserted row, or a tombstone when the
/// key only lost rows. Rows are moved, not copied.
fn settle(mut run: Vec<(ViewRow, isize)>) -> ViewUpdate {
    match run.iter().rposition(|(_, diff)| *diff > 0) {
        Some(inserted) => run.swap_remove(inserted).0.upsert(),
        None => run.pop().expect("a run holds at least one row").0.tombstone(),
    }
}

/// Attaches publication to a stream of view changes.
pub fn build<'scope>(
    changes: Stream<'scope, Epoch, Vec<(ViewRow, Epoch, isize)>>,
    worker: usize,
    peers: usize,
    remap: Rc<RefCell<RemapHistory>>,
    mut sink: Box<dyn ViewSink>,
) {
    let mut pending: BTreeMap<Epoch, Vec<(ViewRow, isize)>> = BTreeMap::new();
    let mut reported: Option<Epoch> = None;
    let mut last_offsets: Vec<Position> = Vec::new();
    changes.sink(
        Exchange::new(|update: &(ViewRow, Epoch, isize)| update.0.key_hash()),
        "publish_views",
        move |(input, frontier)| {
            input.for_each(|_cap, data| {
                for (row, time, diff) in data.drain(..) {
                    pending.entry(time).or_insert_with(|| Vec::with_capacity(1024)).push((row, diff));
                }
            });
            let frontier = frontier.frontier().first().copied().unwrap_or(Epoch::MAX);
            if reported.is_some_and(|r| r >= frontier) {
                return;
            }
            // The net change over every complete epoch, from what was published before to
            // now, is per key at most "retract the old row, insert the new one": exactly the
            // upserts to publish. Rows sort by view and then by their key fields, so one key's
            // changes are adjacent after consolidation.
            let complete: Vec<Epoch> = pending.range(..frontier).map(|(t, _)| *t).collect();
            let mut changes: Vec<(ViewRow, isize)> = Vec::with_capacity(complete.iter().map(|t| pending[t].len()).sum());
            for time in complete {
                changes.extend(pending.remove(&time).unwrap_or_default());
            }
            differential_dataflow::consolidation::consolidate(&mut changes);
            let mut updates: Vec<ViewUpdate> = Vec::new();
            let mut run: Vec<(ViewRow, isize)> = Vec::new();
            for (row, diff) in changes {
                if run.last().is_some_and(|(last, _)| !last.same_key(&row)) {
                    updates.push(settle(std::mem::take(&mut run)));
                }
                run.push((row, diff));
            }
            if !run.is_empty() {
                updates.push(settle(run));
            }
            if let Some(offsets) = remap.borrow_mut().offsets_before(frontier) {
                last_offsets = offsets;
            }
            sink.publish(updates, ProgressReport { worker, peers, frontier, offsets: last_offsets.clone() });
            reported = Some(frontier);
        },
    );
}
