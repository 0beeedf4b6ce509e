//! The demo shop's second act: once a demo order is paid, what its story says happens next
//! (an admin ships it, its owner asks for a refund or cancels), appended as ordinary events.
//! Runs beside `up` on the first start, so every order state is on show within seconds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shopflow_dataflow::views::Views;
use shopflow_events::types::OrderStatus;
use shopflow_events::Id;
use shopflow_ingest::EventLog;
use shopflow_shopdata::demo_orders::{self, DemoOrder};

/// The payment worker charges within seconds; past this, the rest of the demo is dropped
/// (with a warning), not waited for forever.
const PATIENCE: Duration = Duration::from_secs(300);

/// Appends each paid demo order's follow-ups, then returns.
pub async fn follow_up(log: Arc<dyn EventLog>, views: Arc<Views>, products: usize) -> anyhow::Result<()> {
    let mut waiting: BTreeMap<Id, DemoOrder> = demo_orders::orders(products)
        .into_iter()
        .filter(|o| !demo_orders::follow_ups(o, &shopflow_events::Money::new(0, "EUR")).is_empty())
        .map(|o| (o.order_id.clone(), o))
        .collect();
    let changed = Arc::new(tokio::sync::Notify::new());
    let notify = changed.clone();
    views.on_change(Box::new(move |c| {
        if !c.orders.is_empty() {
            notify.notify_one();
        }
    }));
    let started = Instant::now();
    while !waiting.is_empty() {
        let mut ready = Vec::new();
        for (id, order) in &waiting {
            match views.orders.get(id) {
                Some(row) if row.status == OrderStatus::Paid => ready.push((id.clone(), demo_orders::follow_ups(order, &row.total))),
                // Declined or expired instead of paid: nothing follows.
                Some(row) if row.status != OrderStatus::Pending && row.status != OrderStatus::Reserved => {
                    tracing::warn!(order = %id, status = ?row.status, "demo order was not paid; its story stops here");
                    ready.push((id.clone(), Vec::new()));
                }
                _ => {}
            }
        }
        for (id, events) in ready {
            let records = shopflow_shopdata::records(&events);
            if !records.is_empty() {
                log.append(records).await?;
            }
            waiting.remove(&id);
        }
        if waiting.is_empty() {
            break;
        }
        let left = PATIENCE.saturating_sub(started.elapsed());
        if left.is_zero() {
            tracing::warn!(orders = waiting.len(), "demo orders still unpaid; their follow-ups are skipped");
            break;
        }
        // A change of any order wakes the check; the timeout only bounds a missed wake-up.
        let _ = tokio::time::timeout(left.min(Duration::from_secs(1)), changed.notified()).await;
    }
    tracing::info!("demo orders followed up");
    Ok(())
}
