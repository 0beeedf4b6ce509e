//! Multiplicative updates (Lee & Seung 2001) for the Frobenius loss, with sklearn's
//! regularised form: `W ← W ∘ XHᵀ / (W(HHᵀ + l2·I) + l1)`. Each step is the minimiser of a
//! diagonal majorising quadratic, so the (regularised) loss never increases; the update is
//! simultaneous within a row (unlike CD), hence the scratch buffer.

use crate::linalg::{axpy_g, simd_dispatch};

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

simd_dispatch!(pub(crate) fn mu_block => mu_block_g(fb: &mut [f64], xb: &[f64], g: &[f64], k: usize, l1: f64) -> f64);
