//! shopflow recommender: non-negative matrix factorisation (NMF) as a [linfa] algorithm,
//! plus the offline evaluation helpers used to decide whether a model is worth serving.
//!
//! ```no_run
//! use linfa::prelude::*;
//! use shopflow_recommender::{Interactions, Nmf, Solver};
//! # fn demo(x: sprs::CsMat<f64>) -> Result<(), shopflow_recommender::NmfError> {
//! let data = DatasetBase::new(Interactions::new(x)?, ());
//! let model = Nmf::params(32).max_iter(200).solver(Solver::CoordinateDescent).fit(&data)?;
//! let user = model.fold_in(&[3, 17, 42], &[1.0, 1.0, 1.0])?; // a new user's vector
//! let top = model.recommend(user.view(), 10, &[3, 17, 42]);
//! # Ok(()) }
//! ```
//!
//! Layout: `params` (validated hyperparameters), `init` (NNDSVD / random), `solver_cd` and
//! `solver_mu` (the two W/H update rules), `fit` (the outer loop, loss curve, convergence),
//! `model` (the fitted model, fold-in, scoring), `linalg` (small parallel kernels and the
//! randomized SVD NNDSVD needs), `eval` (splits, ranking metrics, popularity baseline),
//! `dataset` (the RecBole `.inter` loader); for serving: `similar` (precomputed cosine
//! neighbours), `serving_model` (fold-in and scoring by product id), `store` (the versioned
//! model directory with an atomically replaced "current" pointer), `plot` (loss-curve SVG).

mod error;
mod fit;
mod init;
mod linalg;
mod model;
mod params;
mod records;
mod solver_cd;
mod solver_mu;

pub mod dataset;
pub mod eval;
pub mod plot;
pub mod serving_model;
pub mod similar;
pub mod store;

pub use error::{NmfError, NmfParamsError};
pub use model::Nmf;
pub use params::{Init, NmfParams, NmfValidParams, Solver};
pub use records::Interactions;
pub use serving_model::ServingModel;
pub use store::{ModelStore, StoreError, TrainedModel};

#[cfg(feature = "serving")]
pub mod adapter;
