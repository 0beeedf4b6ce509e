//! The outer alternating loop shared by both solvers, the loss curve and the stopping rule.
//!
//! Per iteration (H is kept transposed, Hᵀ: items × rank), two fused parallel passes:
//!   W-step, per block of users:  rows of XHᵀ (sparse × dense) → update those rows of W →
//!                                their partial WᵀW;
//!   H-step, per block of items:  rows of XᵀW → update those rows of Hᵀ → partial HHᵀ and
//!                                partial Σ(Hᵀ ∘ XᵀW).
//! Fusing keeps each XHᵀ row in cache between its computation and its use, and leaves two
//! fork/join barriers per iteration instead of eight — on a busy 2-core machine each barrier
//! can wait a whole scheduler slice for a descheduled worker. Partial results are summed in
//! block order, so the result does not depend on scheduling.
//! The loss then costs almost nothing: with the products already at hand,
//!   ‖X − WH‖² = ‖X‖² − 2·Σ(Hᵀ ∘ XᵀW) + Σ(WᵀW ∘ HHᵀ),
//! so X is never densified and the curve is exact up to rounding.

use ndarray::Array2;
use sprs::CsMat;

use rayon::prelude::*;

use crate::linalg::{dot, frob_inner, gram, gram_block, spmm, spmm_block, ROW_BLOCK};
use crate::{init, solver_cd, solver_mu, Nmf, NmfError, NmfValidParams, Solver};

/// What one factor update reports back.
struct StepOut {
    /// Projected-gradient violation before the update.
    violation: f64,
    /// Gram matrix of the updated factor (k × k).
    gram: Array2<f64>,
    /// Σ(updated factor ∘ X·other), i.e. tr(WᵀXHᵀ) for the H-step.
    cross: f64,
}

/// Updates every row of `factor` given `x` (rows of X matching the factor's rows, CSR),
/// the other factor and its Gram matrix — one parallel pass (see the module docs).
fn step(
    x: &CsMat<f64>,
    other: &Array2<f64>,
    other_gram: &Array2<f64>,
    factor: &mut Array2<f64>,
    solver: Solver,
    l1: f64,
    l2: f64,
) -> StepOut {
    let k = factor.ncols();
    let mut g = other_gram.clone();
    g.diag_mut().mapv_inplace(|d| d + l2);
    let g = g.as_slice().expect("standard layout");
    let o = other.as_slice().expect("standard layout");
    let indptr = x.indptr();
    let indptr = indptr.to_proper();
    let (indices, data) = (x.indices(), x.data());
    let f = factor.as_slice_mut().expect("standard layout");
    let parts: Vec<(f64, Vec<f64>, f64)> = f
        .par_chunks_mut(ROW_BLOCK * k)
        .enumerate()
        .map(|(b, fb)| {
            let mut xf = vec![0.0; fb.len()];
            spmm_block(&indptr, indices, data, o, k, b * ROW_BLOCK, &mut xf);
            let violation = match solver {
                Solver::CoordinateDescent => solver_cd::cd_block(fb, &xf, g, k, l1),
                Solver::MultiplicativeUpdate => solver_mu::mu_block(fb, &xf, g, k, l1),
            };
            let mut gp = vec![0.0; k * k];
            gram_block(fb, k, &mut gp);
            (violation, gp, dot(fb, &xf))
        })
        .collect();
    let mut out = StepOut { violation: 0.0, gram: Array2::zeros((k, k)), cross: 0.0 };
    {
        let gs = out.gram.as_slice_mut().expect("standard layout");
        for (v, gp, c) in &parts {
            out.violation += v;
            out.cross += c;
            for (a, b) in gs.iter_mut().zip(gp) {
                *a += b;
            }
        }
    }
    // gram_block fills the upper triangle only.
    for t in 0..k {
        for r in 0..t {
            out.gram[[t, r]] = out.gram[[r, t]];
        }
    }
    out
}

/// Regularisation weights scaled as in sklearn ≥ 1.2 (see [`NmfValidParams`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Regs {
    pub l1_w: f64,
    pub l2_w: f64,
    pub l1_h: f64,
    pub l2_h: f64,
}

impl Regs {
    pub(crate) fn new(p: &NmfValidParams, n_users: usize, n_items: usize) -> Self {
        let (m, n) = (n_users as f64, n_items as f64);
        Self {
            l1_w: n * p.alpha_w * p.l1_ratio,
            l2_w: n * p.alpha_w * (1.0 - p.l1_ratio),
            l1_h: m * p.alpha_h * p.l1_ratio,
            l2_h: m * p.alpha_h * (1.0 - p.l1_ratio),
        }
    }
}

/// Objective value from the products the iteration already has. `cross` = tr(WᵀXHᵀ).
fn objective(
    x_sq: f64,
    cross: f64,
    wtw: &Array2<f64>,
    hht: &Array2<f64>,
    w: &Array2<f64>,
    ht: &Array2<f64>,
    r: Regs,
) -> f64 {
    // Clamped: cancellation can push an (almost) exact fit a few ulps below zero.
    let fit = (0.5 * (x_sq - 2.0 * cross + frob_inner(wtw, hht))).max(0.0);
    let mut reg = 0.0;
    if r.l1_w != 0.0 {
        reg += r.l1_w * w.sum();
    }
    if r.l2_w != 0.0 {
        reg += 0.5 * r.l2_w * wtw.diag().sum();
    }
    if r.l1_h != 0.0 {
        reg += r.l1_h * ht.sum();
    }
    if r.l2_h != 0.0 {
        reg += 0.5 * r.l2_h * hht.diag().sum();
    }
    fit + reg
}

pub(crate) fn fit(p: &NmfValidParams, x: &CsMat<f64>) -> Result<Nmf, NmfError> {
    fit_observed(p, x, &mut |_, _| {})
}

/// [`fit`] that reports `(iteration, loss)` after each outer iteration, so a caller (the
/// `shopflow train` progress bar) can show progress without the solver knowing about it.
pub(crate) fn fit_observed(
    p: &NmfValidParams,
    x: &CsMat<f64>,
    on_iter: &mut dyn FnMut(usize, f64),
) -> Result<Nmf, NmfError> {
    let (m, n) = (x.rows(), x.cols());
    if m == 0 || n == 0 {
        return Err(NmfError::EmptyMatrix { rows: m, cols: n });
    }
    let k = p.rank;
    let regs = Regs::new(p, m, n);
    // Xᵀ in CSR once, so XᵀW is the same row-parallel kernel as XHᵀ.
    let xt = x.transpose_view().to_csr();
    let x_sq: f64 = x.data().iter().map(|v| v * v).sum();

    let (mut w, mut ht) = init::initialize(p.init, x, &xt, k, p.seed)?;

    let mut hht = gram(&ht);
    let mut wtw = gram(&w);
    let mut loss_curve = Vec::with_capacity(p.max_iter + 1);
    loss_curve.push(objective(x_sq, frob_inner(&w, &spmm(x, &ht)), &wtw, &hht, &w, &ht, regs));

    let mut violation_init: Option<f64> = None;
    let mut n_iter = 0;
    let mut converged = false;
    for it in 0..p.max_iter {
        let w_step = step(x, &ht, &hht, &mut w, p.solver, regs.l1_w, regs.l2_w);
        wtw = w_step.gram;
        let h_step = step(&xt, &w, &wtw, &mut ht, p.solver, regs.l1_h, regs.l2_h);
        hht = h_step.gram;
        loss_curve.push(objective(x_sq, h_step.cross, &wtw, &hht, &w, &ht, regs));
        n_iter = it + 1;
        on_iter(n_iter, *loss_curve.last().unwrap_or(&f64::NAN));

        // sklearn's rule: stop when the projected-gradient violation has shrunk to `tol`
        // times its first value (or is exactly zero: a stationary point).
        let violation = w_step.violation + h_step.violation;
        let v0 = *violation_init.get_or_insert(violation);
        if v0 <= 0.0 || violation / v0 <= p.tol {
            converged = true;
            break;
        }
    }

    Ok(Nmf::from_parts(w, ht, hht, regs, p, loss_curve, n_iter, converged))
}

impl NmfValidParams {
    /// Fits like linfa's `Fit`, calling `on_iter(iteration, loss)` after every iteration.
    pub fn fit_with_progress(
        &self,
        x: &crate::Interactions,
        mut on_iter: impl FnMut(usize, f64),
    ) -> Result<Nmf, NmfError> {
        fit_observed(self, x.matrix(), &mut on_iter)
    }
}

impl crate::NmfParams {
    /// Checks the hyperparameters, then [`NmfValidParams::fit_with_progress`].
    pub fn fit_with_progress(
        &self,
        x: &crate::Interactions,
        on_iter: impl FnMut(usize, f64),
    ) -> Result<Nmf, NmfError> {
        use linfa::ParamGuard;
        self.check_ref()?.fit_with_progress(x, on_iter)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use linfa::prelude::*;
    use ndarray::Array2;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use crate::{Init, Interactions, Nmf, NmfParams, Solver};

    /// A known rank-`r` non-negative matrix `W0·H0` with ~30% zeros in each factor, so X
    /// itself is sparse-ish (zeros in X are real zeros, as in interaction data).
    pub(crate) fn low_rank(m: usize, n: usize, r: usize, seed: u64) -> Array2<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut draw = || if rng.gen::<f64>() < 0.3 { 0.0 } else { rng.gen_range(0.1..1.0) };
        let w0 = Array2::from_shape_simple_fn((m, r), &mut draw);
        let h0 = Array2::from_shape_simple_fn((r, n), &mut draw);
        w0.dot(&h0)
    }

    pub(crate) fn sparse(x: &Array2<f64>) -> Interactions {
        Interactions::new(sprs::CsMat::csr_from_dense(x.view(), 0.0)).unwrap()
    }

    fn fit(x: &Array2<f64>, p: NmfParams) -> Nmf {
        p.fit(&DatasetBase::new(sparse(x), ())).unwrap()
    }

    fn rel_error(x: &Array2<f64>, m: &Nmf) -> f64 {
        let wh = m.user_factors().dot(m.item_factors());
        let err: f64 = (x - &wh).iter().map(|d| d * d).sum();
        let norm: f64 = x.iter().map(|d| d * d).sum();
        (err / norm).sqrt()
    }

    /// Non-increasing within 1e-9 relative, plus the rounding floor of the Gram-trick loss
    /// (it subtracts quantities of size ‖X‖², so its absolute error is ~ε‖X‖²).
    fn assert_monotone(curve: &[f64], x: &Array2<f64>) {
        let x_sq: f64 = x.iter().map(|v| v * v).sum();
        let floor = 64.0 * f64::EPSILON * x_sq;
        for (t, pair) in curve.windows(2).enumerate() {
            assert!(
                pair[1] <= pair[0] * (1.0 + 1e-9) + floor,
                "loss increased at iteration {}: {} -> {}",
                t + 1,
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn cd_loss_is_monotone_and_recovers_a_low_rank_matrix() {
        let x = low_rank(40, 30, 4, 1);
        // Exact NMF converges sublinearly once factors hit their zero pattern, hence the
        // generous iteration count (the matrix is tiny, this takes milliseconds).
        let m = fit(&x, Nmf::params(4).max_iter(3000).tol(0.0));
        assert_eq!(m.loss_curve().len(), m.n_iter() + 1);
        assert_monotone(m.loss_curve(), &x);
        let first = m.loss_curve()[0];
        assert!(m.final_loss() < 1e-5 * first, "loss {} -> {}", first, m.final_loss());
        assert!(rel_error(&x, &m) < 1e-3, "relative error {}", rel_error(&x, &m));
    }

    #[test]
    fn mu_loss_is_monotone_and_recovers_a_low_rank_matrix() {
        let x = low_rank(40, 30, 4, 2);
        let m = fit(
            &x,
            Nmf::params(4)
                .max_iter(3000)
                .tol(0.0)
                .solver(Solver::MultiplicativeUpdate)
                .init(Init::NndsvdA),
        );
        assert_monotone(m.loss_curve(), &x);
        assert!(rel_error(&x, &m) < 2e-2, "relative error {}", rel_error(&x, &m));
    }

    #[test]
    fn regularised_objective_is_monotone_for_both_solvers() {
        let x = low_rank(35, 25, 5, 3);
        for solver in [Solver::CoordinateDescent, Solver::MultiplicativeUpdate] {
            for init in [Init::NndsvdA, Init::Random] {
                let m = fit(
                    &x,
                    Nmf::params(5).max_iter(200).tol(0.0).alpha(0.01).l1_ratio(0.5).solver(solver).init(init),
                );
                assert_monotone(m.loss_curve(), &x);
                assert!(m.final_loss() < m.loss_curve()[0]);
            }
        }
    }

    #[test]
    fn loss_curve_matches_the_exact_objective() {
        let x = low_rank(30, 20, 3, 4);
        let (alpha, l1) = (0.02, 0.3);
        let m = fit(&x, Nmf::params(3).max_iter(5).tol(0.0).alpha(alpha).l1_ratio(l1));
        let (w, h) = (m.user_factors(), m.item_factors());
        let resid: f64 = (&x - &w.dot(h)).iter().map(|d| d * d).sum();
        let (mm, nn) = (30.0, 20.0);
        let reg = nn * alpha * l1 * w.sum()
            + 0.5 * nn * alpha * (1.0 - l1) * w.iter().map(|v| v * v).sum::<f64>()
            + mm * alpha * l1 * h.sum()
            + 0.5 * mm * alpha * (1.0 - l1) * h.iter().map(|v| v * v).sum::<f64>();
        let exact = 0.5 * resid + reg;
        assert!((m.final_loss() - exact).abs() <= 1e-9 * exact, "{} vs {}", m.final_loss(), exact);
    }

    #[test]
    fn same_seed_gives_identical_factors() {
        let x = low_rank(50, 40, 6, 5);
        for (solver, init) in [
            (Solver::CoordinateDescent, Init::Nndsvd),
            (Solver::CoordinateDescent, Init::Random),
            (Solver::MultiplicativeUpdate, Init::NndsvdA),
        ] {
            let p = Nmf::params(6).max_iter(50).seed(42).solver(solver).init(init);
            let a = fit(&x, p.clone());
            let b = fit(&x, p);
            assert_eq!(a.user_factors(), b.user_factors());
            assert_eq!(a.item_factors(), b.item_factors());
            assert_eq!(a.loss_curve(), b.loss_curve());
        }
        // And the seed matters (random init), so the test above is not vacuous.
        let a = fit(&x, Nmf::params(6).max_iter(5).seed(1).init(Init::Random));
        let b = fit(&x, Nmf::params(6).max_iter(5).seed(2).init(Init::Random));
        assert_ne!(a.user_factors(), b.user_factors());
    }

    #[test]
    fn tol_stops_early_and_zero_tol_runs_all_iterations() {
        let x = low_rank(30, 30, 3, 6);
        let loose = fit(&x, Nmf::params(3).max_iter(500).tol(1e-2));
        assert!(loose.converged());
        assert!(loose.n_iter() < 500);
        let exact = fit(&x, Nmf::params(3).max_iter(37).tol(0.0));
        assert_eq!(exact.n_iter(), 37);
        assert!(!exact.converged());
    }

    #[test]
    fn progress_callback_sees_every_iteration_and_changes_nothing() {
        let x = low_rank(25, 20, 3, 9);
        let p = Nmf::params(3).max_iter(40).tol(0.0);
        let mut seen = Vec::new();
        let observed = p.fit_with_progress(&sparse(&x), |it, loss| seen.push((it, loss))).unwrap();
        let plain = fit(&x, p);
        assert_eq!(observed.user_factors(), plain.user_factors());
        assert_eq!(seen.len(), 40);
        for (n, (it, loss)) in seen.iter().enumerate() {
            assert_eq!(*it, n + 1);
            assert_eq!(*loss, plain.loss_curve()[n + 1]);
        }
        assert!(Nmf::params(0).fit_with_progress(&sparse(&x), |_, _| {}).is_err());
    }

    #[test]
    fn dense_and_sparse_inputs_fit_the_same_model() {
        let x = low_rank(20, 15, 2, 7);
        let p = Nmf::params(2).max_iter(30);
        let sparse_model = fit(&x, p.clone());
        let dense_model = p.fit(&DatasetBase::new(x.clone(), ())).unwrap();
        assert_eq!(sparse_model.user_factors(), dense_model.user_factors());
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        use crate::{NmfError, NmfParamsError};
        let x = low_rank(6, 5, 2, 8);
        // Rank above min(users, items) with NNDSVD.
        let err = Nmf::params(6).fit(&DatasetBase::new(sparse(&x), ())).unwrap_err();
        assert!(matches!(err, NmfError::RankTooLarge { rank: 6, max: 5 }));
        // Random init has no such limit.
        assert!(Nmf::params(6).init(Init::Random).max_iter(3).fit(&DatasetBase::new(sparse(&x), ())).is_ok());
        // Unchecked params are checked by `fit`.
        let err = Nmf::params(0).fit(&DatasetBase::new(sparse(&x), ())).unwrap_err();
        assert!(matches!(err, NmfError::Params(NmfParamsError::ZeroRank)));
        // Negative and NaN entries.
        let mut bad = x.clone();
        bad[[1, 2]] = -1.0;
        let err = Nmf::params(2).fit(&DatasetBase::new(bad, ())).unwrap_err();
        assert!(matches!(err, NmfError::InvalidEntry { row: 1, col: 2, .. }));
        let nan = sprs::CsMat::new((2, 2), vec![0, 1, 1], vec![0], vec![f64::NAN]);
        assert!(matches!(Interactions::new(nan), Err(NmfError::InvalidEntry { row: 0, col: 0, .. })));
        // Empty matrix.
        let empty = Interactions::new(sprs::CsMat::zero((0, 4))).unwrap();
        assert!(matches!(
            Nmf::params(1).fit(&DatasetBase::new(empty, ())),
            Err(NmfError::EmptyMatrix { .. })
        ));
    }
}
