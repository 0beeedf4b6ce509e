//! The timely/differential jobs that turn the event log into views, the source that feeds
//! them, and the publication of their output.

pub mod jobs;
pub mod state;
pub mod views;
pub mod pipeline;
pub mod publish;
pub mod changelog;
pub mod snapshot;
pub mod replica;
pub mod reclock;
