//! Offline evaluation: time-based splits, top-k ranking metrics and a popularity baseline.
//!
//! Conventions (stated because papers disagree):
//! - Relevance is binary: an item is relevant if it is in the user's held-out set.
//! - P@k divides by k even when fewer than k items are recommended (a short list is a miss).
//! - R@k divides by the number of relevant items.
//! - NDCG@k uses gain 1 and discount 1/log2(rank + 1), normalised by the ideal DCG of
//!   min(k, |relevant|) hits.
//! - AP@k (for MAP@k) averages precision at each hit rank and divides by min(k, |relevant|).
//! - Averages are over users with at least one held-out item.

use std::collections::{HashMap, HashSet};

/// One user–item event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interaction {
    pub user: usize,
    pub item: usize,
    pub value: f64,
    pub timestamp: i64,
}

/// A chronological train/test partition of interactions.
#[derive(Debug, Clone, Default)]
pub struct Split {
    pub train: Vec<Interaction>,
    pub test: Vec<Interaction>,
}

impl Split {
    /// Held-out items per user.
    pub fn test_items(&self) -> HashMap<usize, HashSet<usize>> {
        group_items(&self.test)
    }
    /// Training items per user.
    pub fn train_items(&self) -> HashMap<usize, HashSet<usize>> {
        group_items(&self.train)
    }
}

pub fn group_items(events: &[Interaction]) -> HashMap<usize, HashSet<usize>> {
    let mut out: HashMap<usize, HashSet<usize>> = HashMap::new();
    for e in events {
        out.entry(e.user).or_default().insert(e.item);
    }
    out
}

/// Per-user "leave last N out": each user's `n` most recent interactions go to test, the
/// rest to train. Users with at most `n` interactions stay entirely in train (nothing of
/// theirs is left to learn from otherwise). Ties in time are broken by item id so the split
/// is deterministic.
pub fn split_last_n_per_user(events: &[Interaction], n: usize) -> Split {
    let mut by_user: HashMap<usize, Vec<Interaction>> = HashMap::new();
    for e in events {
        by_user.entry(e.user).or_default().push(*e);
    }
    let mut users: Vec<usize> = by_user.keys().copied().collect();
    users.sort_unstable();
    let mut split = Split::default();
    for u in users {
        let mut evs = by_user.remove(&u).unwrap_or_default();
        evs.sort_by_key(|e| (e.timestamp, e.item));
        if evs.len() <= n {
            split.train.extend(evs);
        } else {
            let cut = evs.len() - n;
            split.test.extend_from_slice(&evs[cut..]);
            evs.truncate(cut);
            split.train.extend(evs);
        }
    }
    split
}

/// Global time cut: events strictly before `cut` train, the others test. This is the most
/// realistic split (no training on the future at all) but leaves some test users cold.
pub fn split_global_time(events: &[Interaction], cut: i64) -> Split {
    let (train, test) = events.iter().partition(|e| e.timestamp < cut);
    Split { train, test }
}

/// The timestamp below which `fraction` of the events fall (for `split_global_time`).
pub fn time_quantile(events: &[Interaction], fraction: f64) -> Option<i64> {
    if events.is_empty() {
        return None;
    }
    let mut ts: Vec<i64> = events.iter().map(|e| e.timestamp).collect();
    ts.sort_unstable();
    let idx = ((fraction.clamp(0.0, 1.0) * ts.len() as f64) as usize).min(ts.len() - 1);
    Some(ts[idx])
}

fn hits<'a>(
    recommended: &'a [usize],
    relevant: &'a HashSet<usize>,
    k: usize,
) -> impl Iterator<Item = (usize, bool)> + 'a {
    recommended.iter().take(k).enumerate().map(move |(r, i)| (r, relevant.contains(i)))
}

pub fn precision_at_k(recommended: &[usize], relevant: &HashSet<usize>, k: usize) -> f64 {
    if k == 0 {
        return 0.0;
    }
    hits(recommended, relevant, k).filter(|h| h.1).count() as f64 / k as f64
}

pub fn recall_at_k(recommended: &[usize], relevant: &HashSet<usize>, k: usize) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    hits(recommended, relevant, k).filter(|h| h.1).count() as f64 / relevant.len() as f64
}

pub fn ndcg_at_k(recommended: &[usize], relevant: &HashSet<usize>, k: usize) -> f64 {
    let disc = |rank: usize| 1.0 / ((rank + 2) as f64).log2();
    let dcg: f64 = hits(recommended, relevant, k).filter(|h| h.1).map(|(r, _)| disc(r)).sum();
    let idcg: f64 = (0..k.min(relevant.len())).map(disc).sum();
    if idcg == 0.0 {
        0.0
    } else {
        dcg / idcg
    }
}

pub fn average_precision_at_k(recommended: &[usize], relevant: &HashSet<usize>, k: usize) -> f64 {
    let denom = k.min(relevant.len());
    if denom == 0 {
        return 0.0;
    }
    let mut found = 0usize;
    let mut sum = 0.0;
    for (r, hit) in hits(recommended, relevant, k) {
        if hit {
            found += 1;
            sum += found as f64 / (r + 1) as f64;
        }
    }
    sum / denom as f64
}

/// Fraction of the catalog that appears in at least one user's top-k.
pub fn catalog_coverage<'a>(lists: impl IntoIterator<Item = &'a [usize]>, k: usize, n_items: usize) -> f64 {
    if n_items == 0 {
        return 0.0;
    }
    let mut seen = HashSet::new();
    for l in lists {
        seen.extend(l.iter().take(k).copied());
    }
    seen.len() as f64 / n_items as f64
}

/// Averaged top-k metrics.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Metrics {
    pub k: usize,
    pub users: usize,
    pub precision: f64,
    pub recall: f64,
    pub ndcg: f64,
    pub map: f64,
    pub coverage: f64,
}

/// Evaluates ranked lists against held-out items. Users without held-out items are skipped;
/// a user with held-out items but no list counts as all misses.
pub fn evaluate(
    recommendations: &HashMap<usize, Vec<usize>>,
    test: &HashMap<usize, HashSet<usize>>,
    k: usize,
    n_items: usize,
) -> Metrics {
    let mut users: Vec<usize> = test.iter().filter(|(_, s)| !s.is_empty()).map(|(u, _)| *u).collect();
    users.sort_unstable(); // fixed summation order
    let empty = Vec::new();
    let (mut p, mut r, mut n, mut m) = (0.0, 0.0, 0.0, 0.0);
    for u in &users {
        let rec = recommendations.get(u).unwrap_or(&empty);
        let rel = &test[u];
        p += precision_at_k(rec, rel, k);
        r += recall_at_k(rec, rel, k);
        n += ndcg_at_k(rec, rel, k);
        m += average_precision_at_k(rec, rel, k);
    }
    let c = users.len().max(1) as f64;
    let coverage = catalog_coverage(
        users.iter().filter_map(|u| recommendations.get(u)).map(|v| v.as_slice()),
        k,
        n_items,
    );
    Metrics { k, users: users.len(), precision: p / c, recall: r / c, ndcg: n / c, map: m / c, coverage }
}

/// Most-popular baseline: items ranked by number of training users, ties by item id.
#[derive(Debug, Clone)]
pub struct Popularity {
    ranked: Vec<usize>,
}

impl Popularity {
    pub fn fit(train: &[Interaction]) -> Self {
        let mut count: HashMap<usize, usize> = HashMap::new();
        for (_, items) in group_items(train) {
            for i in items {
                *count.entry(i).or_default() += 1;
            }
        }
        let mut ranked: Vec<(usize, usize)> = count.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Self { ranked: ranked.into_iter().map(|(i, _)| i).collect() }
    }

    /// The `k` most popular items not in `exclude`.
    pub fn recommend(&self, k: usize, exclude: &HashSet<usize>) -> Vec<usize> {
        self.ranked.iter().filter(|i| !exclude.contains(i)).take(k).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[usize]) -> HashSet<usize> {
        items.iter().copied().collect()
    }

    fn ev(user: usize, item: usize, ts: i64) -> Interaction {
        Interaction { user, item, value: 1.0, timestamp: ts }
    }

    const EPS: f64 = 1e-12;

    #[test]
    fn precision_and_recall_by_hand() {
        // Hits at ranks 1 and 3 of 4; 3 relevant items.
        let rec = [10, 11, 12, 13];
        let rel = set(&[10, 12, 99]);
        assert!((precision_at_k(&rec, &rel, 4) - 2.0 / 4.0).abs() < EPS);
        assert!((precision_at_k(&rec, &rel, 2) - 1.0 / 2.0).abs() < EPS);
        assert!((recall_at_k(&rec, &rel, 4) - 2.0 / 3.0).abs() < EPS);
        assert!((recall_at_k(&rec, &rel, 1) - 1.0 / 3.0).abs() < EPS);
        // A short list is penalised in precision: 1 hit / k = 5.
        assert!((precision_at_k(&[10], &rel, 5) - 0.2).abs() < EPS);
    }

    #[test]
    fn ndcg_by_hand() {
        // Hits at ranks 1 and 3: DCG = 1 + 1/log2(4) = 1.5; 3 relevant, k=4 →
        // IDCG = 1 + 1/log2(3) + 1/2.
        let rec = [10, 11, 12, 13];
        let rel = set(&[10, 12, 99]);
        let expected = 1.5 / (1.0 + 1.0 / 3f64.log2() + 0.5);
        assert!((ndcg_at_k(&rec, &rel, 4) - expected).abs() < EPS);
        // Perfect ranking → 1; no hits → 0.
        assert!((ndcg_at_k(&[1, 2], &set(&[1, 2]), 2) - 1.0).abs() < EPS);
        assert_eq!(ndcg_at_k(&[5, 6], &set(&[1]), 2), 0.0);
        // A single relevant item at rank 2: 1/log2(3).
        assert!((ndcg_at_k(&[5, 1], &set(&[1]), 2) - 1.0 / 3f64.log2()).abs() < EPS);
    }

    #[test]
    fn average_precision_by_hand() {
        // Hits at ranks 1 and 3: (1/1 + 2/3) / min(4, 3) = (5/3)/3 = 5/9.
        let rec = [10, 11, 12, 13];
        let rel = set(&[10, 12, 99]);
        assert!((average_precision_at_k(&rec, &rel, 4) - 5.0 / 9.0).abs() < EPS);
        // Hit only at rank 2 of k=2 with 1 relevant: (1/2)/1.
        assert!((average_precision_at_k(&[7, 8], &set(&[8]), 2) - 0.5).abs() < EPS);
        assert_eq!(average_precision_at_k(&[7, 8], &set(&[]), 2), 0.0);
    }

    #[test]
    fn coverage_by_hand() {
        let a = vec![1, 2, 3];
        let b = vec![3, 4, 9];
        // Top-2 lists use items {1, 2, 3, 4} of a 10-item catalog.
        assert!((catalog_coverage([a.as_slice(), b.as_slice()], 2, 10) - 0.4).abs() < EPS);
        assert!((catalog_coverage([a.as_slice(), b.as_slice()], 3, 10) - 0.5).abs() < EPS);
    }

    #[test]
    fn evaluate_averages_over_users_with_test_items() {
        let mut recs = HashMap::new();
        recs.insert(1, vec![10, 11]); // P@2 = 1/2, R = 1, NDCG = 1, AP = 1
        recs.insert(2, vec![20, 21]); // P@2 = 0 ...
        recs.insert(3, vec![30, 31]); // no test items: ignored
        let mut test = HashMap::new();
        test.insert(1, set(&[10]));
        test.insert(2, set(&[99]));
        test.insert(4, set(&[]));
        let m = evaluate(&recs, &test, 2, 100);
        assert_eq!(m.users, 2);
        assert!((m.precision - 0.25).abs() < EPS);
        assert!((m.recall - 0.5).abs() < EPS);
        assert!((m.ndcg - 0.5).abs() < EPS);
        assert!((m.map - 0.5).abs() < EPS);
        assert!((m.coverage - 4.0 / 100.0).abs() < EPS);
    }

    #[test]
    fn last_n_split_holds_out_each_users_latest_events() {
        let events = vec![ev(1, 100, 5), ev(1, 101, 1), ev(1, 102, 9), ev(1, 103, 3), ev(2, 200, 4), ev(2, 201, 2)];
        let s = split_last_n_per_user(&events, 2);
        let test = s.test_items();
        // User 1's two latest are items 102 (t=9) and 100 (t=5).
        assert_eq!(test[&1], set(&[102, 100]));
        // User 2 has only 2 events ≤ n: all in train.
        assert!(!test.contains_key(&2));
        assert_eq!(s.train_items()[&1], set(&[101, 103]));
        assert_eq!(s.train.len() + s.test.len(), events.len());
        // No training event is later than the user's earliest test event.
        for t in &s.test {
            assert!(s.train.iter().filter(|e| e.user == t.user).all(|e| e.timestamp <= t.timestamp));
        }
    }

    #[test]
    fn global_split_cuts_at_the_timestamp() {
        let events = vec![ev(1, 1, 1), ev(1, 2, 5), ev(2, 3, 3), ev(2, 4, 7)];
        let s = split_global_time(&events, 5);
        assert_eq!(s.train.iter().map(|e| e.item).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(s.test.iter().map(|e| e.item).collect::<Vec<_>>(), vec![2, 4]);
        assert_eq!(time_quantile(&events, 0.5), Some(5));
        assert_eq!(time_quantile(&[], 0.5), None);
    }

    #[test]
    fn popularity_counts_users_and_skips_known_items() {
        // Item 7: 3 users (user 1 twice counts once); item 8: 2 users; item 9: 1 user.
        let train = vec![ev(1, 7, 0), ev(1, 7, 1), ev(2, 7, 0), ev(3, 7, 0), ev(1, 8, 0), ev(2, 8, 0), ev(3, 9, 0), ev(4, 5, 0)];
        let pop = Popularity::fit(&train);
        assert_eq!(pop.recommend(3, &set(&[])), vec![7, 8, 5]); // 5 and 9 tie at 1: lower id first
        assert_eq!(pop.recommend(2, &set(&[7])), vec![8, 5]);
    }
}
