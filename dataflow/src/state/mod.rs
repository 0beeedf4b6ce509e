//! The per-partition state machine in front of the dataflow. Every entity lives in exactly one
//! partition (its key's), so applying that partition's records in offset order is a
//! deterministic fold: it turns "product updated" into "retract old row, insert new row",
//! refuses stock adjustments that would go negative, and drops events already applied (the
//! same event id seen again: a producer retry, or a repeat under an idempotency key).
//!
//! The state is made of parts, one per domain of events (`catalog`, `inventory`,
//! `interactions`, `accounts`), each a module implementing [`StatePart`]: its maps, its fold, its rows as
//! insertions on restore, and its snapshot section. The core here owns what every partition
//! has: its offsets, the duplicate filter and the idempotency index. A new part is its module
//! plus one line in `state_parts!` below.

mod accounts;
mod carts;
mod catalog;
mod fold;
mod interactions;
mod inventory;
mod orders;
mod search;
mod wallet;

use std::collections::{HashMap, HashSet, VecDeque};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shopflow_events::Envelope;

pub use crate::base::Changes;
pub use fold::Decision;
use crate::jobs::weights::InteractionWeights;
use crate::views::RequestRow;
pub use accounts::AccountsState;
pub use catalog::{CatalogState, ProductBase};
pub use interactions::{InteractionState, TRENDING_WINDOW_MS};
pub use carts::CartsState;
pub use inventory::InventoryState;
pub use orders::{OrdersState, DAY_MS, DEFAULT_HOLD_TIMEOUT_MS, HOUR_MS, LATEST_KEPT};
pub use wallet::WalletState;
pub use search::SearchState;

/// How many recent event ids each partition remembers for de-duplication. Duplicates come
/// from producer retries, which land close to the original.
pub const DEDUP_WINDOW: usize = 10_000;

/// How long, in event time, a partition remembers the writes made under an idempotency key:
/// a repeat within this time is dropped wherever it lands (clients are promised 24 h).
pub const IDEMPOTENCY_RETENTION_MS: i64 = 24 * 60 * 60 * 1_000;

/// What a fold may consult besides the event.
pub struct Fold<'a> {
    pub weights: &'a InteractionWeights,
    /// How long (log time) an unpaid order keeps its holds.
    pub hold_timeout_ms: i64,
}

impl<'a> Fold<'a> {
    pub fn new(weights: &'a InteractionWeights) -> Self {
        Self { weights, hold_timeout_ms: DEFAULT_HOLD_TIMEOUT_MS }
    }
}

/// One part of a partition's state.
pub trait StatePart: Default + Clone + std::fmt::Debug + PartialEq + Serialize + DeserializeOwned {
    /// Its section in snapshots: stable, unique.
    const SECTION: &'static str;
    /// Raised whenever the part's serialised shape changes. A snapshot whose section has
    /// another version (or lacks the section: it predates the part) is not loaded; the
    /// partition is rebuilt from the log instead.
    const VERSION: u32;
    /// Folds one event (already known not to be a duplicate) into the part.
    fn apply(&mut self, fold: &Fold, envelope: &Envelope, out: &mut Changes);
    /// Every current row as insertions: how a restored partition re-enters the dataflow.
    fn insertions(&self, out: &mut Changes);
}

/// One serialised part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    pub name: String,
    pub version: u32,
    pub bytes: Vec<u8>,
}

macro_rules! state_parts {
    ($( $field:ident : $part:ty, )*) => {
        /// Every part of a partition's state.
        #[derive(Default, Debug, Clone, PartialEq)]
        pub struct Parts {
            $( pub $field: $part, )*
        }

        impl Parts {
            fn apply(&mut self, fold: &Fold, envelope: &Envelope, out: &mut Changes) {
                $( self.$field.apply(fold, envelope, out); )*
            }

            fn insertions(&self, out: &mut Changes) {
                $( self.$field.insertions(out); )*
            }

            fn to_sections(&self) -> Vec<Section> {
                vec![$( Section {
                    name: <$part as StatePart>::SECTION.to_owned(),
                    version: <$part as StatePart>::VERSION,
                    bytes: postcard::to_allocvec(&self.$field).expect("state parts serialise"),
                }, )*]
            }

            /// The parts from their sections; the error names the first section missing, of
            /// another version, or unreadable.
            pub(crate) fn from_sections(sections: &[Section]) -> Result<Self, String> {
                Ok(Self { $( $field: from_section::<$part>(sections)?, )* })
            }
        }
    };
}

fn from_section<P: StatePart>(sections: &[Section]) -> Result<P, String> {
    let section = sections
        .iter()
        .find(|s| s.name == P::SECTION)
        .ok_or_else(|| format!("no section {:?} (the snapshot predates it)", P::SECTION))?;
    if section.version != P::VERSION {
        return Err(format!("section {:?} is version {}, this build reads {}", P::SECTION, section.version, P::VERSION));
    }
    postcard::from_bytes(&section.bytes).map_err(|e| format!("section {:?}: {e}", P::SECTION))
}

// The registry of state parts: one line each.
state_parts! {
    catalog: CatalogState,
    inventory: InventoryState,
    interactions: InteractionState,
    accounts: AccountsState,
    search: SearchState,
    carts: CartsState,
    orders: OrdersState,
    wallet: WalletState,
}

#[derive(Default, Debug, Clone, PartialEq)]
pub struct PartitionState {
    /// The source partition this state belongs to (where requests' first records landed).
    origin: (String, u32),
    pub next_offset: u64,
    /// The `_remap` offset from which entries may describe records beyond this state.
    pub remap_next: u64,
    /// Latest event time applied: the clock of event-time expiry, a function of the log.
    latest_ts: i64,
    /// Writes under an idempotency key, by event id, for `IDEMPOTENCY_RETENTION_MS`.
    requests: HashMap<uuid::Uuid, RequestRow>,
    /// The same, in arrival order, for expiry.
    request_order: VecDeque<(i64, uuid::Uuid)>,
    recent: VecDeque<uuid::Uuid>,
    recent_set: HashSet<uuid::Uuid>,
    pub parts: Parts,
}

impl PartitionState {
    /// An empty state for one source partition.
    pub fn new(topic: &str, partition: u32) -> Self {
        Self { origin: (topic.to_owned(), partition), ..Self::default() }
    }

    /// Applies one decoded record at `offset`. Returns false if it was a duplicate.
    pub fn apply(&mut self, offset: u64, envelope: &Envelope, weights: &InteractionWeights, out: &mut Changes) -> bool {
        self.apply_with(offset, envelope, &Fold::new(weights), out)
    }

    /// [`apply`](Self::apply) with every setting of the fold given.
    pub fn apply_with(&mut self, offset: u64, envelope: &Envelope, fold: &Fold, out: &mut Changes) -> bool {
        self.next_offset = offset + 1;
        self.latest_ts = self.latest_ts.max(envelope.ts);
        self.forget_requests(out);
        let fresh = match &envelope.request {
            Some(fingerprint) => self.remember_request(offset, envelope, fingerprint, out),
            None => self.remember(envelope.id),
        };
        if fresh {
            self.parts.apply(fold, envelope, out);
        }
        fresh
    }

    /// Records the first write under an idempotency key; false for a repeat, whatever its body
    /// (the first one wins; the serving layer refuses a different body with the first's row).
    fn remember_request(&mut self, offset: u64, envelope: &Envelope, fingerprint: &str, out: &mut Changes) -> bool {
        if self.requests.contains_key(&envelope.id) {
            return false;
        }
        let row = RequestRow {
            event_id: envelope.id,
            fingerprint: fingerprint.to_owned(),
            topic: self.origin.0.clone(),
            partition: self.origin.1,
            offset,
            ts: envelope.ts,
        };
        self.requests.insert(envelope.id, row.clone());
        self.request_order.push_back((envelope.ts, envelope.id));
        out.requests.push(((envelope.id, row), 1));
        true
    }

    /// Forgets the requests older than the retention, measured on the log's own clock.
    fn forget_requests(&mut self, out: &mut Changes) {
        let horizon = self.latest_ts.saturating_sub(IDEMPOTENCY_RETENTION_MS);
        while self.request_order.front().is_some_and(|(ts, _)| *ts < horizon) {
            let Some((_, id)) = self.request_order.pop_front() else { break };
            if let Some(row) = self.requests.remove(&id) {
                out.requests.push(((id, row), -1));
            }
        }
    }

    /// The unpaid orders of this partition whose deadline the wall clock `now` has passed.
    pub fn due_deadlines(&self, now: i64) -> Vec<shopflow_events::types::PaymentDeadline> {
        self.parts
            .orders
            .due(now)
            .map(|(deadline, row)| shopflow_events::types::PaymentDeadline {
                order_id: row.order_id.clone(),
                user_id: row.user_id.clone(),
                deadline,
            })
            .collect()
    }

    /// Forgets interactions that left the trending window before `now` (event time).
    pub fn prune_window(&mut self, now: i64) {
        self.parts.interactions.prune_window(now);
    }

    fn remember(&mut self, id: uuid::Uuid) -> bool {
        if !self.recent_set.insert(id) {
            return false;
        }
        self.recent.push_back(id);
        if self.recent.len() > DEDUP_WINDOW {
            if let Some(old) = self.recent.pop_front() {
                self.recent_set.remove(&old);
            }
        }
        true
    }

    /// Every current row as insertions: how a restored partition re-enters the dataflow.
    pub fn as_insertions(&self) -> Changes {
        let mut out = Changes::default();
        self.parts.insertions(&mut out);
        out.requests.extend(self.requests.iter().map(|(id, row)| ((*id, row.clone()), 1)));
        out
    }

    pub fn to_snapshot(&self) -> PartitionSnapshot {
        PartitionSnapshot {
            next_offset: self.next_offset,
            remap_next: self.remap_next,
            latest_ts: self.latest_ts,
            recent: self.recent.iter().copied().collect(),
            // In arrival order, so expiry continues where it stopped.
            requests: self.request_order.iter().filter_map(|(_, id)| self.requests.get(id).cloned()).collect(),
            sections: self.parts.to_sections(),
        }
    }

    /// The state of a snapshot; the error says which part could not be restored.
    pub fn from_snapshot(topic: &str, partition: u32, s: PartitionSnapshot) -> Result<Self, String> {
        let parts = Parts::from_sections(&s.sections)?;
        Ok(Self::from_core(topic, partition, s, parts))
    }

    pub(crate) fn from_core(topic: &str, partition: u32, s: PartitionSnapshot, parts: Parts) -> Self {
        Self {
            origin: (topic.to_owned(), partition),
            next_offset: s.next_offset,
            remap_next: s.remap_next,
            latest_ts: s.latest_ts,
            request_order: s.requests.iter().map(|r| (r.ts, r.event_id)).collect(),
            requests: s.requests.into_iter().map(|r| (r.event_id, r)).collect(),
            recent_set: s.recent.iter().copied().collect(),
            recent: s.recent.into_iter().collect(),
            parts,
        }
    }
}

/// The serialised state of one partition (snapshot format 3): the core, and one section per
/// part. `crate::snapshot` reads older formats and migrates them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSnapshot {
    pub next_offset: u64,
    pub remap_next: u64,
    pub latest_ts: i64,
    pub recent: Vec<uuid::Uuid>,
    pub requests: Vec<RequestRow>,
    pub sections: Vec<Section>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopflow_events::types::*;
    use shopflow_events::{Event, Id, Money};

    const W: InteractionWeights = InteractionWeights { view: 1, recommendation_click: 2, cart_add: 3, purchase: 5 };

    fn env(event: Event) -> Envelope {
        Envelope::new(event)
    }

    fn created(id: &str, name: &str) -> Event {
        Event::ProductCreated(ProductCreated {
            product_id: id.into(),
            name: name.into(),
            description: String::new(),
            price: Money::new(100, "EUR"),
            sku: String::new(),
            category_id: "c".into(),
            brand_id: "b".into(),
            supplier_id: "s".into(),
        })
    }

    #[test]
    fn update_retracts_the_old_row_and_inserts_the_new() {
        let mut state = PartitionState::default();
        let mut out = Changes::default();
        state.apply(0, &env(created("p", "old")), &W, &mut out);
        let update = Event::ProductUpdated(ProductUpdated { product_id: "p".into(), name: Some("new".into()), ..Default::default() });
        state.apply(1, &env(update), &W, &mut out);
        let names: Vec<(String, isize)> = out.products.iter().map(|((_, p), d)| (p.name.clone(), *d)).collect();
        assert_eq!(names, vec![("old".into(), 1), ("old".into(), -1), ("new".into(), 1)]);
        assert_eq!(state.next_offset, 2);
    }

    #[test]
    fn a_duplicate_event_id_is_applied_once() {
        let mut state = PartitionState::default();
        let mut out = Changes::default();
        let receipt = env(Event::StockReceived(StockReceived { product_id: "p".into(), warehouse_id: "w".into(), quantity: 5 }));
        assert!(state.apply(0, &receipt, &W, &mut out));
        assert!(!state.apply(1, &receipt, &W, &mut out));
        assert_eq!(out.stock, vec![((("p".into(), "w".into()), 5), 1)]);
    }

    #[test]
    fn an_adjustment_below_zero_is_rejected_as_a_decision_replayed_under_the_same_id() {
        let receipt = env(Event::StockReceived(StockReceived { product_id: "p".into(), warehouse_id: "w".into(), quantity: 2 }));
        let adjustment = env(Event::StockAdjusted(StockAdjusted { product_id: "p".into(), warehouse_id: "w".into(), delta: -3, reason: "count".into() }));
        let run = || {
            let mut state = PartitionState::default();
            let mut out = Changes::default();
            state.apply(0, &receipt, &W, &mut out);
            state.apply(1, &adjustment, &W, &mut out);
            out
        };
        let (first, replay) = (run(), run());
        assert_eq!(first.stock.len(), 1, "the level stays at 2");
        assert!(matches!(&first.decisions[0].event, Event::StockAdjustmentRejected(r) if r.available == 2 && r.delta == -3));
        assert_eq!(first.decisions, replay.decisions);
    }

    #[test]
    fn interactions_weigh_by_kind_and_a_cancelled_order_takes_its_purchases_back() {
        let mut state = PartitionState::default();
        let mut out = Changes::default();
        let user = Id::from("u");
        let viewed = env(Event::ProductViewed(ProductViewed { user_id: user.clone(), product_id: "p".into() }));
        let placed = env(Event::OrderPlaced(OrderPlaced {
            order_id: "o".into(),
            user_id: user.clone(),
            lines: vec![OrderLine { product_id: "p".into(), quantity: 2, unit_price: Money::new(100, "EUR") }],
            address_id: "a".into(),
            idempotency_key: "k".into(),
            payment_token: "tok_visa".into(),
            from_cart: false,
        }));
        let cancelled = env(Event::OrderCancelled(OrderCancelled { order_id: "o".into(), user_id: user.clone(), reason: String::new() }));
        state.apply(0, &viewed, &W, &mut out);
        state.apply(1, &placed, &W, &mut out);
        state.apply(2, &cancelled, &W, &mut out);
        let key = (user.clone(), Id::from("p"));
        assert_eq!(out.interactions, vec![(key.clone(), 1), (key.clone(), 10)], "a view, then 2 units at weight 5");
        assert_eq!(out.purchases, vec![(key.clone(), 2), (key.clone(), -2)]);
        assert_eq!(out.trending[1], (Id::from("p"), placed.ts + TRENDING_WINDOW_MS, 10));
        let restored = state.as_insertions();
        assert_eq!(restored.interactions, vec![(key, 11)]);
        assert!(restored.purchases.is_empty());
    }

    #[test]
    fn a_keyed_write_is_applied_once_for_a_day_of_event_time_then_forgotten() {
        let mut state = PartitionState::new("inventory", 2);
        let mut out = Changes::default();
        let id = shopflow_events::idempotent_event_id("admin", "receipt-1");
        let receipt = |quantity| Event::StockReceived(StockReceived { product_id: "p".into(), warehouse_id: "w".into(), quantity });
        let first = Envelope::idempotent(receipt(5), id, "fp-5".into());
        assert!(state.apply(0, &first, &W, &mut out));
        // A repeat, and a different body under the same key: both dropped, the first wins.
        assert!(!state.apply(1, &Envelope { ts: first.ts + 1_000, ..first.clone() }, &W, &mut out));
        assert!(!state.apply(2, &Envelope::idempotent(receipt(9), id, "fp-9".into()), &W, &mut out));
        assert_eq!(out.stock, vec![((("p".into(), "w".into()), 5), 1)]);
        assert_eq!(out.requests.len(), 1);
        let ((_, row), _) = &out.requests[0];
        assert_eq!((row.topic.as_str(), row.partition, row.offset, row.fingerprint.as_str()), ("inventory", 2, 0, "fp-5"));

        // Event time, not wall-clock time, expires it: a later unrelated event moves the clock.
        let later = Envelope { ts: first.ts + IDEMPOTENCY_RETENTION_MS + 1, ..env(receipt(1)) };
        let mut out = Changes::default();
        state.apply(3, &later, &W, &mut out);
        assert_eq!(out.requests.len(), 1);
        assert_eq!(out.requests[0].1, -1, "the key's row is retracted");
    }

    #[test]
    fn snapshot_round_trips_and_reinserts_every_row() {
        let mut state = PartitionState::default();
        let mut out = Changes::default();
        state.apply(0, &env(created("p1", "a")), &W, &mut out);
        state.apply(1, &env(created("p2", "b")), &W, &mut out);
        state.apply(2, &env(Event::ProductDeleted(ProductDeleted { product_id: "p1".into() })), &W, &mut out);
        let snapshot = state.to_snapshot();
        let bytes = postcard::to_allocvec(&snapshot).unwrap();
        let restored = PartitionState::from_snapshot("", 0, postcard::from_bytes(&bytes).unwrap()).unwrap();
        assert_eq!(restored, state);
        let rows = restored.as_insertions().products;
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].0).0.as_str(), "p2");
    }
}
