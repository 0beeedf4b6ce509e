//! The commerce routes over HTTP on real ports, against the real pipeline (the order saga) on
//! the embedded log: two servers, one on the pipeline's views and one on a replica's, as two
//! `serve` replicas would be.
//!
//! Needs the saga in `shopflow-dataflow` (orders, holds, carts, payments views). The payment
//! worker is a separate process not started here: where a test needs a paid order it appends
//! the worker's answer (`payment.charge_succeeded`) to the log itself, marked STAND-IN.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shopflow_events::types::{ChargeSucceeded, Role};
use shopflow_events::{Envelope, Event, Id, Money, Topic};
use shopflow_ingest::{OutRecord, Position};
use shopflow_serving::ServingConfig;
use support::commerce::SseReader;
use support::shop::{RealPipeline, Server};

/// Servers drop (stop) before the pipeline is joined.
struct Store {
    servers: Vec<Server>,
    real: RealPipeline,
    client: reqwest::Client,
    config: ServingConfig,
}

struct Customer {
    user_id: String,
    token: String,
    /// Covers the customer's address: pass it to the first order.
    consistency: String,
}

impl Store {
    async fn start() -> Store {
        Self::with(RealPipeline::start().await).await
    }

    async fn with(real: RealPipeline) -> Store {
        Self::with_vault(real, None).await
    }

    /// Server 0 tokenizes cards through `vault`.
    async fn with_vault(real: RealPipeline, vault: Option<Arc<dyn shopflow_serving::CardVault>>) -> Store {
        let mut config = RealPipeline::serving_config();
        // Thousands of requests from one address in a few seconds: not what the limits are for.
        config.gateway.rate_limits = false;
        config.commerce.order_wait_max = Duration::from_secs(30);
        config.write_timeout = Duration::from_secs(30);
        config.read_wait_max = Duration::from_secs(30);
        let servers = vec![
            Server::start_with_vault(config.clone(), real.log.clone(), real.views.clone(), vault).await,
            Server::start(config.clone(), real.log.clone(), real.replica_views.clone()).await,
        ];
        Store { servers, real, client: reqwest::Client::new(), config }
    }

    async fn stop(mut self) {
        for server in self.servers.drain(..) {
            server.stop().await;
        }
        drop(self.real);
    }

    fn admin(&self) -> String {
        support::admin_token(&self.config)
    }

    async fn call(&self, server: usize, method: Method, path: &str, token: &str, body: Option<Value>, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.servers[server].base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn admin_write(&self, path: &str, body: Value) -> String {
        let (status, answer) = self.call(0, Method::POST, path, &self.admin(), Some(body), &[]).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{path}: {answer}");
        answer["consistency_token"].as_str().unwrap().to_owned()
    }

    /// A product priced `price` EUR cents with `units` in warehouse `w-1`; the token of both.
    async fn product(&self, id: &str, price: i64, units: u32) -> String {
        let created = self
            .admin_write(
                "/api/v1/products",
                json!({"product_id": id, "name": format!("product {id}"), "price": {"amount_minor": price, "currency": "EUR"},
                       "category_id": "cat-1", "brand_id": "brand-1", "supplier_id": "sup-1"}),
            )
            .await;
        let received = self.admin_write("/api/v1/stock/receipts", json!({"product_id": id, "warehouse_id": "w-1", "quantity": units})).await;
        format!("{created},{received}")
    }

    /// A registered customer with a default address.
    async fn customer(&self, email: &str) -> Customer {
        let response = self
            .client
            .post(format!("{}/api/v1/auth/register", self.servers[0].base))
            .json(&json!({"email": email, "password": "correct horse battery", "name": "Test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        let user_id = body["user"]["user_id"].as_str().unwrap().to_owned();
        let token = support::token_for(&self.config, &user_id, Role::Customer);
        let (status, address) = self
            .call(0, Method::POST, &format!("/api/v1/users/{user_id}/addresses"), &token,
                Some(json!({"street": "1 Main St", "city": "Town", "country": "NL", "is_default": true})), &[])
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{address}");
        Customer { user_id, token, consistency: address["consistency_token"].as_str().unwrap().to_owned() }
    }

    /// Every envelope in `topic`, read back from the log.
    fn read_topic(&self, topic: Topic) -> Vec<Envelope> {
        let log = self.real.log.clone();
        tokio::task::block_in_place(|| {
            let ends = futures::executor::block_on(log.end_offsets(topic.name())).unwrap();
            let total: u64 = ends.iter().sum();
            let from: Vec<Position> = (0..ends.len() as u32).map(|p| Position::new(topic.name(), p, 0)).collect();
            let mut reader = log.reader(&from).unwrap();
            let mut records = Vec::new();
            while (records.len() as u64) < total {
                let batch = reader.poll(10_000, Duration::from_secs(2)).unwrap();
                assert!(!batch.is_empty(), "{topic:?} has {total} records, read {}", records.len());
                records.extend(batch);
            }
            records.into_iter().filter_map(|r| Envelope::decode(r.value.as_deref()?).ok()).collect()
        })
    }

    /// STAND-IN for the payment worker (a separate crate, not started here): its answer to
    /// the charge request of `order_id`, appended as it would.
    async fn charge_succeeded(&self, order_id: &str, user_id: &str, amount: Money) {
        let event = Event::ChargeSucceeded(ChargeSucceeded {
            order_id: order_id.into(),
            user_id: user_id.into(),
            payment_id: Id::from(format!("pay-{order_id}").as_str()),
            amount,
            authorization_code: "auth-test".into(),
        });
        let envelope = Envelope::new(event);
        let record = OutRecord::of(&envelope);
        self.real.log.append(vec![record]).await.unwrap();
    }

    async fn order(&self, server: usize, token: &str, order_id: &str) -> Value {
        let (status, row) = self.call(server, Method::GET, &format!("/api/v1/orders/{order_id}"), token, None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{row}");
        row
    }

    /// Polls the order (through server 0) until `done` holds, within 30 s.
    async fn order_until(&self, token: &str, order_id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let (status, row) = self.call(0, Method::GET, &format!("/api/v1/orders/{order_id}"), token, None, &[]).await;
            if status == StatusCode::OK && done(&row) {
                return row;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "order {order_id}: {what} did not happen: {row}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn place_body(lines: &[(&str, u32)]) -> Value {
    json!({"lines": lines.iter().map(|(p, q)| json!({"product_id": p, "quantity": q})).collect::<Vec<_>>()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cart_is_priced_annotated_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::with(RealPipeline::start_at(dir.path()).await).await;
    let ann = store.customer("ann@example.com").await;
    let setup = format!("{},{}", store.product("mug", 1200, 5).await, store.product("pot", 3000, 1).await);
    let add = |product: &'static str, quantity: u32| {
        let body = json!({"product_id": product, "quantity": quantity});
        let setup = setup.clone();
        let store = &store;
        let token = ann.token.clone();
        async move {
            let (status, answer) = store.call(0, Method::POST, "/api/v1/cart/add", &token, Some(body), &[("x-consistency-token", &setup)]).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
            answer["consistency_token"].as_str().unwrap().to_owned()
        }
    };
    add("mug", 1).await;
    add("mug", 2).await;
    add("pot", 2).await;
    let (status, answer) = store.call(0, Method::PUT, "/api/v1/cart/items/tea", &ann.token, Some(json!({"quantity": 1})), &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "unknown product: {answer}");
    let (_, set) = store.call(0, Method::PUT, "/api/v1/cart/items/pot", &ann.token, Some(json!({"quantity": 2})), &[]).await;
    let token = set["consistency_token"].as_str().unwrap().to_owned();

    let expected = json!([
        {"product_id": "mug", "quantity": 3, "unit": 1200, "available": 5, "in_stock": true},
        {"product_id": "pot", "quantity": 2, "unit": 3000, "available": 1, "in_stock": false},
    ]);
    let summary = |cart: &Value| -> Value {
        Value::Array(cart["lines"].as_array().unwrap().iter().map(|l| json!({
            "product_id": l["product_id"], "quantity": l["quantity"], "unit": l["unit_price"]["amount_minor"],
            "available": l["available"], "in_stock": l["in_stock"],
        })).collect())
    };
    for server in [0, 1] {
        let (status, cart) = store.call(server, Method::GET, "/api/v1/cart", &ann.token, None, &[("x-consistency-token", &token)]).await;
        assert_eq!(status, StatusCode::OK, "{cart}");
        assert_eq!(summary(&cart), expected, "server {server}: {cart}");
        assert_eq!(cart["totals"], json!([{"amount_minor": 3 * 1200 + 2 * 3000, "currency": "EUR"}]));
    }
    let (_, removed) = store.call(1, Method::DELETE, "/api/v1/cart/items/pot", &ann.token, None, &[]).await;
    let token = removed["consistency_token"].as_str().unwrap().to_owned();
    let (_, cart) = store.call(0, Method::GET, "/api/v1/cart", &ann.token, None, &[("x-consistency-token", &token)]).await;
    assert_eq!(cart["lines"].as_array().unwrap().len(), 1, "{cart}");
    store.stop().await;

    // Restart the pipeline and the servers on the same data: the cart is there.
    let store = Store::with(RealPipeline::start_at(dir.path()).await).await;
    for server in [0, 1] {
        let (status, cart) = store.call(server, Method::GET, "/api/v1/cart", &ann.token, None, &[("x-consistency-token", &token)]).await;
        assert_eq!(status, StatusCode::OK, "server {server}: {cart}");
        assert_eq!(summary(&cart), json!([expected[0]]), "server {server}");
    }
    let (_, cleared) = store.call(0, Method::DELETE, "/api/v1/cart", &ann.token, None, &[]).await;
    let token = cleared["consistency_token"].as_str().unwrap().to_owned();
    // Both the pipeline's own views and the replica started after the restart pass a write
    // made after it.
    for server in [0, 1] {
        let (status, cart) = store.call(server, Method::GET, "/api/v1/cart", &ann.token, None, &[("x-consistency-token", &token)]).await;
        assert_eq!((status, &cart["lines"]), (StatusCode::OK, &json!([])), "server {server}: {cart}");
    }
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_orders_for_ten_units_accept_exactly_ten() {
    let store = Store::start().await;
    let setup = store.product("scarce", 999, 10).await;
    let customers = stream::iter(0..20).then(|i| store.customer_owned(i)).collect::<Vec<_>>().await;
    let scarce = Id::from("scarce");
    // Every batch the views apply: no warehouse of the product ever shows less than 0.
    let lowest = Arc::new(AtomicI64::new(i64::MAX));
    store.real.views.on_change(Box::new({
        let (views, lowest, scarce) = (store.real.views.clone(), lowest.clone(), scarce.clone());
        move |_| {
            for row in views.product_available(&scarce) {
                lowest.fetch_min(row.available, Ordering::SeqCst);
            }
        }
    }));

    let started = Instant::now();
    let answers: Vec<(StatusCode, Value)> = stream::iter(0..1000)
        .map(|i| {
            let customer = &customers[i % customers.len()];
            let consistency = format!("{setup},{}", customer.consistency);
            let key = format!("order-{i}");
            let store = &store;
            async move {
                store
                    .call(i % 2, Method::POST, "/api/v1/orders?wait=reservation", &customer.token, Some(place_body(&[("scarce", 1)])),
                        &[("idempotency-key", &key), ("x-consistency-token", &consistency)])
                    .await
            }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    eprintln!("1000 orders answered in {:?}", started.elapsed());
    let mut statuses: HashMap<String, usize> = HashMap::new();
    for (status, answer) in &answers {
        assert_eq!(*status, StatusCode::CREATED, "{answer}");
        let outcome = answer["status"].as_str().unwrap();
        if outcome == "rejected" {
            assert_eq!(answer["reason"], "out_of_stock:scarce", "{answer}");
        }
        *statuses.entry(outcome.to_owned()).or_default() += 1;
    }
    assert_eq!(statuses, HashMap::from([("reserved".to_owned(), 10), ("rejected".to_owned(), 990)]));
    let ids: HashSet<&str> = answers.iter().map(|(_, a)| a["order_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1000, "distinct keys are distinct orders");

    let rows = store.real.views.product_available(&scarce);
    assert_eq!(rows.iter().map(|r| r.available).sum::<i64>(), 0, "{rows:?}");
    assert_eq!(rows.iter().map(|r| r.held).sum::<i64>(), 10, "{rows:?}");
    assert!(lowest.load(Ordering::SeqCst) >= 0, "available went below 0: {}", lowest.load(Ordering::SeqCst));
    let (_, stock) = store.call(1, Method::GET, "/api/v1/products/scarce/stock", &store.admin(), None, &[]).await;
    assert_eq!((stock["held"].as_i64(), stock["available"].as_i64()), (Some(10), Some(0)), "{stock}");
    store.stop().await;
}

impl Store {
    async fn customer_owned(&self, i: usize) -> Customer {
        self.customer(&format!("buyer{i}@example.com")).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_multi_line_orders_hold_all_their_lines_or_none() {
    let store = Store::start().await;
    let setup = format!("{},{}", store.product("left", 500, 7).await, store.product("right", 700, 5).await);
    let customers = stream::iter(0..10).then(|i| store.customer_owned(i)).collect::<Vec<_>>().await;
    // Differently shaped orders, so that one product runs out before the other.
    let shapes: [&[(&str, u32)]; 3] = [&[("left", 1), ("right", 1)], &[("left", 2), ("right", 1)], &[("right", 1), ("left", 1), ("left", 1)]];
    let answers: Vec<(StatusCode, Value)> = stream::iter(0..120)
        .map(|i| {
            let customer = &customers[i % customers.len()];
            let consistency = format!("{setup},{}", customer.consistency);
            let key = format!("pair-{i}");
            let store = &store;
            let body = place_body(shapes[i % shapes.len()]);
            async move {
                store
                    .call(i % 2, Method::POST, "/api/v1/orders?wait=reservation", &customer.token, Some(body),
                        &[("idempotency-key", &key), ("x-consistency-token", &consistency)])
                    .await
            }
        })
        .buffer_unordered(40)
        .collect()
        .await;
    let mut held: HashMap<String, i64> = HashMap::new();
    for (status, answer) in &answers {
        assert_eq!(*status, StatusCode::CREATED, "{answer}");
        let order = store.real.views.orders.get(&Id::from(answer["order_id"].as_str().unwrap())).expect("the order row");
        let states: HashSet<&str> = order.holds.iter().map(|h| h.state.as_str()).collect();
        match answer["status"].as_str().unwrap() {
            "reserved" => {
                assert_eq!(states, HashSet::from(["held"]), "a reserved order holds every line: {order:?}");
                for line in &order.lines {
                    *held.entry(line.product_id.to_string()).or_default() += i64::from(line.quantity);
                }
            }
            "rejected" => assert!(!states.contains("held"), "a rejected order holds nothing: {order:?}"),
            other => panic!("unexpected status {other}: {answer}"),
        }
    }
    assert!(held.get("left").copied().unwrap_or(0) <= 7 && held.get("right").copied().unwrap_or(0) <= 5, "{held:?}");
    for product in ["left", "right"] {
        let rows = store.real.views.product_available(&Id::from(product));
        assert_eq!(rows.iter().map(|r| r.held).sum::<i64>(), held.get(product).copied().unwrap_or(0), "{product}: {rows:?}");
        assert!(rows.iter().all(|r| r.available >= 0), "{rows:?}");
    }
    assert!(held.values().sum::<i64>() > 0, "some orders were reserved");
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_identical_requests_place_one_order_and_request_one_charge() {
    let store = Store::start().await;
    let setup = store.product("gadget", 2500, 50).await;
    let ann = store.customer("ann@example.com").await;
    let consistency = format!("{setup},{}", ann.consistency);
    let body = json!({"lines": [{"product_id": "gadget", "quantity": 2}], "payment_method": "tok_visa"});
    let answers: Vec<(StatusCode, Value)> = stream::iter(0..100)
        .map(|i| {
            let (store, body, consistency, token) = (&store, body.clone(), consistency.clone(), ann.token.clone());
            async move {
                store
                    .call(i % 2, Method::POST, "/api/v1/orders", &token, Some(body), &[("idempotency-key", "one-order"), ("x-consistency-token", &consistency)])
                    .await
            }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    let mut ids = HashSet::new();
    for (status, answer) in &answers {
        // A repeat that came while the first was not yet settled may be told to retry.
        if *status == StatusCode::SERVICE_UNAVAILABLE && answer["error"]["code"] == "idempotency_pending" {
            continue;
        }
        assert_eq!(*status, StatusCode::ACCEPTED, "{answer}");
        ids.insert(answer["order_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let order_id = ids.into_iter().next().unwrap();

    // The charge request lands on `payments` once the order is reserved.
    let started = Instant::now();
    let charges = |store: &Store| -> usize {
        store
            .read_topic(Topic::Payments)
            .into_iter()
            .filter(|e| matches!(&e.event, Event::ChargeRequested(c) if c.order_id.as_str() == order_id))
            .count()
    };
    while charges(&store) == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "no charge requested");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give duplicates every chance to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(charges(&store), 1);
    let placed = store.read_topic(Topic::Orders).into_iter().filter(|e| matches!(&e.event, Event::OrderPlaced(_))).count();
    assert!(placed >= 1, "the order is in the log");
    assert_eq!(store.real.views.orders.len(), 1, "one order");
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customers_never_reach_each_others_orders_carts_or_payments() {
    let store = Store::start().await;
    let setup = store.product("book", 1500, 10).await;
    let ann = store.customer("ann@example.com").await;
    let bob = store.customer("bob@example.com").await;
    let (status, placed) = store
        .call(0, Method::POST, "/api/v1/orders?wait=reservation", &ann.token, Some(place_body(&[("book", 1)])),
            &[("idempotency-key", "ann-1"), ("x-consistency-token", &format!("{setup},{}", ann.consistency))])
        .await;
    assert_eq!((status, placed["status"].as_str()), (StatusCode::CREATED, Some("reserved")), "{placed}");
    let order = placed["order_id"].as_str().unwrap().to_owned();
    let (status, _) = store.call(0, Method::POST, "/api/v1/cart/add", &ann.token, Some(json!({"product_id": "book", "quantity": 1})), &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    for server in [0, 1] {
        for path in [
            format!("/api/v1/orders/{order}"),
            format!("/api/v1/payments/{order}"),
            format!("/api/v1/orders/user/{}", ann.user_id),
            format!("/api/v1/users/{}/cart", ann.user_id),
        ] {
            let (status, body) = store.call(server, Method::GET, &path, &bob.token, None, &[]).await;
            assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{path}: {body}");
        }
        let (status, body) = store.call(server, Method::POST, &format!("/api/v1/orders/{order}/cancel"), &bob.token, None, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, missing) = store.call(server, Method::GET, "/api/v1/orders/no-such-order", &bob.token, None, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(missing["error"]["code"], "not_found");
    }
    let admin = store.admin();
    let placed_token = placed["consistency_token"].as_str().unwrap();
    let (status, row) = store.call(1, Method::GET, &format!("/api/v1/orders/{order}"), &admin, None, &[("x-consistency-token", placed_token)]).await;
    assert_eq!((status, row["user_id"].as_str()), (StatusCode::OK, Some(ann.user_id.as_str())), "{row}");
    let (status, list) = store.call(0, Method::GET, &format!("/api/v1/orders/user/{}", ann.user_id), &admin, None, &[]).await;
    assert_eq!((status, list["items"][0]["order_id"].as_str()), (StatusCode::OK, Some(order.as_str())), "{list}");
    let (status, _) = store.call(0, Method::GET, &format!("/api/v1/users/{}/cart", ann.user_id), &admin, None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(store.order(0, &ann.token, &order).await["status"], "reserved", "the order is untouched");
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_is_paid_shipped_delivered_refunded_within_bounds_and_streamed() {
    let store = Store::start().await;
    let setup = store.product("lamp", 4000, 3).await;
    let ann = store.customer("ann@example.com").await;
    let admin = store.admin();
    let (status, placed) = store
        .call(0, Method::POST, "/api/v1/orders?wait=reservation", &ann.token, Some(json!({"lines": [{"product_id": "lamp", "quantity": 2}], "payment_method": "tok_visa"})),
            &[("idempotency-key", "lamp-1"), ("x-consistency-token", &format!("{setup},{}", ann.consistency))])
        .await;
    assert_eq!((status, placed["status"].as_str()), (StatusCode::CREATED, Some("reserved")), "{placed}");
    let order = placed["order_id"].as_str().unwrap().to_owned();

    // The live stream of the order, from the start.
    let events = store
        .client
        .get(format!("{}/api/v1/orders/{order}/events", store.servers[1].base))
        .bearer_auth(&ann.token)
        // The other replica: the stream's first read waits for the placement.
        .header("x-consistency-token", placed["consistency_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let mut events = SseReader::new(events);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let event = events.next(Duration::from_secs(10)).await.expect("history");
        seen.push(event.json()["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["pending", "reserved"]);

    store.charge_succeeded(&order, &ann.user_id, Money::new(8000, "EUR")).await; // STAND-IN
    let paid = events.next(Duration::from_secs(30)).await.expect("paid, live");
    assert_eq!((paid.id.as_deref(), paid.json()["status"].as_str()), (Some("2"), Some("paid")));
    store.order_until(&ann.token, &order, "paid", |row| row["status"] == "paid").await;

    let (status, body) = store.call(0, Method::PUT, &format!("/api/v1/orders/{order}/status"), &ann.token, Some(json!({"status": "shipped"})), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = store.call(0, Method::PUT, &format!("/api/v1/orders/{order}/status"), &admin, Some(json!({"status": "delivered"})), &[]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("invalid_status_transition")), "{body}");
    let (status, _) = store.call(0, Method::PUT, &format!("/api/v1/orders/{order}/status"), &admin, Some(json!({"status": "shipped"})), &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    store.order_until(&ann.token, &order, "shipped", |row| row["status"] == "shipped").await;
    let (status, body) = store.call(0, Method::POST, &format!("/api/v1/orders/{order}/cancel"), &ann.token, None, &[]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("not_cancellable")), "{body}");
    let (status, _) = store.call(0, Method::PUT, &format!("/api/v1/orders/{order}/status"), &admin, Some(json!({"status": "delivered"})), &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    store.order_until(&ann.token, &order, "delivered", |row| row["status"] == "delivered").await;

    // Refunds: never more than what is left.
    let refund = |amount: i64, key: &'static str| {
        let body = json!({"order_id": order, "amount": {"amount_minor": amount, "currency": "EUR"}, "reason": "damaged"});
        let (store, token) = (&store, ann.token.clone());
        async move { store.call(0, Method::POST, "/api/v1/payments/refund", &token, Some(body), &[("idempotency-key", key)]).await }
    };
    let (status, body) = refund(8001, "r-0").await;
    assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("amount")), "{body}");
    let (status, body) = refund(3000, "r-1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, payment) = store
        .call(0, Method::GET, &format!("/api/v1/payments/{order}"), &ann.token, None, &[("x-consistency-token", body["consistency_token"].as_str().unwrap())])
        .await;
    assert_eq!(status, StatusCode::OK, "{payment}");
    assert_eq!(payment["captured_minor"], 8000);
    assert_eq!(payment["refunds"][0]["refund_id"], body["id"]);
    let (status, body) = refund(5001, "r-2").await;
    assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("amount")), "3000 of 8000 is pending or refunded: {body}");

    // Seen by the admin's reads: the latest orders, top sellers and revenue.
    let (_, latest) = store.call(0, Method::GET, "/api/v1/orders/latest", &admin, None, &[]).await;
    assert_eq!(latest["items"][0]["order_id"], order.as_str(), "{latest}");
    let (_, sellers) = store.call(0, Method::GET, "/api/v1/top-sellers?window=day", &admin, None, &[]).await;
    assert_eq!(sellers["items"][0]["product_id"], "lamp", "{sellers}");
    let (status, revenue) = store.call(0, Method::GET, "/api/v1/stats/revenue?by=category", &admin, None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{revenue}");
    assert!(revenue["totals"][0]["amount_minor"].as_i64().is_some(), "{revenue}");
    store.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_order_releases_its_holds_and_a_card_number_never_reaches_any_topic() {
    let store = Store::with_vault(RealPipeline::start().await, Some(Arc::new(support::TestVault::default()))).await;
    let setup = store.product("chair", 9000, 2).await;
    let ann = store.customer("ann@example.com").await;
    let (status, placed) = store
        .call(0, Method::POST, "/api/v1/orders?wait=reservation", &ann.token, Some(place_body(&[("chair", 2)])),
            &[("idempotency-key", "chair-1"), ("x-consistency-token", &format!("{setup},{}", ann.consistency))])
        .await;
    assert_eq!((status, placed["status"].as_str()), (StatusCode::CREATED, Some("reserved")), "{placed}");
    let order = placed["order_id"].as_str().unwrap().to_owned();
    // Through the other replica, with the placement's token: its view has the order.
    let placed_token = placed["consistency_token"].as_str().unwrap().to_owned();
    let (status, body) = store.call(1, Method::POST, &format!("/api/v1/orders/{order}/cancel"), &ann.token, None, &[("x-consistency-token", &placed_token)]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    store.order_until(&ann.token, &order, "cancelled", |row| row["status"] == "cancelled").await;
    let started = Instant::now();
    loop {
        let rows = store.real.views.product_available(&Id::from("chair"));
        if rows.iter().map(|r| r.available).sum::<i64>() == 2 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "holds not released: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A payment method through the vault, used for an order; then every topic is read back:
    // the number is nowhere.
    let (status, added) = store
        .call(0, Method::POST, "/api/v1/payments/methods", &ann.token, Some(json!({"number": "4242 4242 4242 4242", "exp_month": 1, "exp_year": 2099, "cvc": "123"})), &[])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{added}");
    let (status, methods) = store
        .call(1, Method::GET, "/api/v1/payments/methods", &ann.token, None, &[("x-consistency-token", added["consistency_token"].as_str().unwrap())])
        .await;
    assert_eq!((status, methods["items"][0]["last4"].as_str()), (StatusCode::OK, Some("4242")), "{methods}");
    let token = methods["items"][0]["token"].as_str().unwrap().to_owned();
    let (status, placed) = store
        .call(0, Method::POST, "/api/v1/orders?wait=reservation", &ann.token, Some(json!({"lines": [{"product_id": "chair", "quantity": 1}], "payment_method": token})),
            &[("idempotency-key", "chair-2"), ("x-consistency-token", added["consistency_token"].as_str().unwrap())])
        .await;
    assert_eq!((status, placed["status"].as_str()), (StatusCode::CREATED, Some("reserved")), "{placed}");
    let charged = |store: &Store| store.read_topic(Topic::Payments).into_iter().any(|e| matches!(&e.event, Event::ChargeRequested(c) if c.token == token));
    let started = Instant::now();
    while !charged(&store) {
        assert!(started.elapsed() < Duration::from_secs(30), "no charge requested with the method's token");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for topic in Topic::ALL {
        for envelope in store.read_topic(topic) {
            let json = String::from_utf8(envelope.to_json()).unwrap();
            assert!(!json.contains("4242424242424242") && !json.contains("4242 4242"), "{topic:?}: {json}");
        }
    }
    store.stop().await;
}
