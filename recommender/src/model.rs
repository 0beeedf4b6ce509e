//! The fitted model: factors, training diagnostics, fold-in and scoring, and the linfa
//! `Fit` / `Transformer` impls.

use linfa::dataset::DatasetBase;
use linfa::traits::{Fit, Transformer};
use ndarray::{Array1, Array2, ArrayBase, ArrayView1, Data, Ix2};
use rayon::prelude::*;

use crate::fit::{self, Regs};
use crate::linalg::{axpy, dot};
use crate::solver_cd::cd_row;
use crate::{Interactions, NmfError, NmfValidParams};

/// A fitted NMF model `X ≈ W·H`.
#[derive(Debug, Clone)]
pub struct Nmf {
    /// User factors, users × rank.
    w: Array2<f64>,
    /// Item factors, rank × items (the conventional orientation, returned to callers).
    h: Array2<f64>,
    /// Hᵀ, items × rank: each item's factor vector contiguous, for fold-in and scoring.
    ht: Array2<f64>,
    /// HHᵀ + l2_W·I: the fold-in problem's Hessian, computed once at fit time.
    fold_gram: Array2<f64>,
    l1_w: f64,
    loss_curve: Vec<f64>,
    n_iter: usize,
    converged: bool,
    fold_in_max_sweeps: usize,
    fold_in_tol: f64,
}

impl Nmf {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        w: Array2<f64>,
        ht: Array2<f64>,
        hht: Array2<f64>,
        regs: Regs,
        p: &NmfValidParams,
        loss_curve: Vec<f64>,
        n_iter: usize,
        converged: bool,
    ) -> Self {
        let mut fold_gram = hht;
        fold_gram.diag_mut().mapv_inplace(|d| d + regs.l2_w);
        Self {
            h: ht.t().as_standard_layout().into_owned(),
            w,
            ht,
            fold_gram,
            l1_w: regs.l1_w,
            loss_curve,
            n_iter,
            converged,
            fold_in_max_sweeps: p.fold_in_max_sweeps,
            fold_in_tol: p.fold_in_tol,
        }
    }

    /// User factors W (users × rank).
    pub fn user_factors(&self) -> &Array2<f64> {
        &self.w
    }
    /// Item factors H (rank × items).
    pub fn item_factors(&self) -> &Array2<f64> {
        &self.h
    }
    /// Item factors transposed (items × rank), row `i` = item `i`'s vector.
    pub fn item_factors_t(&self) -> &Array2<f64> {
        &self.ht
    }
    pub fn rank(&self) -> usize {
        self.w.ncols()
    }
    pub fn n_users(&self) -> usize {
        self.w.nrows()
    }
    pub fn n_items(&self) -> usize {
        self.ht.nrows()
    }
    /// Objective after initialisation (index 0) and after each iteration.
    pub fn loss_curve(&self) -> &[f64] {
        &self.loss_curve
    }
    /// Final objective value (including regularisation).
    pub fn final_loss(&self) -> f64 {
        *self.loss_curve.last().unwrap_or(&f64::NAN)
    }
    /// Outer iterations run.
    pub fn n_iter(&self) -> usize {
        self.n_iter
    }
    /// Whether the `tol` stopping rule fired before `max_iter`.
    pub fn converged(&self) -> bool {
        self.converged
    }

    /// Fold-in: the non-negative user vector `w` minimising
    /// `0.5‖x − wH‖² + l1_W‖w‖₁ + 0.5·l2_W‖w‖²` with H fixed — the same subproblem the fit
    /// solves for each row of W, so a training user's row is reproduced. `items`/`values`
    /// are the user's sparse interactions (duplicates add up). Uses the model's sweep
    /// budget and tolerance.
    pub fn fold_in(&self, items: &[usize], values: &[f64]) -> Result<Array1<f64>, NmfError> {
        self.fold_in_with(items, values, self.fold_in_max_sweeps, self.fold_in_tol)
    }

    /// [`Nmf::fold_in`] with an explicit sweep budget and relative step tolerance.
    pub fn fold_in_with(
        &self,
        items: &[usize],
        values: &[f64],
        max_sweeps: usize,
        tol: f64,
    ) -> Result<Array1<f64>, NmfError> {
        if items.len() != values.len() {
            return Err(NmfError::LengthMismatch { indices: items.len(), values: values.len() });
        }
        let k = self.rank();
        let n_items = self.n_items();
        let ht = self.ht.as_slice().expect("standard layout");
        // x·Hᵀ: only the user's items contribute, so this is O(nnz·k), not O(items·k).
        let mut xrow = vec![0.0; k];
        for (&i, &v) in items.iter().zip(values) {
            if i >= n_items {
                return Err(NmfError::ItemOutOfRange { index: i, n_items });
            }
            if !(v.is_finite() && v >= 0.0) {
                return Err(NmfError::InvalidValue { index: i, value: v });
            }
            axpy(v, &ht[i * k..(i + 1) * k], &mut xrow);
        }
        let g = self.fold_gram.as_slice().expect("standard layout");
        let mut w = vec![0.0; k];
        let mut grad = vec![0.0; k];
        for _ in 0..max_sweeps.max(1) {
            let (_, step) = cd_row(&mut w, &xrow, g, self.l1_w, &mut grad);
            let scale = w.iter().fold(0.0f64, |a, &b| a.max(b));
            if step <= tol * scale || step == 0.0 {
                break;
            }
        }
        Ok(Array1::from(w))
    }

    /// Predicted affinity of a user vector for every item (`wᵀH`).
    pub fn score_items(&self, user: ArrayView1<f64>) -> Array1<f64> {
        self.ht.dot(&user)
    }

    /// The `n` best items for a user vector, best first, skipping `exclude` (e.g. items the
    /// user already has). Ties are broken by item index so the answer is deterministic.
    pub fn recommend(&self, user: ArrayView1<f64>, n: usize, exclude: &[usize]) -> Vec<(usize, f64)> {
        let k = self.rank();
        let ht = self.ht.as_slice().expect("standard layout");
        let u: Vec<f64> = user.iter().copied().collect();
        if u.len() != k {
            return Vec::new();
        }
        let mut scores: Vec<(usize, f64)> =
            (0..self.n_items()).map(|i| (i, dot(&ht[i * k..(i + 1) * k], &u))).collect();
        for &e in exclude {
            if e < scores.len() {
                scores[e].1 = f64::NEG_INFINITY;
            }
        }
        top_n(scores, n)
    }
}

/// Highest scores first, ties by index; `-inf` entries (excluded) are never returned.
pub(crate) fn top_n(mut scores: Vec<(usize, f64)>, n: usize) -> Vec<(usize, f64)> {
    let cmp = |a: &(usize, f64), b: &(usize, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let n = n.min(scores.len());
    if n == 0 {
        return Vec::new();
    }
    if n < scores.len() {
        scores.select_nth_unstable_by(n - 1, cmp);
        scores.truncate(n);
    }
    scores.sort_by(cmp);
    scores.retain(|s| s.1 != f64::NEG_INFINITY);
    scores
}

impl<T> Fit<Interactions, T, NmfError> for NmfValidParams {
    type Object = Nmf;

    fn fit(&self, dataset: &DatasetBase<Interactions, T>) -> Result<Nmf, NmfError> {
        fit::fit(self, dataset.records.matrix())
    }
}

/// Dense input is accepted for convenience (tests, small experiments); it is converted to
/// CSR, dropping exact zeros, so the dense and sparse paths fit the same problem.
impl<D: Data<Elem = f64>, T> Fit<ArrayBase<D, Ix2>, T, NmfError> for NmfValidParams {
    type Object = Nmf;

    fn fit(&self, dataset: &DatasetBase<ArrayBase<D, Ix2>, T>) -> Result<Nmf, NmfError> {
        let x = Interactions::new(sprs::CsMat::csr_from_dense(dataset.records.view(), 0.0))?;
        fit::fit(self, x.matrix())
    }
}

/// Batch fold-in: one user vector per row of `x` (users × rank), rows in parallel.
impl Transformer<&Interactions, Result<Array2<f64>, NmfError>> for Nmf {
    fn transform(&self, x: &Interactions) -> Result<Array2<f64>, NmfError> {
        if x.n_items() != self.n_items() {
            return Err(NmfError::ShapeMismatch { expected: self.n_items(), got: x.n_items() });
        }
        let rows: Vec<Array1<f64>> = (0..x.n_users())
            .into_par_iter()
            .map(|u| {
                let (items, values) = x.row(u);
                self.fold_in(items, values)
            })
            .collect::<Result<_, _>>()?;
        let k = self.rank();
        let mut out = Array2::zeros((rows.len(), k));
        for (mut o, r) in out.rows_mut().into_iter().zip(rows) {
            o.assign(&r);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use linfa::prelude::*;
    use ndarray::Array2;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use crate::fit::tests::{low_rank, sparse};
    use crate::{Interactions, Nmf, NmfError};

    /// Low-rank signal plus sparse noise: W is then not an exact factor, so reproducing it
    /// by fold-in really depends on solving the same regularised subproblem.
    fn noisy(m: usize, n: usize) -> Array2<f64> {
        let mut x = low_rank(m, n, 5, 11);
        let mut rng = StdRng::seed_from_u64(12);
        x.mapv_inplace(|v| if rng.gen::<f64>() < 0.4 { 0.0 } else { v + rng.gen_range(0.0..0.3) });
        x
    }

    #[test]
    fn fold_in_reproduces_the_fitted_user_rows() {
        let x = noisy(60, 45);
        let data = DatasetBase::new(sparse(&x), ());
        let model = Nmf::params(5).max_iter(3000).tol(0.0).alpha(0.001).l1_ratio(0.2).fit(&data).unwrap();
        let w = model.user_factors();
        let scale = w.iter().fold(0.0f64, |a, &b| a.max(b));
        for u in 0..x.nrows() {
            let (items, values) = data.records.row(u);
            let folded = model.fold_in_with(items, values, 10_000, 1e-13).unwrap();
            for t in 0..model.rank() {
                let diff = (folded[t] - w[[u, t]]).abs();
                assert!(diff <= 1e-6 * scale, "user {u} comp {t}: fold-in {} vs W {}", folded[t], w[[u, t]]);
            }
        }
    }

    #[test]
    fn transform_folds_in_every_row() {
        let x = noisy(30, 20);
        let data = DatasetBase::new(sparse(&x), ());
        let model = Nmf::params(3).max_iter(100).fit(&data).unwrap();
        let all = model.transform(&data.records).unwrap();
        assert_eq!(all.dim(), (30, 3));
        for u in [0, 7, 29] {
            let (items, values) = data.records.row(u);
            assert_eq!(all.row(u), model.fold_in(items, values).unwrap());
        }
        let wrong = Interactions::new(sprs::CsMat::zero((2, 21))).unwrap();
        assert!(matches!(model.transform(&wrong), Err(NmfError::ShapeMismatch { expected: 20, got: 21 })));
    }

    #[test]
    fn fold_in_rejects_bad_rows() {
        let x = noisy(20, 10);
        let model = Nmf::params(2).max_iter(20).fit(&DatasetBase::new(sparse(&x), ())).unwrap();
        assert!(matches!(model.fold_in(&[10], &[1.0]), Err(NmfError::ItemOutOfRange { index: 10, n_items: 10 })));
        assert!(matches!(model.fold_in(&[1, 2], &[1.0]), Err(NmfError::LengthMismatch { .. })));
        assert!(matches!(model.fold_in(&[1], &[-1.0]), Err(NmfError::InvalidValue { .. })));
        assert!(matches!(model.fold_in(&[1], &[f64::NAN]), Err(NmfError::InvalidValue { .. })));
        // No interactions: the zero vector (callers fall back to trending).
        assert!(model.fold_in(&[], &[]).unwrap().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn recommend_ranks_by_score_and_skips_excluded_items() {
        let x = noisy(40, 25);
        let model = Nmf::params(4).max_iter(50).fit(&DatasetBase::new(sparse(&x), ())).unwrap();
        let user = model.user_factors().row(3).to_owned();
        let scores = model.score_items(user.view());
        let recs = model.recommend(user.view(), 5, &[0, 1, 2]);
        assert_eq!(recs.len(), 5);
        assert!(recs.iter().all(|(i, _)| *i > 2));
        assert!(recs.windows(2).all(|p| p[0].1 >= p[1].1));
        // Nothing outside the list (and not excluded) scores higher than its last entry.
        let last = recs[4].1;
        let listed: Vec<usize> = recs.iter().map(|r| r.0).collect();
        for i in 3..25 {
            if !listed.contains(&i) {
                assert!(scores[i] <= last);
            }
        }
        for (i, s) in &recs {
            assert!((scores[*i] - s).abs() < 1e-12);
        }
    }
}
