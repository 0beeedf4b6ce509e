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
use crate::views::ProgressReport;

mod upserts;
use upserts::Pending;

pub use crate::views::sink::{LocalSink, ViewSink};
pub use crate::views::{ViewRow, VIEW_NAMES};

// Scale-out export: the changelog sink, its topic layout and frontier markers live in
// `crate::changelog`.
pub use crate::changelog::{changelog_topic, marker_key, ChangelogSink};

pub use crate::remap::RemapHistory;

/// Emptied buffers kept for the next epochs: enough for the epochs in flight at once.
const SPARE_BUFFERS: usize = 4;

/// Attaches publication to a stream of view changes.
pub fn build<'scope>(
    changes: Stream<'scope, Epoch, Vec<(ViewRow, Epoch, isize)>>,
    worker: usize,
    peers: usize,
    remap: Rc<RefCell<RemapHistory>>,
    mut sink: Box<dyn ViewSink>,
) {
    let mut pending: BTreeMap<Epoch, Vec<Pending>> = BTreeMap::new();
    // Emptied buffers of published epochs, reused: a fresh one would grow by doubling into
    // newly faulted-in pages every epoch.
    let mut spare: Vec<Vec<Pending>> = Vec::new();
    let mut reported: Option<Epoch> = None;
    let mut last_offsets: Vec<Position> = Vec::new();
    changes.sink(
        Exchange::new(|update: &(ViewRow, Epoch, isize)| update.0.key_hash()),
        "publish_views",
        move |(input, frontier)| {
            input.for_each(|_cap, data| {
                for (row, time, diff) in data.drain(..) {
                    pending.entry(time).or_insert_with(|| spare.pop().unwrap_or_default()).push(upserts::pending(row, diff));
                }
            });
            let frontier = frontier.frontier().first().copied().unwrap_or(Epoch::MAX);
            if reported.is_some_and(|r| r >= frontier) {
                return;
            }
            // The net change over every complete epoch, from what was published before to
            // now: usually one epoch, whose buffer is used as it is.
            let complete: Vec<Epoch> = pending.range(..frontier).map(|(t, _)| *t).collect();
            let mut changes: Vec<Pending> = Vec::new();
            for time in complete {
                let mut epoch = pending.remove(&time).unwrap_or_default();
                if changes.is_empty() {
                    changes = epoch;
                } else {
                    changes.append(&mut epoch);
                    spare.push(epoch);
                }
            }
            let updates = upserts::upserts(&mut changes);
            if changes.capacity() > 0 {
                spare.push(changes);
            }
            spare.truncate(SPARE_BUFFERS);
            if let Some(offsets) = remap.borrow_mut().offsets_before(frontier) {
                last_offsets = offsets;
            }
            sink.publish(updates, ProgressReport { worker, peers, frontier, offsets: last_offsets.clone() });
            reported = Some(frontier);
        },
    );
}
