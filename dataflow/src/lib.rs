//! The timely/differential jobs that turn the event log into views, the source that feeds
//! them, and the publication of their output.
//!
//! # Adding a view
//!
//! 1. Its row in `shopflow-views` (`views/src/rows.rs`): the type (`Clone + Ord + Hash +
//!    Serialize`) and `impl ViewRowType` naming its key (any [`views::ViewKey`]: an `Id`, an
//!    `(Id, Id)` pair or a `Uuid`). The row lives there, not beside its job, so that serving
//!    reads views without compiling timely and differential.
//! 2. One line in the registry (`views/src/lib.rs`, `registry::views!`): variant, payload,
//!    row, table field, name. That line gives the view its table in `Views` (`views.<field>`),
//!    its share of publication (exchange by key, consolidation into upserts, tombstones), its
//!    changelog topic `changelog.<name>` with key encoding and tombstone decoding, and its
//!    place in `VIEW_NAMES` (topics created, replicas tail it).
//! 3. Its job, `jobs/<view>.rs`: `build(&BaseCollections) -> VecCollection<Row>`, and one
//!    `.concat(...)` in `jobs::views`; its route in `serving/src/routes`.
//!
//! A view over base collections that already exist is those three steps (top sellers: its row,
//! one registry line, `jobs/top_sellers.rs` with one `.concat`, one route). A view
//! that folds a new kind of event also needs:
//!
//! 4. a state part (`state/<domain>.rs`, implementing `state::StatePart`: its maps, its fold,
//!    its rows as insertions on restore; its snapshot section and that section's version come
//!    with it) and one line in `state_parts!` (`state/mod.rs`);
//! 5. the base collection it feeds, one line in `base_collections!` (`base.rs`), which
//!    generates the `Changes` field, the input session and the `BaseCollections` field.
//!
//! A snapshot taken before a part existed (or with another version of its section) is not
//! loaded: that partition is rebuilt from the log, which keeps every event.
pub mod base;
pub mod jobs;
pub mod state;
pub use shopflow_views as views;
pub use shopflow_views::{changelog, replica};
pub mod pipeline;
pub mod publish;
pub mod snapshot;
pub mod reclock;
pub mod remap;
