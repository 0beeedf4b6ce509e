//! Coordinate descent (HALS, Cichocki & Phan 2009), the update of scikit-learn's `cd`
//! solver (`_update_cdnmf_fast`), written for one factor given the other's Gram matrix.
//!
//! For W with H fixed, 0.5‖X − WH‖² + l1‖W‖₁ + 0.5·l2‖W‖² separates over the rows of W, and
//! within a row each coordinate w_t has the exact minimiser
//! `max(0, w_t − grad_t / G_tt)` with `grad = G w − (XHᵀ)_row + l1`, `G = HHᵀ + l2·I`.
//! sklearn loops component-outer, row-inner; since a row's update only reads that row, the
//! row-outer order here performs the same sequence of coordinate updates, but keeps a row in
//! cache and lets rows run in parallel.
//!
//! Instead of recomputing `grad_t = G_t·w` (k flops) for every coordinate as sklearn does,
//! the row's gradient is formed once and then corrected with `grad += δ·G_t` only when a
//! coordinate actually moves. NMF factors are sparse (many coordinates sit at 0 and stay
//! there), so this skips most of the work; mathematically the updates are identical.

use crate::linalg::{axpy_g, simd_dispatch};

/// One sweep over the components of one row. `grad` is scratch of length k. Returns the
/// row's projected-gradient violation (sklearn's convergence measure) and the largest step.
#[inline(always)]
fn cd_row_g<const FMA: bool>(w: &mut [f64], xrow: &[f64], g: &[f64], l1: f64, grad: &mut [f64]) -> (f64, f64) {
    let k = w.len();
    for t in 0..k {
        grad[t] = l1 - xrow[t];
    }
    // grad += G·w, by columns of the symmetric G so zero coordinates cost nothing.
    for r in 0..k {
        if w[r] != 0.0 {
            axpy_g::<FMA>(w[r], &g[r * k..(r + 1) * k], grad);
        }
    }
    let mut violation = 0.0;
    let mut max_step: f64 = 0.0;
    for t in 0..k {
        let hess = g[t * k + t];
        let gt = grad[t];
        // At the bound w_t = 0 only a negative gradient violates optimality.
        let pg = if w[t] == 0.0 { gt.min(0.0) } else { gt };
        violation += pg.abs();
        if hess != 0.0 {
            let new = (w[t] - gt / hess).max(0.0);
            let delta = new - w[t];
            if delta != 0.0 {
                axpy_g::<FMA>(delta, &g[t * k..(t + 1) * k], grad);
                w[t] = new;
                max_step = max_step.max(delta.abs());
            }
        }
    }
    (violation, max_step)
}

simd_dispatch!(pub(crate) fn cd_row => cd_row_g(
    w: &mut [f64], xrow: &[f64], g: &[f64], l1: f64, grad: &mut [f64]
) -> (f64, f64));

#[inline(always)]
fn cd_block_g<const FMA: bool>(fb: &mut [f64], xb: &[f64], g: &[f64], k: usize, l1: f64) -> f64 {
    let mut grad = vec![0.0; k];
    let mut v = 0.0;
    for (frow, xrow) in fb.chunks_mut(k).zip(xb.chunks(k)) {
        v += cd_row_g::<FMA>(frow, xrow, g, l1, &mut grad).0;
    }
    v
}

simd_dispatch!(pub(crate) fn cd_block => cd_block_g(fb: &mut [f64], xb: &[f64], g: &[f64], k: usize, l1: f64) -> f64);
