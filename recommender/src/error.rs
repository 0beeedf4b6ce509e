//! Error types. Hyperparameter errors are separate from fit/transform errors so that
//! linfa's `ParamGuard` blanket impl can convert one into the other with `From`.

use thiserror::Error;

/// An invalid hyperparameter, reported by [`crate::NmfParams`]'s `check`.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum NmfParamsError {
    #[error("rank must be at least 1")]
    ZeroRank,
    #[error("max_iter must be at least 1")]
    ZeroMaxIter,
    #[error("tol must be finite and >= 0, got {0}")]
    InvalidTol(f64),
    #[error("l1_ratio must be in [0, 1], got {0}")]
    InvalidL1Ratio(f64),
    #[error("alpha_w must be finite and >= 0, got {0}")]
    InvalidAlphaW(f64),
    #[error("alpha_h must be finite and >= 0, got {0}")]
    InvalidAlphaH(f64),
    #[error("fold_in_max_sweeps must be at least 1")]
    ZeroFoldInSweeps,
    #[error("fold_in_tol must be finite and >= 0, got {0}")]
    InvalidFoldInTol(f64),
}

/// Anything that can go wrong while fitting NMF or folding in a user.
#[derive(Debug, Error)]
pub enum NmfError {
    #[error("invalid hyperparameters: {0}")]
    Params(#[from] NmfParamsError),
    #[error("the interaction matrix is empty ({rows} x {cols})")]
    EmptyMatrix { rows: usize, cols: usize },
    #[error("rank {rank} exceeds min(users, items) = {max}, which NNDSVD initialisation cannot provide")]
    RankTooLarge { rank: usize, max: usize },
    #[error("NMF needs non-negative finite entries, found {value} at ({row}, {col})")]
    InvalidEntry { row: usize, col: usize, value: f64 },
    #[error("item index {index} is out of range for a model with {n_items} items")]
    ItemOutOfRange { index: usize, n_items: usize },
    #[error("interaction value {value} for item {index} must be finite and >= 0")]
    InvalidValue { index: usize, value: f64 },
    #[error("{indices} item indices but {values} values")]
    LengthMismatch { indices: usize, values: usize },
    #[error("matrix has {got} columns but the model has {expected} items")]
    ShapeMismatch { expected: usize, got: usize },
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}
