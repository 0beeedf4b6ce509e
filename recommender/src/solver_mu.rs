//! Multiplicative updates (Lee & Seung 2001) for the Frobenius loss, with sklearn's
//! regularised form: `W ← W ∘ XHᵀ / (W(HHᵀ + l2·I) + l1)`. Each step is the minimiser of a
//! diagonal majorising quadratic, so the (regularised) loss never increases; the update is
//! simultaneous within a row (unlike CD), hence the scratch buffer.

use ndarray::Array2;
use rayon::prelude::*;

use crate::linalg::{axpy_g, simd_dispatch, ROW_BLOCK};

/// Denominators are floored here so a zero row/column cannot produce 0/0 (sklearn's EPSILON).
const EPS: f64 = f64::EPSILON;

#[inline(always)]
fn mu_block_g<const FMA: bool>(fb: &mut [f64], xb: &[f64], g: &[f64], k: usize, l1: f64) -> f64 {
    let mut denom = vec![0.0; k];
    let mut v = 0.0;
    for (w, xrow) in fb.chunks_mut(k).zip(xb.chunks(k)) {
        // denom = G·w + l1, by columns of the symmetric G, skipping zero coordinates.
        denom.fill(l1);
        for r in 0..k {
            if w[r] != 0.0 {
                axpy_g::<FMA>(w[r], &g[r * k..(r + 1) * k], &mut denom);
            }
        }
        for t in 0..k {
            let grad = denom[t] - xrow[t];
            let pg = if w[t] == 0.0 { grad.min(0.0) } else { grad };
            v += pg.abs();
            w[t] *= xrow[t].max(0.0) / denom[t].max(EPS);
        }
    }
    v
}

simd_dispatch!(fn mu_block => mu_block_g(fb: &mut [f64], xb: &[f64], g: &[f64], k: usize, l1: f64) -> f64);

/// Updates every row of `factor` once; returns the projected-gradient violation at the
/// pre-update point (same measure as the CD solver, so `tol` means the same for both).
pub(crate) fn update(factor: &mut Array2<f64>, xf: &Array2<f64>, gram: &Array2<f64>, l1: f64, l2: f64) -> f64 {
    let k = factor.ncols();
    let mut g = gram.clone();
    g.diag_mut().mapv_inplace(|d| d + l2);
    let g = g.as_slice().expect("standard layout");
    let f = factor.as_slice_mut().expect("standard layout");
    let x = xf.as_slice().expect("standard layout");
    let partials: Vec<f64> = f
        .par_chunks_mut(ROW_BLOCK * k)
        .zip(x.par_chunks(ROW_BLOCK * k))
        .map(|(fb, xb)| mu_block(fb, xb, g, k, l1))
        .collect();
    partials.iter().sum()
}
