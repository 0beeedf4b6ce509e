//! The timely/differential jobs that turn the event log into views, the source that feeds
//! them, and the publication of their output.
//!
//! # Adding a view
//!
//! 1. In its module (`jobs/<view>.rs`, plus its row type): the row type (`Clone + Ord + Hash +
//!    Serialize`), `impl ViewRowType` naming its key (any [`views::ViewKey`]: an `Id`, an
//!    `(Id, Id)` pair or a `Uuid`), and `build(&BaseCollections) -> VecCollection<Row>`.
//! 2. One line in the registry (`views/mod.rs`, `registry::views!`): variant, payload, row,
//!    table field, name. That line gives the view its table in `Views` (`views.<field>`), its
//!    share of publication (exchange by key, consolidation into upserts, tombstones), its
//!    changelog topic `changelog.<name>` with key encoding and tombstone decoding, and its
//!    place in `VIEW_NAMES` (topics created, replicas tail it).
//! 3. Its output joins the published stream in the pipeline's dataflow (`pipeline.rs`, one
//!    `.concat(...)`), and its route in `serving/src/routes`.
//!
//! A view over base collections that already exist is those three places. A view that needs
//! new per-partition state (a new event kind to fold) also adds its fold to
//! `state::PartitionState::apply`, a field to `state::Changes` and to the snapshot (a new
//! snapshot format with its migration in `snapshot.rs`), and an input session in the
//! pipeline; that part is not yet generated from one declaration.

pub mod base;
pub mod jobs;
pub mod state;
pub mod views;
pub mod pipeline;
pub mod publish;
pub mod changelog;
pub mod snapshot;
pub mod replica;
pub mod reclock;
