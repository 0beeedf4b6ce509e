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
