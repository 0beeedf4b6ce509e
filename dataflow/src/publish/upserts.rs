//! From the changes of complete epochs to the upserts to publish: per key, the net change is
//! at most "retract the old row, insert the new one", so each key becomes its inserted row, or
//! a tombstone when it only lost rows, or nothing when its changes cancel.
//!
//! This ran on every epoch over every view's changes and was a quarter of the pipeline's CPU
//! when it sorted the rows themselves (wide rows moved and compared field by field, keys
//! cloned to find runs). Now an index is sorted by the key's hash, so almost every comparison
//! is between two integers and no row moves until it is published; rows are compared in full
//! only within one hash, which is one key but for a collision.

use crate::views::{ViewRow, ViewUpdate};

/// One change waiting for its epoch: the hash of its view and key
/// ([`ViewRow::key_hash`]), its difference, and the row (taken when it is published).
pub(crate) type Pending = (u64, isize, Option<ViewRow>);

/// A change as it is kept until its epoch is complete.
pub(crate) fn pending(row: ViewRow, diff: isize) -> Pending {
    (row.key_hash(), diff, Some(row))
}

/// The upserts for `changes`, one per key whose changes do not cancel out. Leaves `changes`
/// empty with its capacity, for the next epoch.
pub(crate) fn upserts(changes: &mut Vec<Pending>) -> Vec<ViewUpdate> {
    // (hash, index) pairs sort without touching the rows but for equal hashes.
    let mut order: Vec<(u64, u32)> = changes
        .iter()
        .enumerate()
        .map(|(i, (hash, _, _))| (*hash, u32::try_from(i).expect("fewer than 2^32 changes per epoch")))
        .collect();
    order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| row(changes, a.1).cmp(row(changes, b.1))));

    let mut updates = Vec::with_capacity(changes.len() / 2);
    // One hash's rows with their net differences, equal rows summed.
    let mut net: Vec<(u32, isize)> = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let hash = order[start].0;
        let end = start + order[start..].iter().take_while(|(h, _)| *h == hash).count();
        net.clear();
        for &(_, i) in &order[start..end] {
            let diff = changes[i as usize].1;
            match net.last_mut() {
                Some((last, sum)) if row(changes, *last) == row(changes, i) => *sum += diff,
                _ => net.push((i, diff)),
            }
        }
        net.retain(|(_, diff)| *diff != 0);
        // Normally one key; on a collision, each key's rows in turn.
        while let Some(&(first, _)) = net.first() {
            if net[1..].iter().all(|(i, _)| row(changes, first).same_key(row(changes, *i))) {
                updates.push(settle(changes, &net));
                break;
            }
            let (same, rest): (Vec<_>, Vec<_>) = net.iter().partition(|(i, _)| row(changes, first).same_key(row(changes, *i)));
            updates.push(settle(changes, &same));
            net = rest;
        }
        start = end;
    }
    changes.clear();
    updates
}

fn row(changes: &[Pending], i: u32) -> &ViewRow {
    changes[i as usize].2.as_ref().expect("rows are taken once")
}

/// One key's upsert from its net changes (sorted, none zero): the last inserted row, or a
/// tombstone when the key only lost rows. The row is moved out, not copied.
fn settle(changes: &mut [Pending], net: &[(u32, isize)]) -> ViewUpdate {
    let (index, inserted) = match net.iter().rev().find(|(_, diff)| *diff > 0) {
        Some((i, _)) => (*i, true),
        None => (net[net.len() - 1].0, false),
    };
    let row = changes[index as usize].2.take().expect("rows are taken once");
    if inserted {
        row.upsert()
    } else {
        row.tombstone()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use shopflow_events::Id;

    use super::*;
    use crate::views::{StockRow, ViewUpdate};

    fn stock(product: &str, quantity: i64) -> ViewRow {
        ViewRow::Stock(StockRow { product_id: Id::from(product), warehouse_id: Id::from("w1"), warehouse_name: None, quantity })
    }

    /// What the upserts must be: a plain consolidation of whole rows, then per key the last
    /// inserted row or a tombstone.
    fn expected(changes: &[(ViewRow, isize)]) -> Vec<ViewUpdate> {
        let mut rows = changes.to_vec();
        differential_dataflow::consolidation::consolidate(&mut rows);
        let mut updates = Vec::new();
        let mut run: Vec<(ViewRow, isize)> = Vec::new();
        let flush = |run: &mut Vec<(ViewRow, isize)>, updates: &mut Vec<ViewUpdate>| {
            if let Some(i) = run.iter().rposition(|(_, d)| *d > 0) {
                updates.push(run.swap_remove(i).0.upsert());
            } else if let Some((row, _)) = run.pop() {
                updates.push(row.tombstone());
            }
            run.clear();
        };
        for (row, diff) in rows {
            if run.last().is_some_and(|(last, _)| !last.same_key(&row)) {
                flush(&mut run, &mut updates);
            }
            run.push((row, diff));
        }
        flush(&mut run, &mut updates);
        updates
    }

    fn sorted(mut updates: Vec<ViewUpdate>) -> Vec<String> {
        let mut out: Vec<String> = updates.drain(..).map(|u| format!("{u:?}")).collect();
        out.sort();
        out
    }

    #[test]
    fn a_changed_row_is_upserted_a_removed_one_tombstoned_and_a_cancelled_one_not_published() {
        let mut changes = vec![
            pending(stock("p1", 5), -1),
            pending(stock("p1", 7), 1),
            pending(stock("p2", 3), -1),
            pending(stock("p3", 4), 1),
            pending(stock("p3", 4), -1),
        ];
        let updates = upserts(&mut changes);
        assert!(changes.is_empty());
        assert_eq!(sorted(updates), sorted(vec![stock("p1", 7).upsert(), stock("p2", 3).tombstone()]));
    }

    #[test]
    fn keys_whose_hashes_collide_still_get_one_upsert_each() {
        // Every change given the same hash: the worst collision there can be.
        let rows = [(stock("a", 1), -1), (stock("b", 2), 1), (stock("a", 3), 1), (stock("c", 1), -1), (stock("b", 1), -1)];
        let mut changes: Vec<Pending> = rows.iter().cloned().map(|(row, diff)| (42, diff, Some(row))).collect();
        let updates = upserts(&mut changes);
        assert_eq!(sorted(updates), sorted(expected(&rows)));
    }

    proptest! {
        #[test]
        fn upserts_equal_a_consolidation_of_whole_rows(
            changes in prop::collection::vec((0..6u8, 0..4i64, prop_oneof![Just(-1isize), Just(1isize), Just(2isize)]), 0..60),
            collide in any::<bool>(),
        ) {
            let rows: Vec<(ViewRow, isize)> = changes.iter().map(|(p, q, d)| (stock(&format!("p{p}"), *q), *d)).collect();
            let mut pending: Vec<Pending> = rows
                .iter()
                .cloned()
                .map(|(row, diff)| if collide { (u64::from(row.key_hash() % 2 == 0), diff, Some(row)) } else { pending(row, diff) })
                .collect();
            prop_assert_eq!(sorted(upserts(&mut pending)), sorted(expected(&rows)));
        }
    }
}
