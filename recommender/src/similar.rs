//! Precomputed "similar items": for every item, the `k` items whose factor vectors have the
//! highest cosine similarity with its own.
//!
//! Computed once per trained model (at save time) so `/recommend/similar` is a lookup. The
//! brute-force pass is O(items² · rank); with rayon over items it takes well under a second
//! for catalogs of a few thousand products, which is what one shop process holds. A much
//! larger catalog would want an approximate index instead.

use ndarray::ArrayView2;
use rayon::prelude::*;

/// One neighbour: item index and cosine similarity in [0, 1] (factors are non-negative).
pub type Neighbour = (u32, f32);

/// Top-`k` cosine neighbours of every item. `ht` is items × rank (row = item vector).
/// An item with an all-zero vector (never seen in training) has no neighbours, and is
/// nobody's neighbour: its similarity is undefined, not zero. Ties go to the lower index so
/// the result is deterministic.
pub fn top_k_cosine(ht: ArrayView2<f64>, k: usize) -> Vec<Vec<Neighbour>> {
    let n = ht.nrows();
    let rank = ht.ncols();
    // Normalised copy, contiguous, so the inner loop is a plain dot product.
    let mut unit = vec![0.0f64; n * rank];
    let mut live = vec![false; n];
    for (i, row) in ht.rows().into_iter().enumerate() {
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > 0.0 && norm.is_finite() {
            live[i] = true;
            for (t, v) in row.iter().enumerate() {
                unit[i * rank + t] = v / norm;
            }
        }
    }
    (0..n)
        .into_par_iter()
        .map(|i| {
            if !live[i] || k == 0 {
                return Vec::new();
            }
            let a = &unit[i * rank..(i + 1) * rank];
            let mut scores: Vec<(usize, f64)> = (0..n)
                .filter(|&j| j != i && live[j])
                .map(|j| {
                    let b = &unit[j * rank..(j + 1) * rank];
                    (j, a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>())
                })
                .collect();
            let cmp = |x: &(usize, f64), y: &(usize, f64)| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0));
            let keep = k.min(scores.len());
            if keep == 0 {
                return Vec::new();
            }
            if keep < scores.len() {
                scores.select_nth_unstable_by(keep - 1, cmp);
                scores.truncate(keep);
            }
            scores.sort_by(cmp);
            // Rounding can put a parallel pair a hair above 1.
            scores.into_iter().map(|(j, s)| (j as u32, s.clamp(0.0, 1.0) as f32)).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn nearest_items_by_hand() {
        // 0 and 1 point the same way (different lengths), 2 is orthogonal to them, 3 is
        // between, 4 is all zero.
        let ht = array![[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0]];
        let sim = top_k_cosine(ht.view(), 2);
        assert_eq!(sim[0][0].0, 1);
        assert!((sim[0][0].1 - 1.0).abs() < 1e-6);
        assert_eq!(sim[0][1].0, 3);
        assert!((sim[0][1].1 - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(sim[2][0].0, 3);
        assert!(sim[4].is_empty(), "a zero vector has no neighbours");
        assert!(sim.iter().flatten().all(|(j, _)| *j != 4), "and is nobody's neighbour");
        // Never itself.
        for (i, list) in sim.iter().enumerate() {
            assert!(list.iter().all(|(j, _)| *j as usize != i));
        }
    }

    #[test]
    fn k_larger_than_the_catalog_returns_everything_else() {
        let ht = array![[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]];
        let sim = top_k_cosine(ht.view(), 20);
        assert!(sim.iter().all(|l| l.len() == 2));
        assert!(sim.iter().all(|l| l.windows(2).all(|p| p[0].1 >= p[1].1)));
        assert!(top_k_cosine(ht.view(), 0).iter().all(Vec::is_empty));
    }
}
