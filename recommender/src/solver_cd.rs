//! Coordinate descent (HALS, Cichocki & Phan 2009), the update of scikit-learn's `cd`
//! solver (`_update_cdnmf_fast`), written for one factor given the other's Gram matrix.
//!
//! For W with H fixed, 0.5‖X − WH‖² + l1‖W‖₁ + 0.5·l2‖W‖² separates over the rows of W, and
//! within a row each coordinate w_t has the exact minimiser
//! `max(0, w_t − grad_t / G_tt)` with `grad = G w − (XHᵀ)_row + l1`, `G = HHᵀ + l2·I`.
//! sklearn loops component-outer, row-inner; since a row's update only reads that row, the
//! row-outer order here does exactly the same arithmetic, but keeps a row in cache and lets
//! rows be processed in parallel.

use ndarray::Array2;
use rayon::prelude::*;

use crate::linalg::{dot, ROW_BLOCK};

/// One coordinate-descent sweep over the components of one row. Returns the row's
/// projected-gradient violation (sklearn's convergence measure) and the largest step taken.
#[inline]
pub(crate) fn cd_row(w: &mut [f64], xrow: &[f64], g: &[f64], l1: f64) -> (f64, f64) {
    let k = w.len();
    let mut violation = 0.0;
    let mut max_step: f64 = 0.0;
    for t in 0..k {
        let hess = g[t * k + t];
        let grad = dot(&g[t * k..(t + 1) * k], w) - xrow[t] + l1;
        // At the bound w_t = 0 only a negative gradient is a violation of optimality.
        let pg = if w[t] == 0.0 { grad.min(0.0) } else { grad };
        violation += pg.abs();
        if hess != 0.0 {
            let new = (w[t] - grad / hess).max(0.0);
            max_step = max_step.max((new - w[t]).abs());
            w[t] = new;
        }
    }
    (violation, max_step)
}

/// Updates every row of `factor` (rows × k) once, given `xf` = X·(other factor)ᵀ and the
/// other factor's Gram matrix. Returns the total projected-gradient violation.
pub(crate) fn update(
    factor: &mut Array2<f64>,
    xf: &Array2<f64>,
    gram: &Array2<f64>,
    l1: f64,
    l2: f64,
) -> f64 {
    let k = factor.ncols();
    let mut g = gram.clone();
    g.diag_mut().mapv_inplace(|d| d + l2);
    let g = g.as_slice().expect("standard layout");
    let f = factor.as_slice_mut().expect("standard layout");
    let x = xf.as_slice().expect("standard layout");
    let partials: Vec<f64> = f
        .par_chunks_mut(ROW_BLOCK * k)
        .zip(x.par_chunks(ROW_BLOCK * k))
        .map(|(fb, xb)| {
            let mut v = 0.0;
            for (frow, xrow) in fb.chunks_mut(k).zip(xb.chunks(k)) {
                v += cd_row(frow, xrow, g, l1).0;
            }
            v
        })
        .collect();
    // Sequential sum in block order: deterministic.
    partials.iter().sum()
}
