//! The read-only model the serving layer answers from: product ids, item factors, the
//! fold-in subproblem's fixed parts and the precomputed similar items. Built from a fitted
//! [`Nmf`] at training time or loaded from the model store; keyed by product id strings so
//! callers never see matrix indices.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::fit::Regs;
use crate::linalg::{axpy, dot};
use crate::similar::{top_k_cosine, Neighbour};
use crate::solver_cd::cd_row;
use crate::{Nmf, NmfValidParams};

/// What fold-in needs besides H: the regularisation on a user row and the sweep budget.
/// `l1_w`/`l2_w` are the already-scaled weights (see [`NmfValidParams`]), stored as such so a
/// loaded model folds in exactly like the fitted one without knowing the training matrix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FoldInParams {
    pub l1_w: f64,
    pub l2_w: f64,
    pub max_sweeps: usize,
    pub tol: f64,
}

impl FoldInParams {
    /// The parameters `Nmf::fold_in` uses for a model fitted with `params` on a
    /// `n_users × n_items` matrix.
    pub fn from_params(params: &NmfValidParams, n_users: usize, n_items: usize) -> Self {
        let r = Regs::new(params, n_users, n_items);
        Self { l1_w: r.l1_w, l2_w: r.l2_w, max_sweeps: params.fold_in_max_sweeps, tol: params.fold_in_tol }
    }
}

/// Why a [`ServingModel`] could not be assembled (its parts disagree).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServingModelError {
    #[error("{ids} item ids but {rows} factor rows")]
    ItemCount { ids: usize, rows: usize },
    #[error("item factors have {got} values, expected {items} x {rank}")]
    FactorSize { got: usize, items: usize, rank: usize },
    #[error("item id {0:?} appears twice")]
    DuplicateId(String),
    #[error("rank must be at least 1")]
    ZeroRank,
    #[error("item factors must be finite and >= 0 (item {item})")]
    BadFactor { item: usize },
    #[error("similar-items table has {got} rows for {items} items")]
    SimilarRows { got: usize, items: usize },
    #[error("similar-items entry {index} of item {item} is out of range")]
    SimilarIndex { item: usize, index: u32 },
    #[error("fold-in parameters are invalid: {0}")]
    FoldIn(String),
}

/// A promoted model, ready to answer requests. Immutable and `Sync`; share it in an `Arc`.
#[derive(Debug, Clone)]
pub struct ServingModel {
    version: u64,
    item_ids: Vec<String>,
    index: HashMap<String, usize>,
    rank: usize,
    /// Item factors, items × rank, row-major (each item's vector contiguous).
    ht: Vec<f64>,
    /// HHᵀ + l2_W·I (rank × rank): the fold-in Hessian, derived from `ht` at construction.
    fold_gram: Vec<f64>,
    fold: FoldInParams,
    similar: Vec<Vec<Neighbour>>,
}

impl ServingModel {
    /// Assembles a model from its stored parts, checking that they agree. `ht` is
    /// items × rank, row-major.
    pub fn from_parts(
        version: u64,
        item_ids: Vec<String>,
        rank: usize,
        ht: Vec<f64>,
        fold: FoldInParams,
        similar: Vec<Vec<Neighbour>>,
    ) -> Result<Self, ServingModelError> {
        let n = item_ids.len();
        if rank == 0 {
            return Err(ServingModelError::ZeroRank);
        }
        if ht.len() != n.saturating_mul(rank) {
            return Err(ServingModelError::FactorSize { got: ht.len(), items: n, rank });
        }
        if let Some(pos) = ht.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(ServingModelError::BadFactor { item: pos / rank });
        }
        if similar.len() != n {
            return Err(ServingModelError::SimilarRows { got: similar.len(), items: n });
        }
        for (item, list) in similar.iter().enumerate() {
            if let Some(&(index, _)) = list.iter().find(|(j, _)| *j as usize >= n) {
                return Err(ServingModelError::SimilarIndex { item, index });
            }
        }
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !(ok(fold.l1_w) && ok(fold.l2_w) && ok(fold.tol)) || fold.max_sweeps == 0 {
            return Err(ServingModelError::FoldIn(format!("{fold:?}")));
        }
        let mut index = HashMap::with_capacity(n);
        for (i, id) in item_ids.iter().enumerate() {
            if index.insert(id.clone(), i).is_some() {
                return Err(ServingModelError::DuplicateId(id.clone()));
            }
        }
        let mut fold_gram = vec![0.0; rank * rank];
        for row in ht.chunks_exact(rank) {
            for a in 0..rank {
                if row[a] != 0.0 {
                    axpy(row[a], row, &mut fold_gram[a * rank..(a + 1) * rank]);
                }
            }
        }
        for t in 0..rank {
            fold_gram[t * rank + t] += fold.l2_w;
        }
        Ok(Self { version, item_ids, index, rank, ht, fold_gram, fold, similar })
    }

    /// The serving model of a freshly fitted `model` (trained with `params`), with similar
    /// items precomputed (`similar_k` per item).
    pub fn from_nmf(
        version: u64,
        model: &Nmf,
        params: &NmfValidParams,
        item_ids: Vec<String>,
        similar_k: usize,
    ) -> Result<Self, ServingModelError> {
        let ht = model.item_factors_t();
        if item_ids.len() != ht.nrows() {
            return Err(ServingModelError::ItemCount { ids: item_ids.len(), rows: ht.nrows() });
        }
        let similar = top_k_cosine(ht.view(), similar_k);
        let fold = FoldInParams::from_params(params, model.n_users(), model.n_items());
        Self::from_parts(version, item_ids, model.rank(), ht.iter().copied().collect(), fold, similar)
    }

    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn rank(&self) -> usize {
        self.rank
    }
    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }
    pub fn item_ids(&self) -> &[String] {
        &self.item_ids
    }
    pub fn index_of(&self, product: &str) -> Option<usize> {
        self.index.get(product).copied()
    }
    /// Item factors, items × rank, row-major.
    pub fn item_factors_t(&self) -> &[f64] {
        &self.ht
    }
    pub fn fold_in_params(&self) -> FoldInParams {
        self.fold
    }
    pub fn similar_table(&self) -> &[Vec<Neighbour>] {
        &self.similar
    }

    /// The user vector for sparse interactions given by item index (duplicates add up).
    /// Unknown indices and values that are not finite and > 0 are ignored: serving input is
    /// best-effort, a stray event must not fail a request. Same subproblem and stopping rule
    /// as [`Nmf::fold_in`], so a training user's row is reproduced.
    pub fn fold_in_indices(&self, interactions: impl IntoIterator<Item = (usize, f64)>) -> Vec<f64> {
        let k = self.rank;
        let mut xrow = vec![0.0; k];
        for (i, v) in interactions {
            if i < self.item_ids.len() && v.is_finite() && v > 0.0 {
                axpy(v, &self.ht[i * k..(i + 1) * k], &mut xrow);
            }
        }
        let mut w = vec![0.0; k];
        if xrow.iter().all(|&v| v == 0.0) {
            return w;
        }
        let mut grad = vec![0.0; k];
        for _ in 0..self.fold.max_sweeps.max(1) {
            let (_, step) = cd_row(&mut w, &xrow, &self.fold_gram, self.fold.l1_w, &mut grad);
            let scale = w.iter().fold(0.0f64, |a, &b| a.max(b));
            if step <= self.fold.tol * scale || step == 0.0 {
                break;
            }
        }
        w
    }

    /// The user vector for interactions given by product id; unknown products are ignored.
    pub fn fold_in<S: AsRef<str>>(&self, interactions: &[(S, f64)]) -> Vec<f64> {
        self.fold_in_indices(interactions.iter().filter_map(|(p, v)| self.index_of(p.as_ref()).map(|i| (i, *v))))
    }

    /// The `n` best products for a user with these interactions: fold-in, score every item,
    /// leave out the products interacted with and those `skip` rejects, best first (ties by
    /// catalog order). Empty when nothing is known about the user (the caller falls back to
    /// trending).
    pub fn recommend<S: AsRef<str>>(
        &self,
        interactions: &[(S, f64)],
        n: usize,
        skip: impl Fn(&str) -> bool,
    ) -> Vec<(String, f64)> {
        let known: Vec<(usize, f64)> =
            interactions.iter().filter_map(|(p, v)| self.index_of(p.as_ref()).map(|i| (i, *v))).collect();
        let w = self.fold_in_indices(known.iter().copied());
        if n == 0 || w.iter().all(|&v| v == 0.0) {
            return Vec::new();
        }
        let k = self.rank;
        let mut seen = vec![false; self.item_ids.len()];
        for &(i, _) in &known {
            seen[i] = true;
        }
        let scores: Vec<(usize, f64)> = (0..self.item_ids.len())
            .filter(|&i| !seen[i])
            .map(|i| (i, dot(&self.ht[i * k..(i + 1) * k], &w)))
            .collect();
        best_unskipped(scores, n, |i| skip(&self.item_ids[i]))
            .into_iter()
            .map(|(i, s)| (self.item_ids[i].clone(), s))
            .collect()
    }

    /// Up to `n` precomputed neighbours of `product` that `skip` does not reject, most similar
    /// first; `None` if the model does not know the product. At most the precomputed `k`.
    pub fn similar(&self, product: &str, n: usize, skip: impl Fn(&str) -> bool) -> Option<Vec<(String, f64)>> {
        let i = self.index_of(product)?;
        Some(
            self.similar[i]
                .iter()
                .map(|&(j, s)| (&self.item_ids[j as usize], s))
                .filter(|(id, _)| !skip(id))
                .take(n)
                .map(|(id, s)| (id.clone(), f64::from(s)))
                .collect(),
        )
    }
}

/// The `n` highest-scoring entries for which `skip` is false, best first, ties by index.
/// `skip` may be costly (a stock lookup), so it is only asked about a window of the best
/// candidates, which doubles until `n` survive or the candidates run out.
fn best_unskipped(mut scores: Vec<(usize, f64)>, n: usize, skip: impl Fn(usize) -> bool) -> Vec<(usize, f64)> {
    let cmp = |a: &(usize, f64), b: &(usize, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut out = Vec::with_capacity(n);
    let mut window = (2 * n + 16).min(scores.len());
    let mut done = 0;
    while out.len() < n && done < scores.len() {
        let rest = &mut scores[done..];
        let take = (window - done).min(rest.len());
        if take < rest.len() {
            rest.select_nth_unstable_by(take - 1, cmp);
        }
        rest[..take].sort_by(cmp);
        for &(i, s) in &rest[..take] {
            if out.len() == n {
                break;
            }
            if !skip(i) {
                out.push((i, s));
            }
        }
        done += take;
        window = (window * 2).min(scores.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use linfa::prelude::*;
    use ndarray::Array2;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::Interactions;

    /// Users in three taste groups over 30 items (10 per group), plus noise.
    fn grouped(users: usize, seed: u64) -> Array2<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        Array2::from_shape_fn((users, 30), |(u, i)| {
            let same = i / 10 == u % 3;
            let p = if same { 0.6 } else { 0.05 };
            if rng.gen::<f64>() < p {
                1.0 + rng.gen_range(0.0..1.0)
            } else {
                0.0
            }
        })
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("p{i}")).collect()
    }

    fn fitted(x: &Array2<f64>, p: crate::NmfParams) -> (Nmf, NmfValidParams, Interactions) {
        use linfa::ParamGuard;
        let data = Interactions::new(sprs::CsMat::csr_from_dense(x.view(), 0.0)).unwrap();
        let valid = p.check().unwrap();
        let model = valid.fit(&DatasetBase::new(data.clone(), ())).unwrap();
        (model, valid, data)
    }

    #[test]
    fn fold_in_of_a_training_users_row_matches_its_w_row() {
        let x = grouped(60, 1);
        let (model, params, data) =
            fitted(&x, Nmf::params(4).max_iter(2000).tol(0.0).alpha(0.001).l1_ratio(0.3).fold_in_tol(1e-12).fold_in_max_sweeps(5000));
        let sm = ServingModel::from_nmf(1, &model, &params, ids(30), 5).unwrap();
        let w = model.user_factors();
        let scale = w.iter().fold(0.0f64, |a, &b| a.max(b));
        for u in 0..x.nrows() {
            let (items, values) = data.row(u);
            let by_id: Vec<(String, f64)> = items.iter().zip(values).map(|(&i, &v)| (format!("p{i}"), v)).collect();
            let folded = sm.fold_in(&by_id);
            for t in 0..4 {
                assert!(
                    (folded[t] - w[[u, t]]).abs() <= 1e-6 * scale,
                    "user {u} comp {t}: {} vs {}",
                    folded[t],
                    w[[u, t]]
                );
            }
            // And it is the fitted model's own fold-in.
            let direct = model.fold_in(items, values).unwrap();
            for t in 0..4 {
                assert!((folded[t] - direct[t]).abs() <= 1e-9 * scale.max(1.0));
            }
        }
    }

    #[test]
    fn recommend_follows_taste_skips_seen_and_filtered_and_ignores_junk() {
        let x = grouped(90, 2);
        let (model, params, _) = fitted(&x, Nmf::params(3).max_iter(300));
        let sm = ServingModel::from_nmf(7, &model, &params, ids(30), 5).unwrap();
        // A new user who clicked two items of group 1 (items 10..20).
        let clicks = [("p12".to_owned(), 1.0), ("p15".to_owned(), 1.0), ("nope".to_owned(), 3.0), ("p3".to_owned(), f64::NAN)];
        let recs = sm.recommend(&clicks, 5, |_| false);
        assert_eq!(recs.len(), 5);
        for (id, _) in &recs {
            let i: usize = id[1..].parse().unwrap();
            assert!((10..20).contains(&i), "{id} is not in the clicked group: {recs:?}");
            assert!(id != "p12" && id != "p15", "already seen");
        }
        assert!(recs.windows(2).all(|p| p[0].1 >= p[1].1));
        // skip removes products; the list is refilled from further down.
        let skipped = sm.recommend(&clicks, 5, |p| p == recs[0].0);
        assert_eq!(skipped.len(), 5);
        assert!(skipped.iter().all(|(p, _)| *p != recs[0].0));
        assert_eq!(skipped[0], recs[1]);
        // Skip everything: nothing. Nothing known about the user: nothing.
        assert!(sm.recommend(&clicks, 5, |_| true).is_empty());
        assert!(sm.recommend(&[("unknown", 1.0)], 5, |_| false).is_empty());
        assert!(sm.recommend::<&str>(&[], 5, |_| false).is_empty());
    }

    #[test]
    fn similar_items_include_near_identical_vectors() {
        // Item 7 gets a column that is a scaled copy of item 3's plus a tiny bit, so their
        // factor vectors point (almost) the same way.
        let mut x = grouped(60, 3);
        let col3 = x.column(3).to_owned();
        x.column_mut(7).assign(&(&col3 * 2.0));
        let (model, params, _) = fitted(&x, Nmf::params(6).max_iter(400));
        let sm = ServingModel::from_nmf(1, &model, &params, ids(30), 20).unwrap();
        let sim = sm.similar("p3", 3, |_| false).unwrap();
        assert_eq!(sim[0].0, "p7", "{sim:?}");
        assert!(sim[0].1 > 0.99, "{sim:?}");
        let filtered = sm.similar("p3", 3, |p| p == "p7").unwrap();
        assert!(filtered.iter().all(|(p, _)| p != "p7"));
        assert_eq!(filtered.len(), 3);
        assert!(sm.similar("unknown", 3, |_| false).is_none());
    }

    #[test]
    fn inconsistent_parts_are_errors() {
        let fold = FoldInParams { l1_w: 0.0, l2_w: 0.0, max_sweeps: 10, tol: 1e-6 };
        let ok = || (ids(2), vec![1.0, 0.0, 0.0, 1.0], vec![vec![(1, 0.5)], vec![]]);
        let (i, h, s) = ok();
        assert!(ServingModel::from_parts(1, i, 2, h, fold, s).is_ok());
        let (i, _, s) = ok();
        assert!(matches!(ServingModel::from_parts(1, i, 2, vec![1.0; 3], fold, s), Err(ServingModelError::FactorSize { .. })));
        let (_, h, s) = ok();
        let dup = vec!["a".to_owned(), "a".to_owned()];
        assert!(matches!(ServingModel::from_parts(1, dup, 2, h, fold, s), Err(ServingModelError::DuplicateId(_))));
        let (i, h, _) = ok();
        assert!(matches!(
            ServingModel::from_parts(1, i, 2, h, fold, vec![vec![(5, 0.1)], vec![]]),
            Err(ServingModelError::SimilarIndex { item: 0, index: 5 })
        ));
        let (i, _, s) = ok();
        assert!(matches!(
            ServingModel::from_parts(1, i, 2, vec![1.0, f64::NAN, 0.0, 1.0], fold, s),
            Err(ServingModelError::BadFactor { item: 0 })
        ));
        let (i, h, s) = ok();
        let bad = FoldInParams { max_sweeps: 0, ..fold };
        assert!(matches!(ServingModel::from_parts(1, i, 2, h, bad, s), Err(ServingModelError::FoldIn(_))));
    }

    /// Latency of a whole `/recommend/user` model call (fold-in + scoring every item + top-n)
    /// on MovieLens 100K at rank 64, every user's full history as input. Needs the dataset
    /// (`scripts/fetch-datasets.sh`); run with
    /// `cargo test --release -p shopflow-recommender --lib -- --ignored --nocapture latency`.
    #[test]
    #[ignore]
    fn recommend_latency_on_movielens() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/datasets/ml-100k/ml-100k.inter");
        let file = crate::dataset::load_inter(path).expect("run scripts/fetch-datasets.sh");
        let (users, items) = (file.users.len(), file.items.len());
        let x = Interactions::from_triplets(users, items, file.events.iter().map(|e| (e.user, e.item, 1.0))).unwrap();
        let params = linfa::ParamGuard::check(Nmf::params(64).max_iter(200).alpha(0.01)).unwrap();
        let model = params.fit(&DatasetBase::new(x.clone(), ())).unwrap();
        let ids: Vec<String> = (0..items).map(|i| file.items.token(i).unwrap().to_owned()).collect();
        let t = std::time::Instant::now();
        let sm = ServingModel::from_nmf(1, &model, &params, ids.clone(), 20).unwrap();
        let build = t.elapsed();
        let mut samples = Vec::new();
        for _pass in 0..5 {
            for u in 0..users {
                let (its, vals) = x.row(u);
                let input: Vec<(&str, f64)> = its.iter().zip(vals).map(|(&i, &v)| (ids[i].as_str(), v)).collect();
                let t = std::time::Instant::now();
                let recs = sm.recommend(&input, 10, |_| false);
                samples.push(t.elapsed().as_secs_f64() * 1e6);
                assert_eq!(recs.len(), 10);
            }
        }
        samples.sort_by(f64::total_cmp);
        let pct = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
        println!(
            "ml-100k rank 64, {items} items: similar top-20 built in {:.0} ms; recommend (fold-in + score + top 10) over {} calls: p50 {:.0} us, p99 {:.0} us, max {:.0} us",
            build.as_secs_f64() * 1e3,
            samples.len(),
            pct(0.5),
            pct(0.99),
            samples[samples.len() - 1]
        );
    }

    #[test]
    fn best_unskipped_refills_past_the_first_window() {
        let scores: Vec<(usize, f64)> = (0..100).map(|i| (i, 100.0 - i as f64)).collect();
        // Skip the 60 best: the answer comes from beyond several windows.
        let got = best_unskipped(scores, 3, |i| i < 60);
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![60, 61, 62]);
    }
}
