//! Initial factors. Returned as (W: users × rank, Hᵀ: items × rank): the solvers keep H
//! transposed so that both factor updates are the same row-wise kernel over contiguous rows.

use ndarray::{Array2, Zip};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use sprs::CsMat;

use crate::linalg::randomized_svd;
use crate::{Init, NmfError};

pub(crate) fn initialize(
    init: Init,
    x: &CsMat<f64>,
    xt: &CsMat<f64>,
    k: usize,
    seed: u64,
) -> Result<(Array2<f64>, Array2<f64>), NmfError> {
    let (m, n) = (x.rows(), x.cols());
    let mean = x.data().iter().sum::<f64>() / (m as f64 * n as f64);
    match init {
        Init::Random => {
            // sklearn's scale: makes E[(WH)_ij] match the mean of X.
            let avg = (mean / k as f64).sqrt();
            let mut rng = StdRng::seed_from_u64(seed);
            let mut draw = || {
                let z: f64 = StandardNormal.sample(&mut rng);
                avg * z.abs()
            };
            let w = Array2::from_shape_simple_fn((m, k), &mut draw);
            let ht = Array2::from_shape_simple_fn((n, k), &mut draw);
            Ok((w, ht))
        }
        Init::Nndsvd | Init::NndsvdA => {
            if k > m.min(n) {
                return Err(NmfError::RankTooLarge { rank: k, max: m.min(n) });
            }
            let (mut w, mut ht) = nndsvd(x, xt, k, seed);
            if init == Init::NndsvdA {
                // Multiplicative updates can never leave an exact zero, so fill them.
                for v in w.iter_mut().chain(ht.iter_mut()) {
                    if *v == 0.0 {
                        *v = mean;
                    }
                }
            }
            Ok((w, ht))
        }
    }
}

/// NNDSVD (Boutsidis & Gallopoulos 2008), as sklearn's `_initialize_nmf`: each singular
/// pair (u, v) is split into its positive and negative parts, and the part with the larger
/// product of norms becomes a non-negative rank-1 term.
fn nndsvd(x: &CsMat<f64>, xt: &CsMat<f64>, k: usize, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let (m, n) = (x.rows(), x.cols());
    let (u, s, vt) = randomized_svd(x, xt, k, seed);
    let mut w = Array2::zeros((m, k));
    let mut ht = Array2::zeros((n, k));
    let norm = |it: &mut dyn Iterator<Item = f64>| it.map(|z| z * z).sum::<f64>().sqrt();
    for j in 0..k {
        let (uj, vj) = (u.column(j), vt.row(j));
        if j == 0 {
            // The leading singular vectors of a non-negative matrix are single-signed
            // (Perron–Frobenius), so |·| loses nothing.
            let root = s[0].sqrt();
            Zip::from(w.column_mut(0)).and(uj).for_each(|o, &z| *o = root * z.abs());
            Zip::from(ht.column_mut(0)).and(vj).for_each(|o, &z| *o = root * z.abs());
            continue;
        }
        let (xp, xn) = (norm(&mut uj.iter().map(|z| z.max(0.0))), norm(&mut uj.iter().map(|z| (-z).max(0.0))));
        let (yp, yn) = (norm(&mut vj.iter().map(|z| z.max(0.0))), norm(&mut vj.iter().map(|z| (-z).max(0.0))));
        let (mp, mn) = (xp * yp, xn * yn);
        // Pick the dominant sign; `sign` flips the vectors so the chosen part is positive.
        let (sign, xnorm, ynorm, sigma) = if mp > mn { (1.0, xp, yp, mp) } else { (-1.0, xn, yn, mn) };
        if sigma <= 0.0 || xnorm <= 0.0 || ynorm <= 0.0 {
            continue; // degenerate pair: leave the component at zero
        }
        let lbd = (s[j] * sigma).sqrt();
        Zip::from(w.column_mut(j))
            .and(uj)
            .for_each(|o, &z| *o = lbd * (sign * z).max(0.0) / xnorm);
        Zip::from(ht.column_mut(j))
            .and(vj)
            .for_each(|o, &z| *o = lbd * (sign * z).max(0.0) / ynorm);
    }
    // sklearn zeroes tiny entries so CD starts from a clean sparsity pattern.
    let eps = 1e-6;
    w.mapv_inplace(|v| if v < eps { 0.0 } else { v });
    ht.mapv_inplace(|v| if v < eps { 0.0 } else { v });
    (w, ht)
}
