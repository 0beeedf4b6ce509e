//! Small dense/sparse kernels shared by the solvers, plus the randomized truncated SVD that
//! NNDSVD needs (no LAPACK in this workspace, and the sizes involved — rank + oversampling
//! ≲ 100 — make a hand-written QR + Jacobi eigensolver both fast enough and dependency-free).
//!
//! Determinism: every parallel kernel splits its *output* rows into fixed-size blocks, and
//! any reduction is done per block and then summed sequentially in block order, so results
//! are bit-identical whatever the thread count or scheduling.

use ndarray::{Array1, Array2, Axis};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use sprs::CsMat;

/// Rows per parallel task. Large enough that rayon's per-task overhead is negligible for
/// rank ≥ 8, small enough that ~1-2k rows still give both cores several tasks.
pub(crate) const ROW_BLOCK: usize = 64;

/// Generates a dispatcher `$name` for the kernel `$generic::<FMA>`: on x86-64 CPUs with
/// AVX2 + FMA (checked at run time, the result is cached by std) the kernel is compiled with
/// those features and fused multiply-adds; elsewhere the portable instantiation runs. The
/// inner loops are tiny (rank-length vectors), so 4-wide FMA is worth ~2-3x, and without a
/// workspace-wide `target-cpu` this is the only way to get it. Both paths are
/// deterministic; they can differ from each other in the last bits (fused rounding).
macro_rules! simd_dispatch {
    ($vis:vis fn $name:ident => $generic:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty) => {
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($arg: $ty),*) -> $ret {
                    $generic::<true>($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: `fast` only requires AVX2 and FMA, both detected just above.
                    return unsafe { fast($($arg),*) };
                }
            }
            $generic::<false>($($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

/// `a*b + c`, fused when compiled for FMA. (`mul_add` without hardware FMA is a slow libm
/// call, hence the const switch rather than always calling it.)
#[inline(always)]
pub(crate) fn fmadd<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Dot product with four independent accumulators so the compiler can vectorise it and the
/// adds are not one long dependency chain.
#[inline(always)]
pub(crate) fn dot_g<const FMA: bool>(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 4];
    let chunks = n / 4;
    for c in 0..chunks {
        let i = 4 * c;
        acc[0] = fmadd::<FMA>(a[i], b[i], acc[0]);
        acc[1] = fmadd::<FMA>(a[i + 1], b[i + 1], acc[1]);
        acc[2] = fmadd::<FMA>(a[i + 2], b[i + 2], acc[2]);
        acc[3] = fmadd::<FMA>(a[i + 3], b[i + 3], acc[3]);
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for i in 4 * chunks..n {
        s = fmadd::<FMA>(a[i], b[i], s);
    }
    s
}

/// `y += alpha * x`.
#[inline(always)]
pub(crate) fn axpy_g<const FMA: bool>(alpha: f64, x: &[f64], y: &mut [f64]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    for i in 0..n {
        y[i] = fmadd::<FMA>(alpha, x[i], y[i]);
    }
}

#[inline]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    dot_g::<false>(a, b)
}

#[inline]
pub(crate) fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    axpy_g::<false>(alpha, x, y)
}

/// Rows `first..first + out.len()/k` of `x · dense` into `out`.
#[inline(always)]
fn spmm_block_g<const FMA: bool>(
    indptr: &[usize],
    indices: &[usize],
    data: &[f64],
    dense: &[f64],
    k: usize,
    first: usize,
    out: &mut [f64],
) {
    // Register tiling: accumulate 16 output columns in locals across all of the row's
    // non-zeros, so each non-zero costs loads + FMAs but no read-modify-write of `out`
    // (which would chain every non-zero through store-to-load forwarding).
    const TILE: usize = 16;
    for (r, orow) in out.chunks_mut(k).enumerate() {
        let i = first + r;
        let (lo, hi) = (indptr[i], indptr[i + 1]);
        let mut c0 = 0;
        while c0 + TILE <= k {
            let mut acc = [0.0f64; TILE];
            for p in lo..hi {
                let v = data[p];
                let src = &dense[indices[p] * k + c0..indices[p] * k + c0 + TILE];
                for (a, s) in acc.iter_mut().zip(src) {
                    *a = fmadd::<FMA>(v, *s, *a);
                }
            }
            orow[c0..c0 + TILE].copy_from_slice(&acc);
            c0 += TILE;
        }
        if c0 < k {
            let tail = &mut orow[c0..];
            tail.fill(0.0);
            for p in lo..hi {
                let j = indices[p];
                axpy_g::<FMA>(data[p], &dense[j * k + c0..(j + 1) * k], tail);
            }
        }
    }
}

simd_dispatch!(pub(crate) fn spmm_block => spmm_block_g(
    indptr: &[usize], indices: &[usize], data: &[f64], dense: &[f64], k: usize, first: usize, out: &mut [f64]
) -> ());

/// `out = x · dense` for CSR `x` (r × c) and row-major `dense` (c × k); `out` is r × k.
/// This is how X·Hᵀ and Xᵀ·W are formed without densifying X.
pub(crate) fn spmm_into(x: &CsMat<f64>, dense: &Array2<f64>, out: &mut Array2<f64>) {
    debug_assert!(x.is_csr());
    debug_assert_eq!(x.cols(), dense.nrows());
    debug_assert_eq!(out.dim(), (x.rows(), dense.ncols()));
    let k = dense.ncols();
    if k == 0 || x.rows() == 0 {
        return;
    }
    let d = dense.as_slice().expect("factor matrices are standard-layout");
    let o = out.as_slice_mut().expect("factor matrices are standard-layout");
    let indptr = x.indptr();
    let indptr = indptr.to_proper();
    let (indices, data) = (x.indices(), x.data());
    o.par_chunks_mut(ROW_BLOCK * k)
        .enumerate()
        .for_each(|(block, chunk)| spmm_block(&indptr, indices, data, d, k, block * ROW_BLOCK, chunk));
}

pub(crate) fn spmm(x: &CsMat<f64>, dense: &Array2<f64>) -> Array2<f64> {
    let mut out = Array2::zeros((x.rows(), dense.ncols()));
    spmm_into(x, dense, &mut out);
    out
}

/// Upper triangle of `chunkᵀ·chunk` accumulated into `g`; zero entries are skipped, which
/// matters because NMF factors are sparse.
#[inline(always)]
fn gram_block_g<const FMA: bool>(chunk: &[f64], k: usize, g: &mut [f64]) {
    for row in chunk.chunks(k) {
        for t in 0..k {
            let v = row[t];
            if v != 0.0 {
                axpy_g::<FMA>(v, &row[t..], &mut g[t * k + t..(t + 1) * k]);
            }
        }
    }
}

simd_dispatch!(pub(crate) fn gram_block => gram_block_g(chunk: &[f64], k: usize, g: &mut [f64]) -> ());

/// `aᵀa` (k × k) for a tall row-major `a` (r × k): the Gram matrices HHᵀ and WᵀW.
/// Partial Grams per row block are summed in block order (deterministic).
pub(crate) fn gram(a: &Array2<f64>) -> Array2<f64> {
    let k = a.ncols();
    let s = a.as_slice().expect("factor matrices are standard-layout");
    if k == 0 || a.nrows() == 0 {
        return Array2::zeros((k, k));
    }
    // Bigger blocks than the solvers use: each block carries a k×k accumulator.
    let block_rows = 256;
    let partials: Vec<Vec<f64>> = s
        .par_chunks(block_rows * k)
        .map(|chunk| {
            let mut g = vec![0.0; k * k];
            gram_block(chunk, k, &mut g);
            g
        })
        .collect();
    let mut g = vec![0.0; k * k];
    for p in &partials {
        for (gi, pi) in g.iter_mut().zip(p) {
            *gi += pi;
        }
    }
    for t in 0..k {
        for r in 0..t {
            g[t * k + r] = g[r * k + t];
        }
    }
    Array2::from_shape_vec((k, k), g).expect("k*k elements")
}

/// Σ a∘b over all entries (a Frobenius inner product), summed per fixed block for determinism.
pub(crate) fn frob_inner(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    let (sa, sb) = (
        a.as_slice().expect("standard layout"),
        b.as_slice().expect("standard layout"),
    );
    let partials: Vec<f64> = sa
        .par_chunks(16 * 1024)
        .zip(sb.par_chunks(16 * 1024))
        .map(|(x, y)| dot(x, y))
        .collect();
    partials.iter().sum()
}

/// Orthonormalises the columns of `a` in place (modified Gram–Schmidt, applied twice —
/// "twice is enough" — so the result is orthonormal to working precision). Columns that are
/// numerically dependent on earlier ones are set to zero.
fn orthonormalize_columns(a: &mut Array2<f64>) {
    let l = a.ncols();
    // Work on the transpose so each column is a contiguous row.
    let mut t = a.t().as_standard_layout().into_owned();
    let m = t.ncols();
    let ts = t.as_slice_mut().expect("standard layout");
    for j in 0..l {
        let (done, rest) = ts.split_at_mut(j * m);
        let qj = &mut rest[..m];
        let original = dot(qj, qj).sqrt();
        for _pass in 0..2 {
            for qi in done.chunks(m) {
                let proj = dot(qi, qj);
                axpy(-proj, qi, qj);
            }
        }
        let norm = dot(qj, qj).sqrt();
        if norm > 1e-10 * original && norm > 0.0 {
            qj.iter_mut().for_each(|v| *v /= norm);
        } else {
            qj.fill(0.0);
        }
    }
    a.assign(&t.t());
}

/// Eigen-decomposition of a small symmetric matrix by the cyclic Jacobi method.
/// Returns eigenvalues in descending order and the matching eigenvectors as columns.
pub(crate) fn sym_eig(mut a: Array2<f64>) -> (Array1<f64>, Array2<f64>) {
    let n = a.nrows();
    let mut v = Array2::<f64>::eye(n);
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let mut off = 0.0;
        for p in 0..n {
            for q in p + 1..n {
                off += a[[p, q]] * a[[p, q]];
            }
        }
        if off <= 1e-30 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[[p, q]];
                if apq.abs() <= f64::MIN_POSITIVE {
                    continue;
                }
                let theta = (a[[q, q]] - a[[p, p]]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // A ← JᵀAJ: rotate columns p, q then rows p, q.
                for r in 0..n {
                    let (arp, arq) = (a[[r, p]], a[[r, q]]);
                    a[[r, p]] = c * arp - s * arq;
                    a[[r, q]] = s * arp + c * arq;
                }
                for r in 0..n {
                    let (apr, aqr) = (a[[p, r]], a[[q, r]]);
                    a[[p, r]] = c * apr - s * aqr;
                    a[[q, r]] = s * apr + c * aqr;
                }
                for r in 0..n {
                    let (vrp, vrq) = (v[[r, p]], v[[r, q]]);
                    v[[r, p]] = c * vrp - s * vrq;
                    v[[r, q]] = s * vrp + c * vrq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    // total_cmp: a NaN can't make the sort panic; ties keep index order (stable sort).
    order.sort_by(|&i, &j| a[[j, j]].total_cmp(&a[[i, i]]));
    let values = Array1::from_iter(order.iter().map(|&i| a[[i, i]]));
    let vectors = v.select(Axis(1), &order);
    (values, vectors)
}

/// Truncated SVD `X ≈ U diag(s) Vᵀ` of rank `k` by the randomized range finder (Halko,
/// Martinsson & Tropp 2011), with sklearn's defaults: 10 oversamples and 7 power iterations
/// when k is small relative to the matrix, else 4. Returns (U m×k, s, Vᵀ k×n).
pub(crate) fn randomized_svd(
    x: &CsMat<f64>,
    xt: &CsMat<f64>,
    k: usize,
    seed: u64,
) -> (Array2<f64>, Array1<f64>, Array2<f64>) {
    let (m, n) = (x.rows(), x.cols());
    let l = (k + 10).min(m.min(n)).max(k);
    let n_iter = if (k as f64) < 0.1 * (m.min(n) as f64) { 7 } else { 4 };
    let mut rng = StdRng::seed_from_u64(seed);
    let omega = Array2::from_shape_simple_fn((n, l), || StandardNormal.sample(&mut rng));
    let mut q = spmm(x, &omega); // m × l
    orthonormalize_columns(&mut q);
    for _ in 0..n_iter {
        let mut z = spmm(xt, &q); // n × l
        orthonormalize_columns(&mut z);
        q = spmm(x, &z);
        orthonormalize_columns(&mut q);
    }
    // B = QᵀX is l × n; we hold Bᵀ = XᵀQ (n × l). Eigen-decompose BBᵀ = (Bᵀ)ᵀBᵀ (l × l).
    let bt = spmm(xt, &q);
    let (evals, evecs) = sym_eig(gram(&bt));
    let s = evals.mapv(|e| e.max(0.0).sqrt());
    let u = q.dot(&evecs); // m × l
    let v = bt.dot(&evecs); // n × l, column i = Bᵀ u_i = s_i v_i
    let mut vt = Array2::zeros((k, n));
    for i in 0..k {
        if s[i] > 0.0 {
            let col = v.column(i).mapv(|z| z / s[i]);
            vt.row_mut(i).assign(&col);
        }
    }
    (
        u.slice(ndarray::s![.., ..k]).to_owned(),
        s.slice(ndarray::s![..k]).to_owned(),
        vt,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn jacobi_eigen_decomposes_a_symmetric_matrix() {
        let a = array![[4.0, 1.0, 2.0], [1.0, 3.0, 0.5], [2.0, 0.5, 5.0]];
        let (vals, vecs) = sym_eig(a.clone());
        for i in 0..3 {
            let v = vecs.column(i);
            let av = a.dot(&v);
            for r in 0..3 {
                assert!((av[r] - vals[i] * v[r]).abs() < 1e-10);
            }
        }
        assert!(vals[0] >= vals[1] && vals[1] >= vals[2]);
        // Trace is preserved.
        assert!((vals.sum() - 12.0).abs() < 1e-10);
    }

    #[test]
    fn gram_and_spmm_match_dense_products() {
        let a = Array2::from_shape_fn((300, 5), |(i, j)| ((i * 7 + j * 3) % 11) as f64 - 3.0);
        let g = gram(&a);
        let expected = a.t().dot(&a);
        assert!((&g - &expected).iter().all(|d| d.abs() < 1e-9));

        let dense_x = Array2::from_shape_fn((130, 40), |(i, j)| {
            if (i + 2 * j) % 5 == 0 {
                (i + j) as f64
            } else {
                0.0
            }
        });
        let x = sprs::CsMat::csr_from_dense(dense_x.view(), 0.0);
        let f = Array2::from_shape_fn((40, 6), |(i, j)| (i as f64 - j as f64) * 0.1);
        let got = spmm(&x, &f);
        let expected = dense_x.dot(&f);
        assert!((&got - &expected).iter().all(|d| d.abs() < 1e-9));
    }

    #[test]
    fn randomized_svd_recovers_singular_values_of_a_low_rank_matrix() {
        // Rank-3 matrix: its top-3 singular values must be recovered essentially exactly.
        let u = Array2::from_shape_fn((60, 3), |(i, j)| ((i * (j + 2)) % 7) as f64 + 1.0);
        let v = Array2::from_shape_fn((3, 45), |(i, j)| ((j * (i + 3)) % 5) as f64 + 0.5);
        let dense = u.dot(&v);
        let x = sprs::CsMat::csr_from_dense(dense.view(), 0.0);
        let xt = x.transpose_view().to_csr();
        let (uu, s, vt) = randomized_svd(&x, &xt, 3, 7);
        let recon = uu.dot(&Array2::from_diag(&s)).dot(&vt);
        let err: f64 = (&recon - &dense).iter().map(|d| d * d).sum::<f64>().sqrt();
        let norm: f64 = dense.iter().map(|d| d * d).sum::<f64>().sqrt();
        assert!(err / norm < 1e-8, "relative error {}", err / norm);
    }
}
