//! Hyperparameters, following linfa's `ParamGuard` pattern: `NmfParams` is the unchecked
//! builder, `NmfValidParams` can only be obtained through `check()`, and `Fit` is
//! implemented on the valid one (linfa's blanket impl adds it to the unchecked one).

use linfa::ParamGuard;

use crate::{Nmf, NmfParamsError};

/// How W and H are updated each iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Solver {
    /// Hierarchical ALS / Cichocki–Phan coordinate descent, as scikit-learn's `cd` solver:
    /// each coordinate is minimised exactly, so it converges in far fewer iterations.
    CoordinateDescent,
    /// Lee–Seung multiplicative updates for the Frobenius loss (scikit-learn's `mu`).
    MultiplicativeUpdate,
}

/// How W and H are initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// Non-negative double SVD (Boutsidis & Gallopoulos 2008); zeros stay zero, which suits
    /// coordinate descent and sparse factors.
    Nndsvd,
    /// NNDSVD with zeros replaced by the mean of X; better for multiplicative updates,
    /// which can never move an entry away from exactly zero.
    NndsvdA,
    /// Scaled absolute Gaussian entries, `sqrt(mean(X) / rank) * |N(0, 1)|`.
    Random,
}

/// Checked NMF hyperparameters. Obtain through [`NmfParams::check`] (or let `fit` check).
///
/// Regularisation follows scikit-learn ≥ 1.2: the objective is
/// `0.5‖X − WH‖²_F + a_W·l1·n_items·‖W‖₁ + 0.5·a_W·(1−l1)·n_items·‖W‖²_F
///  + a_H·l1·n_users·‖H‖₁ + 0.5·a_H·(1−l1)·n_users·‖H‖²_F`, so the same `alpha` means the
/// same thing whatever the matrix size, and results are comparable with sklearn's.
#[derive(Debug, Clone, PartialEq)]
pub struct NmfValidParams {
    pub(crate) rank: usize,
    pub(crate) max_iter: usize,
    pub(crate) tol: f64,
    pub(crate) l1_ratio: f64,
    pub(crate) alpha_w: f64,
    pub(crate) alpha_h: f64,
    pub(crate) seed: u64,
    pub(crate) solver: Solver,
    pub(crate) init: Init,
    pub(crate) fold_in_max_sweeps: usize,
    pub(crate) fold_in_tol: f64,
}

impl NmfValidParams {
    pub fn rank(&self) -> usize {
        self.rank
    }
    pub fn max_iter(&self) -> usize {
        self.max_iter
    }
    pub fn tol(&self) -> f64 {
        self.tol
    }
    pub fn l1_ratio(&self) -> f64 {
        self.l1_ratio
    }
    pub fn alpha_w(&self) -> f64 {
        self.alpha_w
    }
    pub fn alpha_h(&self) -> f64 {
        self.alpha_h
    }
    pub fn seed(&self) -> u64 {
        self.seed
    }
    pub fn solver(&self) -> Solver {
        self.solver
    }
    pub fn init(&self) -> Init {
        self.init
    }
    pub fn fold_in_max_sweeps(&self) -> usize {
        self.fold_in_max_sweeps
    }
    pub fn fold_in_tol(&self) -> f64 {
        self.fold_in_tol
    }
}

/// Unchecked NMF hyperparameters (builder). Defaults: 200 iterations, `tol = 1e-4`
/// (relative projected-gradient violation, as sklearn's `cd`), no regularisation,
/// coordinate descent, NNDSVD, seed 0, fold-in up to 50 sweeps with `tol = 1e-6`.
#[derive(Debug, Clone, PartialEq)]
pub struct NmfParams(NmfValidParams);

impl NmfParams {
    pub fn new(rank: usize) -> Self {
        Self(NmfValidParams {
            rank,
            max_iter: 200,
            tol: 1e-4,
            l1_ratio: 0.0,
            alpha_w: 0.0,
            alpha_h: 0.0,
            seed: 0,
            solver: Solver::CoordinateDescent,
            init: Init::Nndsvd,
            fold_in_max_sweeps: 50,
            fold_in_tol: 1e-6,
        })
    }

    pub fn rank(mut self, rank: usize) -> Self {
        self.0.rank = rank;
        self
    }
    /// Maximum number of outer iterations (one W update + one H update each).
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.0.max_iter = max_iter;
        self
    }
    /// Stop when the projected-gradient violation falls to `tol` × its first value;
    /// `0` runs exactly `max_iter` iterations unless the gradient vanishes.
    pub fn tol(mut self, tol: f64) -> Self {
        self.0.tol = tol;
        self
    }
    /// Mix between L1 (1.0) and L2 (0.0) regularisation.
    pub fn l1_ratio(mut self, l1_ratio: f64) -> Self {
        self.0.l1_ratio = l1_ratio;
        self
    }
    /// Regularisation strength on W (user factors).
    pub fn alpha_w(mut self, alpha_w: f64) -> Self {
        self.0.alpha_w = alpha_w;
        self
    }
    /// Regularisation strength on H (item factors).
    pub fn alpha_h(mut self, alpha_h: f64) -> Self {
        self.0.alpha_h = alpha_h;
        self
    }
    /// Sets `alpha_w` and `alpha_h` together (sklearn's `alpha_H = "same"`).
    pub fn alpha(self, alpha: f64) -> Self {
        self.alpha_w(alpha).alpha_h(alpha)
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }
    pub fn solver(mut self, solver: Solver) -> Self {
        self.0.solver = solver;
        self
    }
    pub fn init(mut self, init: Init) -> Self {
        self.0.init = init;
        self
    }
    /// Maximum coordinate-descent sweeps when folding in a new user.
    pub fn fold_in_max_sweeps(mut self, sweeps: usize) -> Self {
        self.0.fold_in_max_sweeps = sweeps;
        self
    }
    /// Fold-in stops once no coordinate moved by more than `tol` × the largest coordinate.
    pub fn fold_in_tol(mut self, tol: f64) -> Self {
        self.0.fold_in_tol = tol;
        self
    }
}

impl Default for NmfParams {
    fn default() -> Self {
        Self::new(32)
    }
}

fn non_negative_finite(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

impl ParamGuard for NmfParams {
    type Checked = NmfValidParams;
    type Error = NmfParamsError;

    fn check_ref(&self) -> Result<&Self::Checked, Self::Error> {
        let p = &self.0;
        if p.rank == 0 {
            return Err(NmfParamsError::ZeroRank);
        }
        if p.max_iter == 0 {
            return Err(NmfParamsError::ZeroMaxIter);
        }
        if !non_negative_finite(p.tol) {
            return Err(NmfParamsError::InvalidTol(p.tol));
        }
        // `contains` is false for NaN, so NaN is rejected too.
        if !(0.0..=1.0).contains(&p.l1_ratio) {
            return Err(NmfParamsError::InvalidL1Ratio(p.l1_ratio));
        }
        if !non_negative_finite(p.alpha_w) {
            return Err(NmfParamsError::InvalidAlphaW(p.alpha_w));
        }
        if !non_negative_finite(p.alpha_h) {
            return Err(NmfParamsError::InvalidAlphaH(p.alpha_h));
        }
        if p.fold_in_max_sweeps == 0 {
            return Err(NmfParamsError::ZeroFoldInSweeps);
        }
        if !non_negative_finite(p.fold_in_tol) {
            return Err(NmfParamsError::InvalidFoldInTol(p.fold_in_tol));
        }
        Ok(p)
    }

    fn check(self) -> Result<Self::Checked, Self::Error> {
        self.check_ref()?;
        Ok(self.0)
    }
}

impl Nmf {
    /// Hyperparameters for a rank-`rank` factorisation (linfa's `Algo::params` convention).
    pub fn params(rank: usize) -> NmfParams {
        NmfParams::new(rank)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let p = NmfParams::new(8).check().unwrap();
        assert_eq!(p.rank(), 8);
        assert_eq!(p.solver(), Solver::CoordinateDescent);
        assert_eq!(p.init(), Init::Nndsvd);
    }

    #[test]
    fn each_invalid_hyperparameter_gives_its_error() {
        let base = || NmfParams::new(4);
        let cases: Vec<(NmfParams, NmfParamsError)> = vec![
            (base().rank(0), NmfParamsError::ZeroRank),
            (base().max_iter(0), NmfParamsError::ZeroMaxIter),
            (base().tol(-1e-3), NmfParamsError::InvalidTol(-1e-3)),
            (base().l1_ratio(1.5), NmfParamsError::InvalidL1Ratio(1.5)),
            (base().l1_ratio(-0.1), NmfParamsError::InvalidL1Ratio(-0.1)),
            (base().alpha_w(-1.0), NmfParamsError::InvalidAlphaW(-1.0)),
            (base().alpha_h(-2.0), NmfParamsError::InvalidAlphaH(-2.0)),
            (base().fold_in_max_sweeps(0), NmfParamsError::ZeroFoldInSweeps),
            (base().fold_in_tol(-1.0), NmfParamsError::InvalidFoldInTol(-1.0)),
        ];
        for (params, expected) in cases {
            assert_eq!(params.check_ref().unwrap_err(), expected);
            assert_eq!(params.check().unwrap_err(), expected);
        }
    }

    #[test]
    fn nan_and_infinite_hyperparameters_are_rejected() {
        assert!(matches!(
            NmfParams::new(4).tol(f64::NAN).check(),
            Err(NmfParamsError::InvalidTol(_))
        ));
        assert!(matches!(
            NmfParams::new(4).l1_ratio(f64::NAN).check(),
            Err(NmfParamsError::InvalidL1Ratio(_))
        ));
        assert!(matches!(
            NmfParams::new(4).alpha_w(f64::INFINITY).check(),
            Err(NmfParamsError::InvalidAlphaW(_))
        ));
    }

    #[test]
    fn boundary_values_are_accepted() {
        let p = NmfParams::new(1).max_iter(1).tol(0.0).l1_ratio(1.0).alpha(0.0).check();
        assert!(p.is_ok());
        assert!(NmfParams::new(1).l1_ratio(0.0).check().is_ok());
    }
}
