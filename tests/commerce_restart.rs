//! The order saga's decisions are a function of the log: a pipeline restarted from nothing
//! replays the same log to exactly the same decisions.
//!
//! One `shopflow up` on a real Kafka-protocol broker takes a few hundred contended orders
//! over HTTP (scarce stock, cards that pay, cards that are declined, orders left unpaid), is
//! `kill -9`ed while orders are in flight, restarted on its snapshots, and finishes the stream
//! (clients retry what got no answer under the same `Idempotency-Key`) with cancellations
//! racing the saga. Once every order has settled, the process stops, its pipeline snapshots
//! are deleted, and it starts again: the views are rebuilt from the log alone (following the
//! epochs recorded in the log's `_remap` topic, which only group records into epochs; the
//! saga decides per partition in log order). Every order (status, reason, holds, status history, amounts), every payment,
//! every product's stock and the top sellers must equal what they were, and the saga's
//! topics must hold no record id they did not hold before: the replay decided nothing new.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use shopflow_events::Topic;
use shopflow_ingest::{EventLog, Position};
use support::*;

const PRODUCTS: usize = 6;
const CUSTOMERS: usize = 8;
const ORDERS: usize = 240;
/// Acknowledged orders before the `kill -9`.
const KILL_AFTER: usize = 100;
/// Frequent snapshots: the first restart resumes from one taken mid-stream.
const ENV: [(&str, &str); 1] = [("SHOPFLOW_PIPELINE__SNAPSHOT_INTERVAL_MS", "50")];

/// Scarce stock of a few products in two warehouses: most orders compete for the same units.
async fn seed_catalog(base: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let write = |path: &'static str, body: Value| {
        let base = base.to_owned();
        async move {
            let (status, answer) = post(&base, path, &body).await;
            assert_eq!(status, 202, "{path}: {answer}");
            answer["consistency_token"].as_str().unwrap().to_owned()
        }
    };
    for w in 0..2 {
        tokens.push(write("/api/v1/warehouses", json!({"warehouse_id": format!("w{w}"), "name": format!("DC {w}")})).await);
    }
    for p in 0..PRODUCTS {
        tokens.push(
            write(
                "/api/v1/products",
                json!({"product_id": format!("p{p}"), "name": format!("Item {p}"), "price": {"amount_minor": 1000 + 100 * p, "currency": "EUR"},
                       "category_id": format!("c{}", p % 2), "brand_id": "b", "supplier_id": "s"}),
            )
            .await,
        );
        tokens.push(write("/api/v1/stock/receipts", json!({"product_id": format!("p{p}"), "warehouse_id": "w0", "quantity": 12 + 2 * p})).await);
        tokens.push(write("/api/v1/stock/receipts", json!({"product_id": format!("p{p}"), "warehouse_id": "w1", "quantity": 6})).await);
    }
    tokens
}

/// A registered customer with a default address: (user id, access token, consistency token).
async fn customer(base: &str, i: usize) -> (String, String, String) {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"email": format!("buyer{i}@example.com"), "password": "correct horse battery", "name": "Buyer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let user_id = response.json::<Value>().await.unwrap()["user"]["user_id"].as_str().unwrap().to_owned();
    let token = customer_token(&user_id);
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/users/{user_id}/addresses"))
        .bearer_auth(&token)
        .json(&json!({"street": "1 Main St", "city": "Town", "country": "NL", "is_default": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let consistency = response.json::<Value>().await.unwrap()["consistency_token"].as_str().unwrap().to_owned();
    (user_id, token, consistency)
}

/// Order `i`: one or two lines of scarce products, paid by card, declined, or left unpaid.
fn order_body(i: usize) -> Value {
    let mut lines = vec![json!({"product_id": format!("p{}", i % PRODUCTS), "quantity": 1 + i % 2})];
    if i % 3 == 0 {
        lines.push(json!({"product_id": format!("p{}", (i + 2) % PRODUCTS), "quantity": 1}));
    }
    let mut body = json!({"lines": lines});
    match i % 5 {
        0..=2 => body["payment_method"] = json!("tok_visa"),
        3 => body["payment_method"] = json!("tok_chargeDeclined"),
        _ => {} // unpaid: stays reserved until its deadline, 15 minutes away
    }
    body
}

/// Places order `i`; `None` when no answer came (the server died mid-request).
async fn place(base: &str, token: &str, consistency: &str, i: usize) -> Option<(u16, Value)> {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(token)
        .header("idempotency-key", format!("order-{i}"))
        .header("x-consistency-token", consistency)
        .json(&order_body(i))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

/// Whether an order has come to rest: decided, charged if it was given a card, and its
/// payment (if any) neither waiting for the gateway nor for a refund.
fn settled(order: &Value, payment: &Value) -> bool {
    let decided = match order["status"].as_str().unwrap_or_default() {
        "pending" => false,
        "reserved" => order["payment_token"].as_str().unwrap_or_default().is_empty(),
        _ => true,
    };
    let refunds_done = payment["refunds"].as_array().is_none_or(|r| r.iter().all(|r| r["status"] != "pending"));
    decided && payment["status"] != "pending" && refunds_done
}

/// Every order and its payment (awaited until settled), every product's stock and the top
/// sellers, read as of `token`.
async fn capture(base: &str, token: &str, orders: &BTreeSet<String>) -> BTreeMap<String, Value> {
    let mut state = BTreeMap::new();
    for id in orders {
        let deadline = Instant::now() + DEADLINE;
        let (order, payment) = loop {
            let order = get_consistent(base, &format!("/api/v1/orders/{id}"), token).await;
            let (status, payment) = get_consistent_status(base, &format!("/api/v1/payments/{id}"), token).await;
            let payment = json!({"status": status, "body": payment});
            if settled(&order, &payment["body"]) {
                break (order, payment);
            }
            assert!(Instant::now() < deadline, "order {id} never settled: {order} {payment}");
            tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
        };
        state.insert(format!("payment {id}"), payment);
        state.insert(format!("order {id}"), order);
    }
    for p in 0..PRODUCTS {
        state.insert(format!("stock p{p}"), get_consistent(base, &format!("/api/v1/products/p{p}/stock"), token).await);
    }
    for window in ["all", "hour", "day"] {
        state.insert(format!("top {window}"), get_consistent(base, &format!("/api/v1/top-sellers?window={window}&limit=50"), token).await);
    }
    state
}

/// [`capture`] repeated until two captures in a row agree: the state the log settles in. A
/// second capture that differs from the first means a read answered for a token before the
/// views held everything the token covered; it is reported (stderr), not hidden by the
/// comparison, since the states compared are the settled ones.
async fn settled_state(base: &str, token: &str, orders: &BTreeSet<String>) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + DEADLINE;
    let mut last = capture(base, token, orders).await;
    loop {
        let next = capture(base, token, orders).await;
        if next == last {
            return next;
        }
        let changed: Vec<&String> = next.keys().filter(|k| next.get(*k) != last.get(*k)).collect();
        eprintln!("WARNING: views changed after every order settled under the token: {changed:?}");
        assert!(Instant::now() < deadline, "the views never settled");
        last = next;
    }
}

/// The topics the saga writes.
const SAGA_TOPICS: [Topic; 5] = [Topic::Orders, Topic::Inventory, Topic::Payments, Topic::Decisions, Topic::Carts];

/// Every record now on the saga's topics: (topic, partition, offset, raw JSON, event).
async fn saga_records(log: &Arc<dyn EventLog>) -> Vec<(&'static str, u32, u64, String, shopflow_events::Envelope)> {
    let mut out = Vec::new();
    for topic in SAGA_TOPICS {
        let ends = log.end_offsets(topic.name()).await.unwrap();
        let total: u64 = ends.iter().sum();
        let starts: Vec<Position> = (0..ends.len() as u32).map(|p| Position::new(topic.name(), p, 0)).collect();
        let mut reader = log.reader(&starts).unwrap();
        let mut read = 0;
        let deadline = Instant::now() + DEADLINE;
        while read < total {
            assert!(Instant::now() < deadline, "{topic:?}: read {read} of {total}");
            for record in reader.poll(1_000, Duration::from_millis(200)).unwrap() {
                if record.offset < ends[record.partition as usize] {
                    read += 1;
                    let value = record.value.as_deref().unwrap();
                    let envelope = shopflow_events::Envelope::decode(value).unwrap();
                    out.push((topic.name(), record.partition, record.offset, String::from_utf8_lossy(value).into_owned(), envelope));
                }
            }
        }
    }
    out
}

/// The (type, id) of every record on the saga's topics.
async fn saga_record_ids(log: &Arc<dyn EventLog>) -> BTreeSet<(String, uuid::Uuid)> {
    saga_records(log).await.into_iter().map(|(_, _, _, _, e)| (e.event.type_name().to_owned(), e.id)).collect()
}

/// A token covering everything now in the views' source topics.
async fn token_for_everything(log: &Arc<dyn EventLog>) -> String {
    let mut positions = Vec::new();
    for topic in shopflow_dataflow::pipeline::SOURCE_TOPICS {
        for (partition, end) in log.end_offsets(topic.name()).await.unwrap().into_iter().enumerate() {
            if end > 0 {
                positions.push(Position::new(topic.name(), partition as u32, end - 1));
            }
        }
    }
    token_for(&positions)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_restarted_from_nothing_replays_the_order_log_to_the_same_decisions() {
    let broker = kafka_broker();
    let namespace = unique_namespace();
    let log = kafka_log(&broker, &namespace).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["up", "--kafka", broker.addr(), "--namespace", &namespace, "--data-dir", data.to_str().unwrap(), "--demo-products", "0", "--workers", "2"];

    let app = Shopflow::start_http_env(&args, &ENV, dir.path()).await;
    let mut tokens = seed_catalog(&app.base).await;
    let mut customers = Vec::new();
    for i in 0..CUSTOMERS {
        let (user, token, consistency) = customer(&app.base, i).await;
        tokens.push(consistency);
        customers.push((user, token));
    }
    let setup = merge_tokens(tokens.iter().map(String::as_str));

    // First run: orders from every customer at once, killed once KILL_AFTER are acknowledged.
    let (reached, killed) = tokio::sync::oneshot::channel();
    let first = {
        let (base, customers, setup) = (app.base.clone(), customers.clone(), setup.clone());
        tokio::spawn(async move {
            let acked = std::sync::atomic::AtomicUsize::new(0);
            let reached = std::sync::Mutex::new(Some(reached));
            stream::iter(0..ORDERS)
                .map(|i| {
                    let (base, token, setup, acked, reached) = (&base, &customers[i % CUSTOMERS].1, &setup, &acked, &reached);
                    async move {
                        let answer = place(base, token, setup, i).await;
                        if answer.as_ref().is_some_and(|(s, _)| *s == 202)
                            && acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == KILL_AFTER
                        {
                            let _ = reached.lock().unwrap().take().map(|tx| tx.send(()));
                        }
                        (i, answer)
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
        })
    };
    killed.await.unwrap();
    app.kill9();
    let first = first.await.unwrap();
    let unanswered: Vec<usize> = first.iter().filter(|(_, a)| a.as_ref().is_none_or(|(s, _)| *s != 202)).map(|(i, _)| *i).collect();
    assert!(!unanswered.is_empty() && unanswered.len() < ORDERS, "the kill landed mid-stream ({} unanswered)", unanswered.len());

    // Restart on the snapshots; clients retry what got no answer under the same key, and
    // some customers cancel while the saga is still deciding.
    let app = Shopflow::start_http_env(&args, &ENV, dir.path()).await;
    let mut order_ids = BTreeMap::new();
    for (i, answer) in &first {
        if let Some((202, body)) = answer {
            order_ids.insert(*i, body["order_id"].as_str().unwrap().to_owned());
            tokens.push(body["consistency_token"].as_str().unwrap().to_owned());
        } else {
            assert!(unanswered.contains(i));
        }
    }
    let retried_count = unanswered.len();
    let retried: Vec<(usize, Option<(u16, Value)>)> = stream::iter(unanswered)
        .map(|i| {
            let (base, token, setup) = (&app.base, &customers[i % CUSTOMERS].1, &setup);
            async move { (i, place(base, token, setup, i).await) }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (i, answer) in retried {
        let (status, body) = answer.expect("the restarted server answers");
        assert_eq!(status, 202, "order {i}: {body}");
        order_ids.insert(i, body["order_id"].as_str().unwrap().to_owned());
        tokens.push(body["consistency_token"].as_str().unwrap().to_owned());
    }
    let order_ids: BTreeMap<usize, String> = order_ids;
    let distinct: BTreeSet<String> = order_ids.values().cloned().collect();
    assert_eq!((order_ids.len(), distinct.len()), (ORDERS, ORDERS), "one order per idempotency key");
    let cancels: Vec<(usize, u16)> = stream::iter((0..ORDERS).filter(|i| i % 7 == 0))
        .map(|i| {
            let (base, token, id) = (&app.base, &customers[i % CUSTOMERS].1, &order_ids[&i]);
            async move {
                let response = reqwest::Client::new()
                    .post(format!("{base}/api/v1/orders/{id}/cancel"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                (i, response.status().as_u16())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(cancels.iter().all(|(_, s)| [202, 409].contains(s)), "{cancels:?}");

    let token = token_for_everything(&log).await;
    let before = settled_state(&app.base, &token, &distinct).await;
    let statuses: BTreeSet<&str> = before.iter().filter(|(k, _)| k.starts_with("order ")).map(|(_, o)| o["status"].as_str().unwrap()).collect();
    for expected in ["paid", "rejected", "reserved"] {
        assert!(statuses.contains(expected), "the run has {expected} orders: {statuses:?}");
    }
    let rejected_for_stock = before.values().filter(|o| o["reason"].as_str().is_some_and(|r| r.starts_with("out_of_stock:"))).count();
    assert!(rejected_for_stock > 0, "stock was contended");
    app.terminate();
    // Read once the first run has stopped: its payment worker and pipeline may append
    // follow-ups after the views settle, up to shutdown, and those are not the replay's.
    let ids_before = saga_record_ids(&log).await;

    // From nothing but the log: no snapshot; the views are rebuilt by replaying it.
    std::fs::remove_dir_all(data.join("pipeline")).unwrap();
    let app = Shopflow::start_http_env(&args, &ENV, dir.path()).await;
    let token = token_for_everything(&log).await;
    let after = settled_state(&app.base, &token, &distinct).await;
    for (key, value) in &before {
        if after.get(key) != Some(value) {
            // What the log says about it, to tell a replay that decided differently from a
            // read that was not what its token promised.
            let id = key.rsplit(' ').next().unwrap();
            for (topic, partition, offset, _, envelope) in saga_records(&log).await.into_iter().filter(|r| r.3.contains(id)) {
                eprintln!("{topic}/{partition}@{offset}: {} {} ts {}", envelope.event.type_name(), envelope.id, envelope.ts);
            }
            let (_, late) = send(reqwest::Method::GET, &app.base, &format!("/api/v1/{}s/{id}", key.split(' ').next().unwrap()), None).await;
            eprintln!("read again without a token: {late}");
            eprintln!("progress: {}", send(reqwest::Method::GET, &app.base, "/readyz", None).await.1);
        }
        assert_eq!(after.get(key), Some(value), "{key} differs after the replay");
    }
    assert_eq!(after.len(), before.len());
    // Re-appended follow-ups carry the ids they had: the replay decided nothing new.
    let ids_after = saga_record_ids(&log).await;
    let mut by_status = BTreeMap::new();
    for order in before.iter().filter(|(k, _)| k.starts_with("order ")).map(|(_, o)| o) {
        *by_status.entry(order["status"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    println!(
        "{ORDERS} orders ({} retried after the kill, {} cancels tried), settled as {by_status:?}; {rejected_for_stock} rejected for stock; \
         saga record ids: {} before the replay from nothing, {} after",
        retried_count,
        cancels.len(),
        ids_before.len(),
        ids_after.len()
    );
    let new: Vec<_> = ids_after.difference(&ids_before).take(10).collect();
    assert!(new.is_empty(), "the replay wrote records with new ids (new decisions): {new:?}");
    app.terminate();
}
