//! Criterion benches: NMF fit (both solvers) and single-user fold-in, on a synthetic
//! MovieLens-sized implicit matrix (943 × 1682, ~6% dense, Zipf-ish item popularity) so the
//! bench runs without the fetched data set. The MovieLens numbers and the comparison with
//! scikit-learn come from `--example movielens -- ... --bench`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use linfa::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shopflow_recommender::{Interactions, Nmf, Solver};
use std::hint::black_box;

fn synthetic(users: usize, items: usize, per_user: usize, seed: u64) -> Interactions {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut triplets = Vec::new();
    for u in 0..users {
        for _ in 0..per_user {
            // Popularity ∝ 1/(rank+1): squaring a uniform skews picks towards low ids.
            let r: f64 = rng.gen();
            let i = ((r * r * r) * items as f64) as usize;
            triplets.push((u, i.min(items - 1), 1.0));
        }
    }
    let mut x = Interactions::from_triplets(users, items, triplets).expect("in range").into_inner();
    // Duplicates were summed; binarise like the implicit MovieLens matrix.
    x.data_mut().iter_mut().for_each(|v| *v = 1.0);
    Interactions::new(x).expect("non-negative")
}

fn fit(c: &mut Criterion) {
    let data = DatasetBase::new(synthetic(943, 1682, 110, 1), ());
    let mut g = c.benchmark_group("nmf_fit_50_iters");
    g.sample_size(10);
    for rank in [32, 64] {
        for (name, solver) in [("cd", Solver::CoordinateDescent), ("mu", Solver::MultiplicativeUpdate)] {
            let params = Nmf::params(rank).max_iter(50).tol(0.0).solver(solver);
            g.bench_with_input(BenchmarkId::new(name, rank), &params, |b, p| {
                b.iter(|| black_box(p.fit(&data).expect("fit")))
            });
        }
    }
    g.finish();
}

fn fold_in(c: &mut Criterion) {
    let x = synthetic(943, 1682, 110, 2);
    let mut g = c.benchmark_group("nmf_fold_in");
    for rank in [32, 64] {
        let model = Nmf::params(rank).max_iter(50).fit(&DatasetBase::new(x.clone(), ())).expect("fit");
        // A heavy user (most interactions) is the slow case for fold-in.
        let heavy = (0..x.n_users()).max_by_key(|&u| x.row(u).0.len()).unwrap_or(0);
        let (items, values) = x.row(heavy);
        g.bench_function(BenchmarkId::new("heavy_user", rank), |b| {
            b.iter(|| black_box(model.fold_in(black_box(items), black_box(values)).expect("fold-in")))
        });
        let few: Vec<usize> = items.iter().copied().take(3).collect();
        g.bench_function(BenchmarkId::new("three_clicks", rank), |b| {
            b.iter(|| black_box(model.fold_in(black_box(&few), &[1.0, 1.0, 1.0]).expect("fold-in")))
        });
    }
    g.finish();
}

criterion_group!(benches, fit, fold_in);
criterion_main!(benches);
