//! Carts, orders, payments, stats and the live views over HTTP, against views filled by
//! the test the way the saga's jobs fill them (an in-memory log; the pipeline's own tests and
//! `commerce.rs` run the real saga). What these prove is the serving side: who reaches what,
//! what is checked before an event is published and what that event holds.

mod support;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shopflow_events::types::{OrderStatus, Role};
use shopflow_events::{Envelope, Event, Id, Money};
use shopflow_serving::ServingConfig;
use shopflow_views::{
    AddressRow, CartRow, LatestOrderRow, PaymentMethodRow, RevenueRow, StockAvailableRow, StockRow, TopSellerRow, ViewUpdate,
};
use support::commerce::*;
use support::*;

/// A test app whose appended events are applied like the pipeline would (so keyed writes
/// settle) and kept for inspection.
struct Shop {
    app: TestApp,
    events: Arc<Mutex<Vec<Envelope>>>,
    config: ServingConfig,
}

impl Shop {
    async fn start(configure: impl FnOnce(&mut ServingConfig) + Clone, vault: Option<Arc<TestVault>>) -> Shop {
        let mut config = test_config();
        configure.clone()(&mut config);
        let mut app = match vault {
            Some(vault) => spawn_app_with_vault(configure, vault).await,
            None => spawn_app_with(configure).await,
        };
        let mut appended = std::mem::replace(&mut app.appended, tokio::sync::mpsc::unbounded_channel().1);
        let events = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn({
            let (views, events) = (app.views.clone(), events.clone());
            async move {
                let mut covered = HashMap::new();
                while let Some(record) = appended.recv().await {
                    events.lock().push(record.envelope.clone());
                    apply_like_pipeline(&views, &record, &mut covered);
                }
            }
        });
        // Products of the tests: two in EUR, one in USD.
        app.views.apply([
            ViewUpdate::Product { key: "p-1".into(), row: Some(product_row("p-1", "cat-a", "b-1")) },
            ViewUpdate::Product { key: "p-2".into(), row: Some(ProductRowExt::priced(product_row("p-2", "cat-b", "b-1"), 500, "EUR")) },
            ViewUpdate::Product { key: "p-usd".into(), row: Some(ProductRowExt::priced(product_row("p-usd", "cat-a", "b-1"), 700, "USD")) },
        ]);
        Shop { app, events, config }
    }

    fn token(&self, user: &str) -> String {
        token_for(&self.config, user, Role::Customer)
    }

    fn admin(&self) -> String {
        admin_token(&self.config)
    }

    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>, key: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.app.client.request(method, self.app.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None, None).await
    }

    fn events_of(&self, type_name: &str) -> Vec<Event> {
        self.events.lock().iter().filter(|e| e.event.type_name() == type_name).map(|e| e.event.clone()).collect()
    }

    fn add_address(&self, user: &str, address: &str, is_default: bool) {
        let row = AddressRow {
            user_id: user.into(),
            address_id: address.into(),
            street: "1 Main St".into(),
            city: "Town".into(),
            state: String::new(),
            country: "NL".into(),
            zip: String::new(),
            is_default,
            created_at: 1,
        };
        self.app.views.apply([ViewUpdate::Address { key: (user.into(), address.into()), row: Some(row) }]);
    }
}

trait ProductRowExt {
    fn priced(self, amount: i64, currency: &str) -> Self;
}

impl ProductRowExt for shopflow_views::ProductRow {
    fn priced(mut self, amount: i64, currency: &str) -> Self {
        self.price = Money::new(amount, currency);
        self
    }
}

fn available(product: &str, warehouse: &str, on_hand: i64, held: i64) -> ViewUpdate {
    ViewUpdate::StockAvailable {
        key: (product.into(), warehouse.into()),
        row: Some(StockAvailableRow { product_id: product.into(), warehouse_id: warehouse.into(), on_hand, held, available: on_hand - held }),
    }
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
}

#[tokio::test]
async fn carts_are_priced_from_the_catalog_annotated_with_availability_and_written_as_events() {
    let shop = Shop::start(|_| {}, None).await;
    let ann = shop.token("ann");
    let views = &shop.app.views;
    let line = |product: &str, quantity: u32| ViewUpdate::Cart {
        key: ("ann".into(), product.into()),
        row: Some(CartRow { user_id: "ann".into(), product_id: product.into(), quantity, updated_at: 5 }),
    };
    views.apply([line("p-1", 2), line("p-2", 5), line("gone", 1), available("p-1", "w-1", 4, 1), available("p-2", "w-1", 4, 0)]);

    let (status, cart) = shop.get("/api/v1/cart", &ann).await;
    assert_eq!(status, StatusCode::OK, "{cart}");
    let lines = cart["lines"].as_array().unwrap();
    let by_id = |id: &str| lines.iter().find(|l| l["product_id"] == id).unwrap().clone();
    assert_eq!(by_id("p-1")["unit_price"], json!({"amount_minor": 1999, "currency": "EUR"}));
    assert_eq!(by_id("p-1")["line_total"]["amount_minor"], 3998);
    assert_eq!((by_id("p-1")["available"].as_i64(), by_id("p-1")["in_stock"].as_bool()), (Some(3), Some(true)));
    assert_eq!((by_id("p-2")["available"].as_i64(), by_id("p-2")["in_stock"].as_bool()), (Some(4), Some(false)));
    assert!(by_id("gone")["unit_price"].is_null() && by_id("gone")["in_stock"] == false, "{cart}");
    assert_eq!(cart["totals"], json!([{"amount_minor": 3998 + 2500, "currency": "EUR"}]));
    assert_eq!(cart["units"], 8);

    // Today's price: a price change shows at once.
    let mut cheaper = product_row("p-1", "cat-a", "b-1");
    cheaper.price = Money::new(1000, "EUR");
    views.apply([ViewUpdate::Product { key: "p-1".into(), row: Some(cheaper) }]);
    let (_, cart) = shop.get("/api/v1/cart", &ann).await;
    assert_eq!(cart["totals"][0]["amount_minor"], 2000 + 2500);

    // Writes: 202 with a token, one event each, keyed by the caller.
    let (status, body) = shop.call(Method::POST, "/api/v1/cart/add", &ann, Some(json!({"product_id": "nope", "quantity": 1})), None).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(body["error"]["field"], "product_id");
    let (status, body) = shop.call(Method::POST, "/api/v1/cart/add", &ann, Some(json!({"product_id": "p-1", "quantity": 0})), None).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let (status, body) = shop.call(Method::POST, "/api/v1/cart/add", &ann, Some(json!({"product_id": "p-1", "quantity": 3})), Some("k1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body["consistency_token"].as_str().unwrap().starts_with("carts:"), "{body}");
    let (status, again) = shop.call(Method::POST, "/api/v1/cart/add", &ann, Some(json!({"product_id": "p-1", "quantity": 3})), Some("k1")).await;
    assert_eq!((status, &again["event_id"]), (StatusCode::ACCEPTED, &body["event_id"]), "a repeat is the first answer");
    let (status, _) = shop.call(Method::PUT, "/api/v1/cart/items/p-2", &ann, Some(json!({"quantity": 7})), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = shop.call(Method::PUT, "/api/v1/cart/items/gone", &ann, Some(json!({"quantity": 0})), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "removing a product that left the catalog");
    let (status, body) = shop.call(Method::PUT, "/api/v1/cart/items/gone", &ann, Some(json!({"quantity": 2})), None).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let (status, _) = shop.call(Method::DELETE, "/api/v1/cart/items/p-1", &ann, None, None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = shop.call(Method::DELETE, "/api/v1/cart", &ann, None, None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let added = shop.events_of("cart.item_added");
    assert_eq!(added.len(), 1, "refused adds publish nothing and the repeat is answered, not appended: {added:?}");
    assert!(matches!(&added[0], Event::CartItemAdded(e) if e.user_id.as_str() == "ann" && e.quantity == 3));
    let set: Vec<(String, u32)> = shop
        .events_of("cart.item_set")
        .into_iter()
        .map(|e| match e {
            Event::CartQuantitySet(e) => (e.product_id.to_string(), e.quantity),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(set, vec![("p-2".into(), 7), ("gone".into(), 0), ("p-1".into(), 0)]);
    assert_eq!(shop.events_of("cart.cleared").len(), 1);

    // Another customer's cart is a 404; an admin reads it.
    let (status, body) = shop.get("/api/v1/users/ann/cart", &shop.token("bob")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = shop.get("/api/v1/users/ann/cart", &shop.admin()).await;
    assert_eq!((status, body["lines"].as_array().map(Vec::len)), (StatusCode::OK, Some(3)), "{body}");
    shop.app.stop().await;
}

#[tokio::test]
async fn another_users_order_cart_and_payment_are_404_like_a_missing_id() {
    let shop = Shop::start(|_| {}, None).await;
    let order = order_row("o-ann", "ann", &[("p-1", 1, 1999)], &[OrderStatus::Pending, OrderStatus::Reserved, OrderStatus::Paid]);
    put_payment(&shop.app.views, payment_row(&order, 0));
    put_order(&shop.app.views, order);
    let bob = shop.token("bob");
    let ann = shop.token("ann");

    for (method, path, body) in [
        (Method::GET, "/api/v1/orders/{}", None),
        (Method::GET, "/api/v1/payments/{}", None),
        (Method::POST, "/api/v1/orders/{}/cancel", None),
        (Method::GET, "/api/v1/orders/{}/events", None),
        (Method::POST, "/api/v1/payments/refund", Some(json!({"order_id": "{}", "reason": "x"}))),
        (Method::POST, "/api/v1/payments/process", Some(json!({"order_id": "{}", "payment_method": "tok_visa"}))),
    ] {
        let mut answers = Vec::new();
        for id in ["o-ann", "o-missing"] {
            let path = path.replace("{}", id);
            let body = body.as_ref().map(|b| serde_json::from_str(&b.to_string().replace("{}", id)).unwrap());
            let (status, body) = shop.call(method.clone(), &path, &bob, body, None).await;
            assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
            answers.push(body["error"]["message"].as_str().unwrap().replace(id, "ID"));
        }
        assert_eq!(answers[0], answers[1], "{method} {path}: another's and a missing id answer alike");
    }
    for path in ["/api/v1/orders/user/ann", "/api/v1/users/ann/cart"] {
        let (status, body) = shop.get(path, &bob).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    assert!(shop.events.lock().is_empty(), "nothing was published for bob");

    // The owner and an admin reach all of it.
    for token in [&ann, &shop.admin()] {
        for path in ["/api/v1/orders/o-ann", "/api/v1/payments/o-ann", "/api/v1/orders/user/ann", "/api/v1/users/ann/cart"] {
            let (status, body) = shop.get(path, token).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
        }
    }
    let (_, list) = shop.get("/api/v1/orders/o-ann", &ann).await;
    assert_eq!(list["status"], "paid");
    shop.app.stop().await;
}

#[tokio::test]
async fn cancel_status_changes_and_refunds_follow_what_the_order_view_says() {
    let shop = Shop::start(|_| {}, None).await;
    let views = &shop.app.views;
    use OrderStatus::*;
    put_order(views, order_row("o-paid", "ann", &[("p-1", 2, 2500)], &[Pending, Reserved, Paid]));
    put_order(views, order_row("o-reserved", "ann", &[("p-1", 1, 2500)], &[Pending, Reserved]));
    put_order(views, order_row("o-shipped", "ann", &[("p-1", 1, 2500)], &[Pending, Reserved, Paid, Shipped]));
    let ann = shop.token("ann");
    let admin = shop.admin();

    // Status: admins only, shipped from paid, delivered from shipped.
    let (status, body) = shop.call(Method::PUT, "/api/v1/orders/o-paid/status", &ann, Some(json!({"status": "shipped"})), None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = shop.call(Method::PUT, "/api/v1/orders/o-paid/status", &admin, Some(json!({"status": "delivered"})), None).await;
    assert_error(status, &body, StatusCode::CONFLICT, "invalid_status_transition");
    let (status, body) = shop.call(Method::PUT, "/api/v1/orders/o-paid/status", &admin, Some(json!({"status": "cancelled"})), None).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let (status, body) = shop.call(Method::PUT, "/api/v1/orders/o-paid/status", &admin, Some(json!({"status": "shipped"})), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, _) = shop.call(Method::PUT, "/api/v1/orders/o-shipped/status", &admin, Some(json!({"status": "delivered"})), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Cancel: before shipping only.
    let (status, body) = shop.call(Method::POST, "/api/v1/orders/o-shipped/cancel", &ann, None, None).await;
    assert_error(status, &body, StatusCode::CONFLICT, "not_cancellable");
    let (status, body) = shop.call(Method::POST, "/api/v1/orders/o-reserved/cancel", &ann, None, None).await;
    assert_eq!((status, body["id"].as_str()), (StatusCode::ACCEPTED, Some("o-reserved")), "{body}");

    // Refunds: bounded by captured minus refunded (and pending); not before payment.
    let paid = views.orders.get(&"o-paid".into()).unwrap();
    put_payment(views, payment_row(&paid, 1000));
    let refund = |body: Value| shop.call(Method::POST, "/api/v1/payments/refund", &ann, Some(body), None);
    let (status, body) = refund(json!({"order_id": "o-paid", "amount": {"amount_minor": 4001, "currency": "EUR"}, "reason": "broken"})).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(body["error"]["field"], "amount");
    let (status, body) = refund(json!({"order_id": "o-paid", "amount": {"amount_minor": 100, "currency": "USD"}})).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let (status, body) = refund(json!({"order_id": "o-paid", "amount": {"amount_minor": 1500, "currency": "EUR"}, "reason": "broken"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let refund_id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["event_id"].as_str(), Some(refund_id.as_str()), "without a key the refund id is the event id");
    let (status, body) = shop.call(Method::POST, "/api/v1/payments/refund", &shop.admin(), Some(json!({"order_id": "o-paid"})), Some("r-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "admins refund any order; default: what is left: {body}");
    let (status, body) = refund(json!({"order_id": "o-reserved"})).await;
    assert_error(status, &body, StatusCode::CONFLICT, "not_refundable");

    tokio::time::sleep(Duration::from_millis(50)).await;
    let refunds: Vec<(String, i64)> = shop
        .events_of("order.refund_requested")
        .into_iter()
        .map(|e| match e {
            Event::RefundRequested(e) => (e.refund_id.to_string(), e.amount.amount_minor),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(refunds, vec![(refund_id, 1500), (refunds[1].0.clone(), 4000)]);
    let changes: Vec<OrderStatus> = shop
        .events_of("order.status_changed")
        .into_iter()
        .map(|e| match e {
            Event::OrderStatusChanged(e) => e.status,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(changes, vec![Shipped, Delivered]);
    assert!(matches!(&shop.events_of("order.cancelled")[..], [Event::OrderCancelled(e)] if e.reason == "customer"));
    shop.app.stop().await;
}

#[tokio::test]
async fn placing_an_order_needs_a_key_known_products_one_currency_and_the_callers_address() {
    let shop = Shop::start(|_| {}, None).await;
    shop.add_address("ann", "addr-1", true);
    shop.add_address("bob", "addr-bob", true);
    let ann = shop.token("ann");
    let place = |body: Value, key: Option<&'static str>| shop.call(Method::POST, "/api/v1/orders", &ann, Some(body), key);
    let line = |product: &str, quantity: u32| json!({"product_id": product, "quantity": quantity});

    let (status, body) = place(json!({"lines": [line("p-1", 1)]}), None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "idempotency_key_required");
    for (body, field) in [
        (json!({"lines": [line("nope", 1)]}), "lines[0].product_id"),
        (json!({"lines": [line("p-1", 1), line("p-2", 0)]}), "lines[1].quantity"),
        (json!({"lines": [line("p-1", 10_001)]}), "lines[0].quantity"),
        (json!({"lines": [line("p-1", 1), line("p-usd", 1)]}), "lines[1].product_id"),
        (json!({"lines": [line("p-1", 1)], "address_id": "addr-bob"}), "address_id"),
        (json!({"lines": [line("p-1", 1)], "payment_method": "tok_someone_elses"}), "payment_method"),
        (json!({"lines": []}), "lines"),
        (json!({"from_cart": true}), "from_cart"),
    ] {
        let (status, answer) = place(body.clone(), Some("bad")).await;
        assert_error(status, &answer, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(answer["error"]["field"], field, "{body}");
    }

    let body = json!({"lines": [line("p-1", 2), line("p-2", 1)], "payment_method": "tok_visa"});
    let (status, placed) = place(body.clone(), Some("order-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{placed}");
    assert_eq!(placed["order_id"], placed["event_id"], "the order id is the keyed event id");
    assert_eq!(placed["status"], "pending");
    let (status, again) = place(body.clone(), Some("order-1")).await;
    assert_eq!((status, &again["order_id"]), (StatusCode::ACCEPTED, &placed["order_id"]));
    let (status, answer) = place(json!({"lines": [line("p-1", 3)]}), Some("order-1")).await;
    assert_error(status, &answer, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let placed_events = shop.events_of("order.placed");
    assert_eq!(placed_events.len(), 1, "a repeat is the same event");
    let Event::OrderPlaced(event) = &placed_events[0] else { unreachable!() };
    assert_eq!(event.order_id.as_str(), placed["order_id"].as_str().unwrap());
    assert_eq!((event.address_id.as_str(), event.payment_token.as_str(), event.idempotency_key.as_str()), ("addr-1", "tok_visa", "order-1"));
    let prices: Vec<(String, u32, i64)> = event.lines.iter().map(|l| (l.product_id.to_string(), l.quantity, l.unit_price.amount_minor)).collect();
    assert_eq!(prices, vec![("p-1".into(), 2, 1999), ("p-2".into(), 1, 500)], "captured catalog prices");

    // `?wait=reservation` answers 201 once the view has the decision.
    let waiting = tokio::spawn({
        let (client, url, token) = (shop.app.client.clone(), shop.app.url("/api/v1/orders?wait=reservation"), ann.clone());
        async move {
            let response = client
                .post(url)
                .bearer_auth(token)
                .header("idempotency-key", "order-2")
                .json(&json!({"lines": [{"product_id": "p-1", "quantity": 1}]}))
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    });
    let order_id = loop {
        let placed = shop.events_of("order.placed");
        if let Some(Event::OrderPlaced(e)) = placed.get(1) {
            break e.order_id.to_string();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "waits for the decision");
    let mut row = order_row(&order_id, "ann", &[("p-1", 1, 1999)], &[OrderStatus::Pending, OrderStatus::Rejected]);
    row.reason = "out_of_stock:p-1".into();
    put_order(&shop.app.views, row);
    let (status, decided) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{decided}");
    assert_eq!((decided["status"].as_str(), decided["reason"].as_str()), (Some("rejected"), Some("out_of_stock:p-1")));
    shop.app.stop().await;

    // Without test mode the gateway's test tokens are not payment methods; the bound of a
    // wait answers 202 while the order is pending.
    let shop = Shop::start(|c| {
        c.commerce.payment_test_mode = false;
        c.commerce.order_wait_max = Duration::from_millis(100);
    }, None).await;
    shop.add_address("ann", "addr-1", true);
    let ann = shop.token("ann");
    let (status, body) = shop.call(Method::POST, "/api/v1/orders", &ann, Some(json!({"lines": [line("p-1", 1)], "payment_method": "tok_visa"})), Some("k")).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let (status, body) = shop.call(Method::POST, "/api/v1/orders?wait=decision", &ann, Some(json!({"lines": [line("p-1", 1)]})), Some("k2")).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::ACCEPTED, Some("pending")), "{body}");
    shop.app.stop().await;
}

#[tokio::test]
async fn payment_methods_are_tokenized_and_the_number_never_reaches_the_log_or_an_answer() {
    const NUMBER: &str = "4242424242424242";
    let shop = Shop::start(|_| {}, None).await;
    let ann = shop.token("ann");
    let card = json!({"number": NUMBER, "exp_month": 12, "exp_year": 2099, "cvc": "123"});
    let (status, body) = shop.call(Method::POST, "/api/v1/payments/methods", &ann, Some(card.clone()), None).await;
    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE, "payments_unavailable");
    shop.app.stop().await;

    let vault = Arc::new(TestVault::default());
    let shop = Shop::start(|_| {}, Some(vault.clone())).await;
    let mut answers = Vec::new();
    for (body, status, code) in [
        (json!({"number": 4242424242424242u64, "exp_month": 12, "exp_year": 2099, "cvc": "123"}), 422, "invalid_body"),
        (json!({"number": "4242424242424241", "exp_month": 12, "exp_year": 2099, "cvc": "123"}), 422, "validation_failed"),
        (json!({"number": NUMBER, "exp_month": 13, "exp_year": 2099, "cvc": "123"}), 422, "validation_failed"),
        (json!({"number": NUMBER, "exp_month": 1, "exp_year": 2001, "cvc": "123"}), 422, "validation_failed"),
        (json!({"number": NUMBER, "exp_month": 1, "exp_year": 2099, "cvc": "12"}), 422, "validation_failed"),
        (json!({"number": NUMBER, "exp_month": 1, "exp_year": 2099, "cvc": "123", "extra": NUMBER}), 422, "invalid_body"),
        (json!({"number": "4000 0000 0000 0002", "exp_month": 1, "exp_year": 2099, "cvc": "123"}), 422, "card_refused"),
    ] {
        let (got, answer) = shop.call(Method::POST, "/api/v1/payments/methods", &ann, Some(body), None).await;
        assert_error(got, &answer, StatusCode::from_u16(status).unwrap(), code);
        answers.push(answer.to_string());
    }
    let (status, body) = shop.call(Method::POST, "/api/v1/payments/methods", &ann, Some(card.clone()), Some("card-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    answers.push(body.to_string());
    let (status, again) = shop.call(Method::POST, "/api/v1/payments/methods", &ann, Some(card.clone()), Some("card-1")).await;
    assert_eq!((status, &again["event_id"]), (StatusCode::ACCEPTED, &body["event_id"]));
    assert_eq!(vault.calls.load(Ordering::SeqCst), 2, "the declined card and the first keyed request; the repeat is answered before the vault");
    for answer in &answers {
        assert!(!answer.contains("424242424242") && !answer.contains("000000000000"), "an answer holds the number: {answer}");
    }

    tokio::time::sleep(Duration::from_millis(50)).await;
    let everything: Vec<String> = shop.events.lock().iter().map(|e| String::from_utf8(e.to_json()).unwrap()).collect();
    assert_eq!(everything.len(), 1, "{everything:?}");
    for record in &everything {
        assert!(!record.contains("42424242") && !record.contains("\"123\""), "{record}");
    }
    let Event::PaymentMethodTokenized(method) = &shop.events_of("payment.method_tokenized")[0] else { unreachable!() };
    assert_eq!((method.last4.as_str(), method.card_brand.as_str(), method.exp_month, method.exp_year), ("4242", "visa", 12, 2099));

    // Listed from the view (which the saga's job fills from that event), the caller's only.
    let row = PaymentMethodRow {
        user_id: "ann".into(),
        token: method.token.clone(),
        last4: method.last4.clone(),
        card_brand: method.card_brand.clone(),
        exp_month: 12,
        exp_year: 2099,
        created_at: 7,
    };
    let key = (Id::from("ann"), Id::from(method.token.as_str()));
    shop.app.views.apply([ViewUpdate::PaymentMethod { key, row: Some(row) }]);
    let (_, listed) = shop.get("/api/v1/payments/methods", &ann).await;
    assert_eq!(listed["items"][0]["token"], method.token.as_str());
    assert_eq!(listed["items"][0]["last4"], "4242");
    let (_, bobs) = shop.get("/api/v1/payments/methods", &shop.token("bob")).await;
    assert_eq!(bobs["items"], json!([]));

    // Paying a reserved order placed without a method, with one of the caller's.
    put_order(&shop.app.views, {
        let mut row = order_row("o-1", "ann", &[("p-1", 1, 1999)], &[OrderStatus::Pending, OrderStatus::Reserved]);
        row.payment_token = String::new();
        row
    });
    let process = |method: &str| {
        shop.call(Method::POST, "/api/v1/payments/process", &ann, Some(json!({"order_id": "o-1", "payment_method": method})), None)
    };
    let (status, body) = process("tok_not_mine").await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let (status, body) = process(&method.token).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    put_order(&shop.app.views, order_row("o-1", "ann", &[("p-1", 1, 1999)], &[OrderStatus::Pending, OrderStatus::Reserved, OrderStatus::Paid]));
    let (status, body) = process(&method.token).await;
    assert_error(status, &body, StatusCode::CONFLICT, "not_payable");
    shop.app.stop().await;
}

#[tokio::test]
async fn top_sellers_windows_revenue_latest_orders_and_availability() {
    let shop = Shop::start(|_| {}, None).await;
    let views = &shop.app.views;
    let seller = |product: &str, units: i64| Some(TopSellerRow { product_id: product.into(), category_id: Some("cat-a".into()), units });
    views.apply([
        ViewUpdate::TopSeller { key: "p-1".into(), row: seller("p-1", 50) },
        ViewUpdate::TopSeller { key: "p-2".into(), row: seller("p-2", 40) },
        ViewUpdate::TopSellerHour { key: "p-2".into(), row: seller("p-2", 3) },
        ViewUpdate::TopSellerDay { key: "p-1".into(), row: seller("p-1", 9) },
        ViewUpdate::TopSellerDay { key: "p-2".into(), row: seller("p-2", 12) },
    ]);
    let ids = |body: &Value| -> Vec<String> { body["items"].as_array().unwrap().iter().map(|r| r["product_id"].as_str().unwrap().to_owned()).collect() };
    let public = |path: &'static str| {
        let request = shop.app.client.get(shop.app.url(path));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(ids(&public("/api/v1/top-sellers").await), ["p-1", "p-2"]);
    assert_eq!(ids(&public("/api/v1/top-sellers?window=hour").await), ["p-2"]);
    assert_eq!(ids(&public("/api/v1/top-sellers?window=day&limit=1").await), ["p-2"]);
    let bad = shop.app.client.get(shop.app.url("/api/v1/top-sellers?window=week")).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let revenue = |day: &str, category: Option<&str>, currency: &str, amount: i64| {
        let row = RevenueRow { day: day.into(), category_id: category.map(Id::from), currency: currency.into(), amount_minor: amount };
        ViewUpdate::Revenue { key: (day.into(), category.unwrap_or("-").into(), currency.into()), row: Some(row) }
    };
    views.apply([
        revenue("2026-12-01", Some("cat-a"), "EUR", 1000),
        revenue("2026-12-01", Some("cat-b"), "EUR", 500),
        revenue("2026-12-02", Some("cat-a"), "EUR", -200),
        revenue("2026-12-03", None, "USD", 700),
    ]);
    let admin = shop.admin();
    let (status, by_day) = shop.get("/api/v1/stats/revenue?from=2026-12-01&to=2026-12-02", &admin).await;
    assert_eq!(status, StatusCode::OK, "{by_day}");
    assert_eq!(
        by_day["items"],
        json!([
            {"day": "2026-12-01", "revenue": {"amount_minor": 1500, "currency": "EUR"}},
            {"day": "2026-12-02", "revenue": {"amount_minor": -200, "currency": "EUR"}},
        ])
    );
    assert_eq!(by_day["totals"], json!([{"amount_minor": 1300, "currency": "EUR"}]));
    let (_, by_category) = shop.get("/api/v1/stats/revenue?by=category", &admin).await;
    assert_eq!(
        by_category["items"],
        json!([
            {"category_id": null, "revenue": {"amount_minor": 700, "currency": "USD"}},
            {"category_id": "cat-a", "revenue": {"amount_minor": 800, "currency": "EUR"}},
            {"category_id": "cat-b", "revenue": {"amount_minor": 500, "currency": "EUR"}},
        ])
    );
    let (status, body) = shop.get("/api/v1/stats/revenue?from=2026-13-01", &admin).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_query");
    let (status, body) = shop.get("/api/v1/stats/revenue", &shop.token("ann")).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");

    let latest = |order: &str, product: &str, placed_at: i64, quantity: u32| {
        let row = LatestOrderRow {
            order_id: order.into(),
            product_id: product.into(),
            placed_at,
            status: OrderStatus::Paid,
            quantity,
            unit_price: Money::new(100, "EUR"),
            user_id: "ann".into(),
            user_name: Some("Ann".into()),
            user_email: Some("ann@example.com".into()),
            product_name: Some(format!("product {product}")),
            brand_name: Some("Acme".into()),
            category_name: Some("Cat".into()),
            supplier_name: None,
        };
        ViewUpdate::LatestOrder { key: (order.into(), product.into()), row: Some(row) }
    };
    views.apply([latest("o-old", "p-1", 10, 1), latest("o-new", "p-1", 20, 2), latest("o-new", "p-2", 20, 3)]);
    let (status, body) = shop.get("/api/v1/orders/latest", &admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let orders: Vec<(&str, usize, i64)> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["order_id"].as_str().unwrap(), o["lines"].as_array().unwrap().len(), o["total"]["amount_minor"].as_i64().unwrap()))
        .collect();
    assert_eq!(orders, vec![("o-new", 2, 500), ("o-old", 1, 100)]);
    assert_eq!(body["items"][0]["user_email"], "ann@example.com");
    let (status, body) = shop.get("/api/v1/orders/latest", &shop.token("ann")).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");

    // Availability: the stock read says what is held and what a new order can get.
    views.apply([
        ViewUpdate::Stock { key: ("p-1".into(), "w-1".into()), row: Some(StockRow { product_id: "p-1".into(), warehouse_id: "w-1".into(), warehouse_name: None, quantity: 10 }) },
        ViewUpdate::Stock { key: ("p-1".into(), "w-2".into()), row: Some(StockRow { product_id: "p-1".into(), warehouse_id: "w-2".into(), warehouse_name: None, quantity: 5 }) },
        available("p-1", "w-1", 10, 7),
    ]);
    let stock = public("/api/v1/products/p-1/stock").await;
    assert_eq!((stock["total"].as_i64(), stock["held"].as_i64(), stock["available"].as_i64()), (Some(15), Some(7), Some(8)), "{stock}");
    shop.app.stop().await;
}

async fn stream(shop: &Shop, path: &str, token: Option<&str>, last_event_id: Option<&str>) -> reqwest::Response {
    let mut request = shop.app.client.get(shop.app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn the_order_stream_sends_each_new_status_and_resumes_after_last_event_id() {
    let shop = Shop::start(|_| {}, None).await;
    use OrderStatus::*;
    put_order(&shop.app.views, order_row("o-1", "ann", &[("p-1", 1, 1999)], &[Pending]));
    let ann = shop.token("ann");
    let wait = Duration::from_secs(5);

    let response = stream(&shop, "/api/v1/orders/o-1/events", Some(&ann), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut events = SseReader::new(response);
    let first = events.next(wait).await.expect("the history so far");
    assert_eq!((first.id.as_deref(), first.event.as_deref(), first.json()["status"].as_str()), (Some("0"), Some("status"), Some("pending")));
    put_order(&shop.app.views, order_row("o-1", "ann", &[("p-1", 1, 1999)], &[Pending, Reserved]));
    let second = events.next(wait).await.expect("a new status");
    assert_eq!((second.id.as_deref(), second.json()["status"].as_str()), (Some("1"), Some("reserved")));
    drop(events);

    // Missed while away: sent on resume, and nothing before it.
    put_order(&shop.app.views, order_row("o-1", "ann", &[("p-1", 1, 1999)], &[Pending, Reserved, Paid]));
    put_order(&shop.app.views, order_row("o-1", "ann", &[("p-1", 1, 1999)], &[Pending, Reserved, Paid, Shipped]));
    let mut events = SseReader::new(stream(&shop, "/api/v1/orders/o-1/events", Some(&ann), Some("1")).await);
    let resumed: Vec<(Option<String>, String)> = vec![events.next(wait).await.unwrap(), events.next(wait).await.unwrap()]
        .into_iter()
        .map(|e| (e.id.clone(), e.json()["status"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(resumed, vec![(Some("2".into()), "paid".into()), (Some("3".into()), "shipped".into())]);
    assert!(events.next(Duration::from_millis(200)).await.is_none(), "nothing more");

    let bob = stream(&shop, "/api/v1/orders/o-1/events", Some(&shop.token("bob")), None).await;
    assert_eq!(bob.status(), StatusCode::NOT_FOUND);
    let anonymous = stream(&shop, "/api/v1/orders/o-1/events", None, None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    shop.app.stop().await;
}

#[tokio::test]
async fn the_top_sellers_stream_pushes_ranking_changes_and_the_cap_refuses_more_streams() {
    let shop = Shop::start(|c| c.commerce.max_live_streams = 2, None).await;
    let views = &shop.app.views;
    let seller = |product: &str, units: i64| ViewUpdate::TopSellerHour {
        key: product.into(),
        row: Some(TopSellerRow { product_id: product.into(), category_id: Some("cat-a".into()), units }),
    };
    views.apply([seller("p-1", 5), seller("p-2", 3)]);
    let wait = Duration::from_secs(5);
    let path = "/api/v1/top-sellers/stream?window=hour&limit=2";
    let mut events = SseReader::new(stream(&shop, path, None, None).await);
    let first = events.next(wait).await.expect("the current ranking");
    let ids = |e: &SseEvent| -> Vec<String> { e.json()["items"].as_array().unwrap().iter().map(|r| r["product_id"].as_str().unwrap().to_owned()).collect() };
    assert_eq!((first.event.as_deref(), ids(&first)), (Some("ranking"), vec!["p-1".to_owned(), "p-2".to_owned()]));
    assert_eq!(first.json()["window"], "hour");

    // A change of another window is not this ranking's; a change of this one is pushed.
    views.apply([ViewUpdate::TopSeller { key: "p-9".into(), row: Some(TopSellerRow { product_id: "p-9".into(), category_id: None, units: 1 }) }]);
    views.apply([seller("p-2", 8)]);
    let second = events.next(wait).await.expect("the new ranking");
    assert_eq!(ids(&second), vec!["p-2".to_owned(), "p-1".to_owned()]);
    let version: u64 = second.id.as_deref().unwrap().parse().unwrap();
    assert!(version > first.id.as_deref().unwrap().parse::<u64>().unwrap());

    // Resuming at the current version sends nothing until the ranking changes again.
    let mut resumed = SseReader::new(stream(&shop, path, None, Some(&version.to_string())).await);
    assert!(resumed.next(Duration::from_millis(200)).await.is_none(), "up to date");
    let refused = stream(&shop, path, None, None).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams");
    views.apply([seller("p-1", 20)]);
    assert_eq!(ids(&resumed.next(wait).await.unwrap()), vec!["p-1".to_owned(), "p-2".to_owned()]);

    drop(resumed);
    let reopened = async {
        loop {
            let response = stream(&shop, path, None, None).await;
            if response.status() == StatusCode::OK {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(wait, reopened).await.expect("a closed stream frees its place");
    shop.app.stop().await;
}
