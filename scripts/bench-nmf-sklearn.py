#!/usr/bin/env python3
"""Time scikit-learn's NMF on a Matrix Market file and print JSON (time + final loss).

Used by `cargo run --release -p shopflow-recommender --example movielens -- ... --bench`,
which writes the training matrix to target/bench/ml100k-train.mtx and runs this with the
same rank / iterations, so both sides factorise the identical matrix. Needs scikit-learn:
    python3 -m venv target/bench-venv && target/bench-venv/bin/pip install scikit-learn
The loss is 0.5*||X - WH||_F^2 computed exactly over all entries (dense), the same formula
the Rust side uses.
"""
import argparse
import json
import sys
import time
import warnings

import numpy as np
import scipy.io
import scipy.sparse as sp
import sklearn
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--matrix", required=True)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--iters", type=int, default=200)
    # NNDSVD's randomized SVD depends on the seed, and so does the local optimum CD ends
    # in (spread ~0.1% of the loss on MovieLens), so one fit per seed 0..seeds-1 is timed
    # and the loss is reported per seed and averaged.
    ap.add_argument("--seeds", type=int, default=5)
    a = ap.parse_args()

    x = sp.csr_matrix(scipy.io.mmread(a.matrix), dtype=np.float64)
    dense = x.toarray()
    times, losses = [], []
    for seed in range(max(1, a.seeds)):
        model = NMF(n_components=a.rank, solver="cd", init="nndsvd", max_iter=a.iters,
                    tol=0.0, random_state=seed)
        with warnings.catch_warnings():
            # tol=0 means "run every iteration", which sklearn reports as non-convergence.
            warnings.simplefilter("ignore", ConvergenceWarning)
            t = time.perf_counter()
            w = model.fit_transform(x)
            times.append(time.perf_counter() - t)
        losses.append(0.5 * float(np.sum((dense - w @ model.components_) ** 2)))
    try:
        from threadpoolctl import threadpool_info
        pools = [{k: p.get(k) for k in ("internal_api", "num_threads")} for p in threadpool_info()]
    except Exception:  # threadpoolctl ships with sklearn, but don't fail the bench over it
        pools = []
    json.dump({
        "sklearn_version": sklearn.__version__,
        "rank": a.rank, "iters": a.iters, "n_iter_run": int(model.n_iter_),
        "time_s": sorted(times)[len(times) // 2], "times_s": times,
        "loss": sum(losses) / len(losses), "loss_min": min(losses), "losses": losses,
        "threadpools": pools,
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
