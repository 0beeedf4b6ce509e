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
//! 3. Its output joins the published stream: one `.concat(...)` in `jobs::views`; and its
//!    route in `serving/src/routes`.
//!
//! A view over base collections that already exist is those three places (e.g.
//! `jobs/top_sellers.rs`: its module, one registry line, one `.concat`, one route). A view
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
pub mod views;
pub mod pipeline;
pub mod publish;
pub mod changelog;
pub mod snapshot;
pub mod replica;
pub mod reclock;
pub mod remap;
