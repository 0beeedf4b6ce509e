use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::ops::Bound;

/// One view: rows by primary key, ordered so that cursor pagination is a range scan.
pub struct Table<K, V> {
    rows: RwLock<BTreeMap<K, V>>,
}

impl<K: Ord, V> Default for Table<K, V> {
    fn default() -> Self {
        Self { rows: RwLock::new(BTreeMap::new()) }
    }
}

impl<K: Ord + Clone, V: Clone> Table<K, V> {
    pub fn get(&self, key: &K) -> Option<V> {
        self.rows.read().get(key).cloned()
    }

    /// What `read` makes of one row, without copying the row (a listener of every change
    /// that only looks at one field should not clone whole orders).
    pub fn with<R>(&self, key: &K, read: impl FnOnce(&V) -> R) -> Option<R> {
        self.rows.read().get(key).map(read)
    }

    pub fn len(&self) -> usize {
        self.rows.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.read().is_empty()
    }

    /// Up to `limit` rows after `after` (exclusive) that pass `filter`, in key order.
    pub fn page(&self, after: Option<&K>, limit: usize, filter: impl Fn(&V) -> bool) -> Vec<V> {
        let rows = self.rows.read();
        let start = match after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Unbounded,
        };
        rows.range((start, Bound::Unbounded))
            .map(|(_, v)| v)
            .filter(|v| filter(v))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Rows whose key lies in `range`, e.g. every warehouse of one product.
    pub fn range<R: std::ops::RangeBounds<K>>(&self, range: R) -> Vec<V> {
        self.rows.read().range(range).map(|(_, v)| v.clone()).collect()
    }

    /// The first `limit` rows passing `filter` in the order `compare`, cloning only those:
    /// a ranking asked for on every change of a view (the top-sellers stream) would otherwise
    /// copy the whole table each time.
    pub fn top(&self, limit: usize, filter: impl Fn(&V) -> bool, compare: impl Fn(&V, &V) -> std::cmp::Ordering) -> Vec<V> {
        let rows = self.rows.read();
        let mut passing: Vec<&V> = rows.values().filter(|v| filter(v)).collect();
        if passing.len() > limit {
            if limit == 0 {
                return Vec::new();
            }
            passing.select_nth_unstable_by(limit - 1, |a, b| compare(a, b));
            passing.truncate(limit);
        }
        passing.sort_by(|a, b| compare(a, b));
        passing.into_iter().cloned().collect()
    }

    /// Every row, in key order.
    pub fn snapshot(&self) -> Vec<(K, V)> {
        self.rows.read().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Changes one row in place, if it exists.
    pub(crate) fn modify(&self, key: &K, change: impl FnOnce(&mut V)) {
        if let Some(row) = self.rows.write().get_mut(key) {
            change(row);
        }
    }

    pub(crate) fn apply(&self, upserts: Vec<(K, Option<V>)>) {
        if upserts.is_empty() {
            return;
        }
        let mut rows = self.rows.write();
        for (key, row) in upserts {
            match row {
                Some(row) => {
                    rows.insert(key, row);
                }
                None => {
                    rows.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn with_reads_one_row_in_place_or_says_it_is_missing() {
        let table = Table::default();
        table.apply(vec![(1u32, Some(vec![10u32, 20])), (2, Some(vec![30]))]);
        assert_eq!(table.with(&1, |row| row.len()), Some(2));
        assert_eq!(table.with(&2, |row| row[0]), Some(30));
        assert_eq!(table.with(&3, |row| row.len()), None);
    }

    proptest! {
        #[test]
        fn top_is_the_head_of_the_filtered_and_sorted_snapshot(
            rows in proptest::collection::btree_map(0u32..500, 0u32..50, 0..200),
            limit in 0usize..40,
            modulus in 1u32..4,
        ) {
            let table = Table::default();
            table.apply(rows.iter().map(|(k, v)| (*k, Some((*v, *k)))).collect());
            let filter = |v: &(u32, u32)| v.1 % modulus == 0;
            // Most first, ties by key: the top-sellers order.
            let compare = |a: &(u32, u32), b: &(u32, u32)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
            let mut want: Vec<(u32, u32)> = table.snapshot().into_iter().map(|(_, v)| v).filter(filter).collect();
            want.sort_by(compare);
            want.truncate(limit);
            prop_assert_eq!(table.top(limit, filter, compare), want);
        }
    }
}
