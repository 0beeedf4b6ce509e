//! The sparse user × item matrix as linfa `Records`.
//!
//! linfa's `Records` is implemented for ndarray arrays only, and the orphan rule forbids
//! implementing it for `sprs::CsMat` here, so the sparse matrix gets a thin newtype. It also
//! is the single place where the matrix is validated (non-negative, finite) and normalised
//! to CSR, so the solvers can assume both.

use linfa::dataset::Records;
use sprs::CsMat;

use crate::NmfError;

/// A validated non-negative sparse user × item matrix in CSR layout (rows = users).
#[derive(Debug, Clone)]
pub struct Interactions {
    x: CsMat<f64>,
}

impl Interactions {
    /// Wraps `x` (CSR or CSC; CSC is converted). Fails on negative or non-finite entries,
    /// which NMF cannot represent.
    pub fn new(x: CsMat<f64>) -> Result<Self, NmfError> {
        let x = if x.is_csr() { x } else { x.to_csr() };
        for (row, vec) in x.outer_iterator().enumerate() {
            for (col, &value) in vec.iter() {
                if !(value.is_finite() && value >= 0.0) {
                    return Err(NmfError::InvalidEntry { row, col, value });
                }
            }
        }
        Ok(Self { x })
    }

    /// Builds the matrix from `(user, item, value)` triplets; duplicates are summed.
    pub fn from_triplets(
        n_users: usize,
        n_items: usize,
        triplets: impl IntoIterator<Item = (usize, usize, f64)>,
    ) -> Result<Self, NmfError> {
        let mut tri = sprs::TriMat::new((n_users, n_items));
        for (u, i, v) in triplets {
            if u >= n_users || i >= n_items {
                return Err(NmfError::InvalidEntry { row: u, col: i, value: v });
            }
            tri.add_triplet(u, i, v);
        }
        // `to_csr` sums duplicate triplets, which is what repeated interactions should do.
        Self::new(tri.to_csr())
    }

    pub fn matrix(&self) -> &CsMat<f64> {
        &self.x
    }

    pub fn into_inner(self) -> CsMat<f64> {
        self.x
    }

    pub fn n_users(&self) -> usize {
        self.x.rows()
    }

    pub fn n_items(&self) -> usize {
        self.x.cols()
    }

    pub fn nnz(&self) -> usize {
        self.x.nnz()
    }

    /// Items and values of one user's row (sorted by item).
    pub fn row(&self, user: usize) -> (&[usize], &[f64]) {
        if user >= self.x.rows() {
            return (&[], &[]);
        }
        // The matrix is owned CSR, so its indptr is "proper" (starts at 0); `outer_inds_sz`
        // still handles offsets should that ever change.
        let range = self.x.indptr().outer_inds_sz(user);
        (&self.x.indices()[range.clone()], &self.x.data()[range])
    }
}

impl Records for Interactions {
    type Elem = f64;

    fn nsamples(&self) -> usize {
        self.x.rows()
    }

    fn nfeatures(&self) -> usize {
        self.x.cols()
    }
}
