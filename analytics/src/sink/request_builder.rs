//! Turns log records into the rows of one batch: the raw `events` row of every event and the
//! typed rows of its kind. A record that does not decode or validate becomes a dead letter
//! instead. Rows a table already holds (after a crash: see [`Present`]) are left out, per
//! table.

use std::collections::{BTreeMap, HashMap, HashSet};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use shopflow_events::{DeadLetter, Envelope, Event, Topic};
use shopflow_ingest::{OutRecord, Record};

use crate::rows::*;
use crate::Secret;

/// The tables the sink writes, each fed from one topic except `events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Events,
    Products,
    StockMoves,
    Users,
    CartEvents,
    Orders,
    OrderLines,
    Payments,
    ProductViews,
    Searches,
    RecommendationClicks,
    Decisions,
}

impl Table {
    pub const ALL: [Table; 12] = [
        Table::Events,
        Table::Products,
        Table::StockMoves,
        Table::Users,
        Table::CartEvents,
        Table::Orders,
        Table::OrderLines,
        Table::Payments,
        Table::ProductViews,
        Table::Searches,
        Table::RecommendationClicks,
        Table::Decisions,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Products => "products",
            Table::StockMoves => "stock_moves",
            Table::Users => "users",
            Table::CartEvents => "cart_events",
            Table::Orders => "orders",
            Table::OrderLines => "order_lines",
            Table::Payments => "payments",
            Table::ProductViews => "product_views",
            Table::Searches => "searches",
            Table::RecommendationClicks => "recommendation_clicks",
            Table::Decisions => "decisions",
        }
    }
}

/// Log positions a table already holds at or beyond the group's committed offsets: what a
/// crashed sink (or an insert whose answer was lost) wrote but did not commit. Usually empty;
/// at most the batches that were in flight.
#[derive(Default, Debug)]
pub struct Present {
    offsets: HashMap<(Table, Topic, u32), HashSet<u64>>,
}

impl Present {
    pub fn insert(&mut self, table: Table, topic: Topic, partition: u32, offset: u64) {
        self.offsets.entry((table, topic, partition)).or_default().insert(offset);
    }

    pub fn contains(&self, table: Table, topic: Topic, partition: u32, offset: u64) -> bool {
        !self.offsets.is_empty() && self.offsets.get(&(table, topic, partition)).is_some_and(|s| s.contains(&offset))
    }

    pub fn len(&self) -> usize {
        self.offsets.values().map(HashSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Forgets what lies below the committed positions: those records are never read again.
    pub fn prune(&mut self, committed: &BTreeMap<(Topic, u32), u64>) {
        self.offsets.retain(|(_, topic, partition), set| {
            if let Some(next) = committed.get(&(*topic, *partition)) {
                set.retain(|o| o >= next);
            }
            !set.is_empty()
        });
    }
}

/// The rows of one batch, table by table, and the log range they cover.
#[derive(Default, Debug)]
pub struct RowBatch {
    pub events: Vec<EventRow>,
    pub products: Vec<ProductRow>,
    pub stock_moves: Vec<StockMoveRow>,
    pub users: Vec<UserRow>,
    pub cart_events: Vec<CartEventRow>,
    pub orders: Vec<OrderRow>,
    pub order_lines: Vec<OrderLineRow>,
    pub payments: Vec<PaymentRow>,
    pub product_views: Vec<ProductViewRow>,
    pub searches: Vec<SearchRow>,
    pub recommendation_clicks: Vec<RecommendationClickRow>,
    pub decisions: Vec<DecisionRow>,
    /// Records that failed to decode or validate, ready for the dead-letter topic.
    pub dead_letters: Vec<OutRecord>,
    /// First offset of the batch per partition.
    pub first: BTreeMap<(Topic, u32), u64>,
    /// Next offset to read per partition once this batch is acknowledged.
    pub next: BTreeMap<(Topic, u32), u64>,
    /// Log append times of the records (ms), for the lag measurement.
    pub appended_ms: Vec<i64>,
    pub records: usize,
    pub rows: usize,
    /// Rough size of the rows, for the byte limit.
    pub bytes: usize,
}

impl RowBatch {
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Rows still to insert, per table (after acknowledged tables were cleared).
    pub fn rows_in(&self, table: Table) -> usize {
        match table {
            Table::Events => self.events.len(),
            Table::Products => self.products.len(),
            Table::StockMoves => self.stock_moves.len(),
            Table::Users => self.users.len(),
            Table::CartEvents => self.cart_events.len(),
            Table::Orders => self.orders.len(),
            Table::OrderLines => self.order_lines.len(),
            Table::Payments => self.payments.len(),
            Table::ProductViews => self.product_views.len(),
            Table::Searches => self.searches.len(),
            Table::RecommendationClicks => self.recommendation_clicks.len(),
            Table::Decisions => self.decisions.len(),
        }
    }
}

/// Builds batches; holds the key of the e-mail hash.
pub struct RequestBuilder {
    email_key: Secret,
}

impl RequestBuilder {
    pub fn new(email_key: Secret) -> Self {
        Self { email_key }
    }

    /// Adds one record to the batch: its rows, or a dead letter. Rows `present` says a table
    /// already holds are skipped for that table only.
    pub fn add(&self, batch: &mut RowBatch, record: &Record, present: &Present) {
        let Some(topic) = Topic::from_name(&record.topic) else {
            return; // the sink reads event topics only
        };
        let at = (topic, record.partition);
        batch.first.entry(at).or_insert(record.offset);
        batch.next.insert(at, record.offset + 1);
        batch.appended_ms.push(record.timestamp_ms);
        batch.records += 1;

        let bytes = record.value.as_deref().unwrap_or_default();
        let envelope = match Envelope::decode(bytes) {
            Ok(e) if e.topic() == topic => e,
            outcome => {
                let reason = match outcome {
                    Ok(e) => format!("{} belongs on topic {}", e.event.type_name(), e.topic()),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, %reason, "analytics sink dead-lettered an event");
                metrics::counter!("analytics_sink_dead_letters_total").increment(1);
                let letter = DeadLetter {
                    topic: record.topic.to_string(),
                    partition: record.partition,
                    offset: record.offset,
                    reason: format!("analytics sink: {reason}"),
                    payload: String::from_utf8_lossy(bytes).into_owned(),
                };
                batch.dead_letters.push(OutRecord::keyed(
                    Topic::Dlq.name(),
                    format!("{}/{}/{}", record.topic, record.partition, record.offset),
                    serde_json::to_vec(&letter).expect("dead letters serialise"),
                ));
                return;
            }
        };
        let pos = Pos { topic, partition: record.partition, offset: record.offset, present };
        let before = batch.rows;
        if !pos.present(Table::Events) {
            batch.events.push(EventRow {
                id: envelope.id,
                ts: envelope.ts,
                r#type: envelope.event.type_name().to_string(),
                key: envelope.key().as_str().to_string(),
                payload: super::redact::payload(&envelope.event, bytes, |email| self.email_hash(email)),
                log_topic: topic.name().to_string(),
                log_partition: record.partition,
                log_offset: record.offset,
            });
            batch.rows += 1;
        }
        self.typed(batch, &envelope, &pos);
        batch.bytes += bytes.len() * 2 + 64 * (batch.rows - before);
    }

    /// The typed rows of an event (none for kinds that live in `events` only: categories,
    /// brands, suppliers, reviews, warehouses).
    fn typed(&self, batch: &mut RowBatch, envelope: &Envelope, pos: &Pos<'_>) {
        let ts = envelope.ts;
        let kind = envelope.event.type_name().rsplit('.').next().unwrap_or_default().to_string();
        let (log_topic, log_partition, log_offset) = (pos.topic.name().to_string(), pos.partition, pos.offset);
        macro_rules! push {
            ($table:expr, $vec:ident, $row:expr) => {
                if !pos.present($table) {
                    batch.$vec.push($row);
                    batch.rows += 1;
                }
            };
        }
        match &envelope.event {
            Event::ProductCreated(e) => push!(Table::Products, products, ProductRow {
                ts, kind, product_id: e.product_id.to_string(), name: Some(e.name.clone()),
                category_id: Some(e.category_id.to_string()), brand_id: Some(e.brand_id.to_string()),
                price: Some(e.price.amount_minor), currency: e.price.currency.clone(), log_topic, log_partition, log_offset,
            }),
            Event::ProductUpdated(e) => push!(Table::Products, products, ProductRow {
                ts, kind, product_id: e.product_id.to_string(), name: e.name.clone(),
                category_id: e.category_id.as_ref().map(ToString::to_string), brand_id: e.brand_id.as_ref().map(ToString::to_string),
                price: e.price.as_ref().map(|p| p.amount_minor), currency: e.price.as_ref().map(|p| p.currency.clone()).unwrap_or_default(),
                log_topic, log_partition, log_offset,
            }),
            Event::ProductDeleted(e) => push!(Table::Products, products, ProductRow {
                ts, kind, product_id: e.product_id.to_string(), name: None, category_id: None, brand_id: None, price: None,
                currency: String::new(), log_topic, log_partition, log_offset,
            }),
            Event::StockReceived(e) => push!(Table::StockMoves, stock_moves, StockMoveRow {
                ts, kind, product_id: e.product_id.to_string(), warehouse_id: e.warehouse_id.to_string(),
                delta: i64::from(e.quantity), reason: String::new(), log_topic, log_partition, log_offset,
            }),
            Event::StockAdjusted(e) => push!(Table::StockMoves, stock_moves, StockMoveRow {
                ts, kind, product_id: e.product_id.to_string(), warehouse_id: e.warehouse_id.to_string(),
                delta: e.delta, reason: e.reason.clone(), log_topic, log_partition, log_offset,
            }),
            Event::UserRegistered(e) => push!(Table::Users, users, UserRow {
                email_hash: self.email_hash(&e.email), role: e.role.as_str().into(), ..user(ts, kind, &e.user_id, pos)
            }),
            Event::ProfileUpdated(e) => push!(Table::Users, users, user(ts, kind, &e.user_id, pos)),
            Event::AddressAdded(e) => push!(Table::Users, users, UserRow {
                country: e.country.clone(), city: e.city.clone(), ..user(ts, kind, &e.user_id, pos)
            }),
            Event::RoleChanged(e) => push!(Table::Users, users, UserRow { role: e.role.as_str().into(), ..user(ts, kind, &e.user_id, pos) }),
            Event::SessionStarted(e) => push!(Table::Users, users, UserRow { session_id: e.session_id.to_string(), ..user(ts, kind, &e.user_id, pos) }),
            Event::SessionRefreshed(e) => push!(Table::Users, users, UserRow { session_id: e.session_id.to_string(), ..user(ts, kind, &e.user_id, pos) }),
            Event::SessionRevoked(e) => push!(Table::Users, users, UserRow { session_id: e.session_id.to_string(), ..user(ts, kind, &e.user_id, pos) }),
            Event::CartItemAdded(e) | Event::CartItemRemoved(e) => push!(Table::CartEvents, cart_events, CartEventRow {
                ts, kind, user_id: e.user_id.to_string(), product_id: e.product_id.to_string(), quantity: e.quantity,
                log_topic, log_partition, log_offset,
            }),
            Event::CartQuantitySet(e) => push!(Table::CartEvents, cart_events, CartEventRow {
                ts, kind, user_id: e.user_id.to_string(), product_id: e.product_id.to_string(), quantity: e.quantity,
                log_topic, log_partition, log_offset,
            }),
            Event::CartCleared(e) => push!(Table::CartEvents, cart_events, CartEventRow {
                ts, kind, user_id: e.user_id.to_string(), product_id: String::new(), quantity: 0, log_topic, log_partition, log_offset,
            }),
            Event::OrderPlaced(e) => {
                let total = e.lines.iter().map(|l| i64::from(l.quantity) * l.unit_price.amount_minor).sum();
                let currency = e.lines.first().map(|l| l.unit_price.currency.clone()).unwrap_or_default();
                push!(Table::Orders, orders, OrderRow {
                    ts, kind: kind.clone(), order_id: e.order_id.to_string(), user_id: e.user_id.to_string(), status: "placed".into(),
                    lines: u16::try_from(e.lines.len()).unwrap_or(u16::MAX), items: e.lines.iter().map(|l| l.quantity).sum(),
                    total, currency, reason: String::new(), log_topic: log_topic.clone(), log_partition, log_offset,
                });
                if !pos.present(Table::OrderLines) {
                    for (i, l) in e.lines.iter().enumerate() {
                        batch.order_lines.push(OrderLineRow {
                            ts, order_id: e.order_id.to_string(), user_id: e.user_id.to_string(), line: i as u16,
                            product_id: l.product_id.to_string(), quantity: l.quantity, unit_price: l.unit_price.amount_minor,
                            currency: l.unit_price.currency.clone(), log_topic: log_topic.clone(), log_partition, log_offset,
                        });
                        batch.rows += 1;
                    }
                }
            }
            Event::OrderCancelled(e) => push!(Table::Orders, orders, OrderRow {
                ts, kind, order_id: e.order_id.to_string(), user_id: e.user_id.to_string(), status: "cancelled".into(), lines: 0,
                items: 0, total: 0, currency: String::new(), reason: e.reason.clone(), log_topic, log_partition, log_offset,
            }),
            Event::OrderStatusChanged(e) => {
                let status = serde_json::to_value(e.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
                push!(Table::Orders, orders, OrderRow {
                    ts, kind, order_id: e.order_id.to_string(), user_id: e.user_id.to_string(), status, lines: 0, items: 0,
                    total: 0, currency: String::new(), reason: String::new(), log_topic, log_partition, log_offset,
                })
            }
            Event::PaymentMethodTokenized(e) => push!(Table::Payments, payments, PaymentRow {
                token: e.token.clone(), last4: e.last4.clone(), card_brand: e.card_brand.clone(), user_id: e.user_id.to_string(),
                ..payment(ts, kind, log_topic, log_partition, log_offset)
            }),
            Event::ChargeRequested(e) => push!(Table::Payments, payments, PaymentRow {
                order_id: e.order_id.to_string(), user_id: e.user_id.to_string(), amount: e.amount.amount_minor,
                currency: e.amount.currency.clone(), token: e.token.clone(), ..payment(ts, kind, log_topic, log_partition, log_offset)
            }),
            Event::ChargeSucceeded(e) => push!(Table::Payments, payments, PaymentRow {
                order_id: e.order_id.to_string(), payment_id: e.payment_id.to_string(), amount: e.amount.amount_minor,
                currency: e.amount.currency.clone(), ..payment(ts, kind, log_topic, log_partition, log_offset)
            }),
            Event::PaymentSubmitted(e) => push!(Table::Payments, payments, PaymentRow {
                order_id: e.order_id.to_string(), user_id: e.user_id.to_string(), token: e.token.clone(),
                ..payment(ts, kind, log_topic, log_partition, log_offset)
            }),
            Event::RefundRequested(e) => push!(Table::Payments, payments, PaymentRow {
                order_id: e.order_id.to_string(), user_id: e.user_id.to_string(), amount: e.amount.amount_minor,
                currency: e.amount.currency.clone(), reason: e.reason.clone(), ..payment(ts, kind, log_topic, log_partition, log_offset)
            }),
            Event::RefundApproved(e) => push!(Table::Payments, payments, PaymentRow {
                order_id: e.order_id.to_string(), user_id: e.user_id.to_string(), payment_id: e.payment_id.to_string(),
                amount: e.amount.amount_minor, currency: e.amount.currency.clone(), ..payment(ts, kind, log_topic, log_partition, log_offset)
            }),
            Event::RefundFailed(e) => push!(Table::Payments, payments, PaymentRow {
                order_id: e.order_id.to_string(), user_id: e.user_id.to_string(), reason: e.reason.clone(),
                ..payment(ts, kind, log_topic, log_partition, log_offset)
            }),
            Event::ChargeFailed(e) => push!(Table::Payments, payments, PaymentRow {
                order_id: e.order_id.to_string(), reason: e.reason.clone(), retryable: u8::from(e.retryable),
                ..payment(ts, kind, log_topic, log_partition, log_offset)
            }),
            Event::PaymentRefunded(e) => push!(Table::Payments, payments, PaymentRow {
                order_id: e.order_id.to_string(), payment_id: e.payment_id.to_string(), amount: e.amount.amount_minor,
                currency: e.amount.currency.clone(), ..payment(ts, kind, log_topic, log_partition, log_offset)
            }),
            Event::ProductViewed(e) => push!(Table::ProductViews, product_views, ProductViewRow {
                ts, user_id: e.user_id.to_string(), product_id: e.product_id.to_string(), log_topic, log_partition, log_offset,
            }),
            Event::SearchPerformed(e) => push!(Table::Searches, searches, SearchRow {
                ts, user_id: e.user_id.to_string(), query: e.query.clone(), hits: e.results, log_topic, log_partition, log_offset,
            }),
            Event::RecommendationClicked(e) => push!(Table::RecommendationClicks, recommendation_clicks, RecommendationClickRow {
                ts, user_id: e.user_id.to_string(), product_id: e.product_id.to_string(), source: e.source.clone(),
                log_topic, log_partition, log_offset,
            }),
            Event::ReservationAccepted(e) => push!(Table::Decisions, decisions, DecisionRow {
                order_id: e.order_id.to_string(), holds: u16::try_from(e.holds.len()).unwrap_or(u16::MAX),
                quantity: e.holds.iter().map(|h| i64::from(h.quantity)).sum(), ..decision(ts, kind, log_topic, log_partition, log_offset)
            }),
            Event::HoldRequested(e) => push!(Table::Decisions, decisions, DecisionRow {
                order_id: e.order_id.to_string(), product_id: e.product_id.to_string(), quantity: i64::from(e.quantity),
                ..decision(ts, kind, log_topic, log_partition, log_offset)
            }),
            Event::HoldDecided(e) => push!(Table::Decisions, decisions, DecisionRow {
                order_id: e.order_id.to_string(), product_id: e.product_id.to_string(),
                holds: u16::try_from(e.holds.len()).unwrap_or(u16::MAX), quantity: e.holds.iter().map(|h| i64::from(h.quantity)).sum(),
                available: e.available, reason: if e.granted { String::new() } else { "out_of_stock".into() },
                ..decision(ts, kind, log_topic, log_partition, log_offset)
            }),
            Event::HoldReleased(e) => push!(Table::Decisions, decisions, DecisionRow {
                order_id: e.order_id.to_string(), product_id: e.product_id.to_string(), reason: e.reason.clone(),
                ..decision(ts, kind, log_topic, log_partition, log_offset)
            }),
            Event::HoldCommitted(e) => push!(Table::Decisions, decisions, DecisionRow {
                order_id: e.order_id.to_string(), product_id: e.product_id.to_string(),
                ..decision(ts, kind, log_topic, log_partition, log_offset)
            }),
            Event::OrderConfirmed(e) | Event::OrderRejected(e) | Event::OrderExpired(e) | Event::CancellationAccepted(e)
            | Event::OrderShipped(e) | Event::OrderDelivered(e) | Event::RefundCompleted(e) => push!(Table::Decisions, decisions, DecisionRow {
                order_id: e.order_id.to_string(), reason: e.reason.clone(), ..decision(ts, kind, log_topic, log_partition, log_offset)
            }),
            Event::StockAdjustmentRejected(e) => push!(Table::Decisions, decisions, DecisionRow {
                product_id: e.product_id.to_string(), warehouse_id: e.warehouse_id.to_string(), quantity: e.delta,
                available: e.available, ..decision(ts, kind, log_topic, log_partition, log_offset)
            }),
            // Admins' search synonym sets are configuration, not shop activity.
            Event::CategoryUpserted(_) | Event::BrandUpserted(_) | Event::SupplierUpserted(_) | Event::ReviewPosted(_)
            | Event::WarehouseCreated(_) | Event::SynonymsSet(_) => {}
            // The saga's clock: no activity of anyone's.
            Event::PaymentDeadline(_) => {}
        }
    }

    /// HMAC-SHA256 of the normalised address, hex: equal addresses give equal hashes, and
    /// without the key nobody can test a guessed address against the table.
    pub fn email_hash(&self, email: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.email_key.expose().as_bytes()).expect("hmac takes keys of any length");
        mac.update(email.trim().to_lowercase().as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }
}

struct Pos<'a> {
    topic: Topic,
    partition: u32,
    offset: u64,
    present: &'a Present,
}

impl Pos<'_> {
    fn present(&self, table: Table) -> bool {
        self.present.contains(table, self.topic, self.partition, self.offset)
    }
}

fn user(ts: i64, kind: String, user_id: &shopflow_events::Id, pos: &Pos<'_>) -> UserRow {
    UserRow {
        ts, kind, user_id: user_id.to_string(), email_hash: String::new(), role: String::new(), session_id: String::new(),
        country: String::new(), city: String::new(), log_topic: pos.topic.name().to_string(), log_partition: pos.partition,
        log_offset: pos.offset,
    }
}

fn payment(ts: i64, kind: String, log_topic: String, log_partition: u32, log_offset: u64) -> PaymentRow {
    PaymentRow {
        ts, kind, order_id: String::new(), user_id: String::new(), payment_id: String::new(), amount: 0, currency: String::new(),
        token: String::new(), last4: String::new(), card_brand: String::new(), reason: String::new(), retryable: 0,
        log_topic, log_partition, log_offset,
    }
}

fn decision(ts: i64, kind: String, log_topic: String, log_partition: u32, log_offset: u64) -> DecisionRow {
    DecisionRow {
        ts, kind, order_id: String::new(), product_id: String::new(), warehouse_id: String::new(), holds: 0, quantity: 0,
        available: 0, reason: String::new(), log_topic, log_partition, log_offset,
    }
}
