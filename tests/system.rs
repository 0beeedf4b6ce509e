//! Whole-system tests: the real binary, real HTTP on real ports, the embedded log and a real
//! Kafka-protocol broker over the network.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shopflow_events::DeadLetter;
use shopflow_ingest::{OutRecord, Position};
use support::*;

async fn create_read_list(base: &str) {
    let (status, created) = post(base, "/api/v1/products", &product_body("Tea Pot", "kitchen")).await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap();
    let token = created["consistency_token"].as_str().unwrap();

    let product = get_consistent(base, &format!("/api/v1/products/{id}"), token).await;
    assert_eq!(product["name"], "Tea Pot");
    assert_eq!(product["price"]["amount_minor"], 1250);

    let (status, receipt) =
        post(base, "/api/v1/stock/receipts", &json!({"product_id": id, "warehouse_id": "wh-ber", "quantity": 7})).await;
    assert_eq!(status, 202, "{receipt}");
    let stock = get_consistent(base, &format!("/api/v1/products/{id}/stock"), receipt["consistency_token"].as_str().unwrap()).await;
    assert_eq!(stock["total"], 7);

    let listed = all_products(base, token).await;
    assert!(listed.iter().any(|p| p["product_id"] == id), "the new product is listed");
    let kitchen = get_consistent(base, "/api/v1/products?category=kitchen&limit=200", token).await;
    assert!(kitchen["items"].as_array().unwrap().iter().all(|p| p["category_id"] == "kitchen"));
}

#[tokio::test(flavor = "multi_thread")]
async fn create_then_strong_read_and_list_on_the_embedded_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let app = Shopflow::start_http(&["up", "--data-dir", data.to_str().unwrap(), "--demo-products", "20"], dir.path()).await;
    create_read_list(&app.base).await;
    app.terminate();
}

#[tokio::test(flavor = "multi_thread")]
async fn create_then_strong_read_and_list_on_kafka() {
    let broker = kafka_broker();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let namespace = unique_namespace();
    let app = Shopflow::start_http(
        &["up", "--kafka", broker.addr(), "--namespace", &namespace, "--data-dir", data.to_str().unwrap(), "--demo-products", "20", "--workers", "2"],
        dir.path(),
    )
    .await;
    create_read_list(&app.base).await;
    app.terminate();
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_requests_get_4xx_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let app = Shopflow::start_http(&["up", "--data-dir", data.to_str().unwrap(), "--demo-products", "0"], dir.path()).await;
    let client = client();
    let base = &app.base;
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (client.post(format!("{base}/api/v1/products")).header("content-type", "application/json").body("{not json"), 400, "malformed_json"),
        (client.post(format!("{base}/api/v1/products")).json(&json!({"name": "x", "price": {"amount_minor": -5, "currency": "EUR"}, "category_id": "c", "brand_id": "b", "supplier_id": "s"})), 422, "validation_failed"),
        (client.post(format!("{base}/api/v1/stock/receipts")).json(&json!({"product_id": "p", "warehouse_id": "w", "quantity": 0})), 422, "validation_failed"),
        (client.get(format!("{base}/api/v1/products/missing-product")), 404, "not_found"),
        (client.get(format!("{base}/api/v1/products/bad%20id")), 400, "invalid_id"),
        (client.get(format!("{base}/api/v1/products?limit=0")), 400, "invalid_query"),
        (client.get(format!("{base}/api/v1/products/x")).header("x-consistency-token", "garbage"), 400, "invalid_consistency_token"),
        (client.get(format!("{base}/api/v1/nothing-here")), 404, "route_not_found"),
        (client.delete(format!("{base}/api/v1/products")), 405, "method_not_allowed"),
    ];
    for (request, status, code) in cases {
        let response = request.send().await.unwrap();
        let got = response.status().as_u16();
        let body: Value = response.json().await.expect("every error has a JSON body");
        assert_eq!(got, status, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    app.terminate();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_log_gives_the_same_views_with_one_and_two_workers() {
    let broker = kafka_broker();
    let namespace = unique_namespace();
    let log = kafka_log(&broker, &namespace).await;
    let events = scenario::events(7, 60, 1_500);
    let positions = log.append(scenario::records(&events)).await.unwrap();
    let token = token_for(&positions);

    let mut dumps = Vec::new();
    for workers in ["1", "2"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let app = Shopflow::start_http(
            &["up", "--kafka", broker.addr(), "--namespace", &namespace, "--data-dir", data.to_str().unwrap(), "--demo-products", "0", "--workers", workers],
            dir.path(),
        )
        .await;
        dumps.push(dump_views(&app.base, &token).await);
        app.terminate();
    }
    let (products, stock) = &dumps[0];
    assert_eq!(products.len(), 60 - 60usize.div_ceil(7), "every product but the deleted ones");
    assert!(products.iter().any(|p| p["category_name"].is_null()), "c4 was never named");
    assert!(products.iter().all(|p| p["brand_name"].is_string()), "b1 was named after its products");
    assert!(stock.iter().all(|s| s["warehouses"].as_array().unwrap().iter().all(|w| w["quantity"].as_i64().unwrap() > 0)));
    assert_eq!(dumps[0], dumps[1], "one worker and two workers disagree");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_event_goes_to_the_dead_letter_topic_and_the_pipeline_goes_on() {
    let broker = kafka_broker();
    let namespace = unique_namespace();
    let log = kafka_log(&broker, &namespace).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let app = Shopflow::start_http(
        &["up", "--kafka", broker.addr(), "--namespace", &namespace, "--data-dir", data.to_str().unwrap(), "--demo-products", "0"],
        dir.path(),
    )
    .await;

    let garbage = OutRecord { topic: "catalog".into(), partition: Some(0), key: b"p-bad".to_vec(), value: Some(b"{not an event".to_vec()) };
    let wrong_topic = OutRecord::keyed(
        "catalog",
        "p-x",
        shopflow_events::Envelope::new(shopflow_events::Event::StockReceived(shopflow_events::types::StockReceived {
            product_id: "p-x".into(),
            warehouse_id: "w".into(),
            quantity: 1,
        }))
        .to_json(),
    );
    let bad = log.append(vec![garbage, wrong_topic]).await.unwrap();

    // The pipeline goes on: a valid product written after the bad records becomes visible.
    let (status, created) = post(&app.base, "/api/v1/products", &product_body("After the garbage", "c")).await;
    assert_eq!(status, 202);
    let id = created["id"].as_str().unwrap();
    let product = get_consistent(&app.base, &format!("/api/v1/products/{id}"), created["consistency_token"].as_str().unwrap()).await;
    assert_eq!(product["name"], "After the garbage");

    let mut reader = log.reader(&[Position::new("dlq", 0, 0)]).unwrap();
    let mut letters: Vec<DeadLetter> = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while letters.len() < 2 {
        assert!(Instant::now() < deadline, "dead letters missing: {letters:?}");
        for record in reader.poll(100, Duration::from_millis(200)).unwrap() {
            letters.push(serde_json::from_slice(record.value.as_deref().unwrap()).unwrap());
        }
    }
    let at = |p: &Position| letters.iter().find(|l| l.partition == p.partition && l.offset == p.offset).expect("a dead letter for each bad record");
    assert!(at(&bad[0]).reason.contains("malformed"), "{:?}", at(&bad[0]));
    assert_eq!(at(&bad[0]).payload, "{not an event");
    assert!(at(&bad[1]).reason.contains("belongs on topic inventory"), "{:?}", at(&bad[1]));
    app.terminate();
}

/// Writes products and stock receipts over HTTP; kills the process with SIGKILL in the middle
/// of the stream; restarts it on the same data; finishes the stream. The views must then equal
/// a from-scratch replay of the same log, hold every acknowledged write, and count no receipt
/// twice.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_stream_then_restart_equals_a_from_scratch_replay() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["up", "--data-dir", data.to_str().unwrap(), "--demo-products", "0", "--workers", "2"];
    // Frequent snapshots, so the restart resumes from a snapshot taken mid-stream.
    let env = [("SHOPFLOW_PIPELINE__SNAPSHOT_INTERVAL_MS", "50")];
    let total = 240usize;
    let kill_after = 120usize;

    let mut acked_receipts = vec![0i64; total];
    let mut unknown_receipts = vec![0i64; total];
    let mut acked_products = Vec::new();
    let mut tokens = Vec::new();

    let app = Shopflow::start_http_env(&args, &env, dir.path()).await;
    let base = app.base.clone();
    let (reached_half, halfway) = tokio::sync::oneshot::channel();
    let mut reached_half = Some(reached_half);
    // Writers run concurrently with the kill, so requests are in flight when it lands.
    let writer = tokio::spawn(async move {
        let mut results = Vec::new();
        for i in 0..total {
            let no_answer = (0, Value::Null);
            let product = try_post(&base, "/api/v1/products", &json!({"product_id": format!("k{i}"), "name": format!("Item {i}"), "price": {"amount_minor": 100, "currency": "EUR"}, "category_id": "c", "brand_id": "b", "supplier_id": "s"})).await;
            let receipt = try_post(&base, "/api/v1/stock/receipts", &json!({"product_id": format!("k{i}"), "warehouse_id": "w0", "quantity": (i % 5) + 1})).await;
            let down = receipt.is_none();
            if i + 1 == kill_after {
                let _ = reached_half.take().map(|tx| tx.send(()));
            }
            results.push((i, product.unwrap_or(no_answer.clone()), receipt.unwrap_or(no_answer)));
            if down {
                break; // the server is gone; the rest of the stream goes to its successor
            }
        }
        results
    });
    // Kill once half the stream is acknowledged; the writer keeps going, so requests are in flight.
    halfway.await.unwrap();
    app.kill9();
    let first_run = writer.await.unwrap();

    let app = Shopflow::start_http_env(&args, &env, dir.path()).await;
    let mut resumed_from = first_run.len();
    for (i, product, receipt) in &first_run {
        if product.0 == 202 {
            acked_products.push(*i);
            tokens.push(product.1["consistency_token"].as_str().unwrap().to_owned());
        }
        match receipt.0 {
            202 => {
                acked_receipts[*i] += ((i % 5) + 1) as i64;
                tokens.push(receipt.1["consistency_token"].as_str().unwrap().to_owned());
            }
            // No answer: the write may or may not have reached the log.
            _ => {
                unknown_receipts[*i] += ((i % 5) + 1) as i64;
                resumed_from = resumed_from.min(*i);
            }
        }
    }
    assert!(resumed_from > 0 && resumed_from < total, "the kill landed mid-stream (first failure at {resumed_from})");
    for i in resumed_from..total {
        let (status, body) = post(&app.base, "/api/v1/products", &json!({"product_id": format!("k{i}"), "name": format!("Item {i}"), "price": {"amount_minor": 100, "currency": "EUR"}, "category_id": "c", "brand_id": "b", "supplier_id": "s"})).await;
        assert_eq!(status, 202, "{body}");
        acked_products.push(i);
        tokens.push(body["consistency_token"].as_str().unwrap().to_owned());
        if unknown_receipts[i] == 0 {
            let (status, body) = post(&app.base, "/api/v1/stock/receipts", &json!({"product_id": format!("k{i}"), "warehouse_id": "w0", "quantity": (i % 5) + 1})).await;
            assert_eq!(status, 202, "{body}");
            acked_receipts[i] += ((i % 5) + 1) as i64;
            tokens.push(body["consistency_token"].as_str().unwrap().to_owned());
        }
    }
    let token = merge_tokens(tokens.iter().map(String::as_str));
    let restarted = dump_views(&app.base, &token).await;
    app.terminate();

    // Nothing acknowledged is lost, nothing is applied twice.
    let (products, _) = &restarted;
    for i in &acked_products {
        let product = products.iter().find(|p| p["product_id"] == format!("k{i}")).unwrap_or_else(|| panic!("acknowledged product k{i} lost"));
        let stock = product["stock"].as_i64().unwrap();
        assert!(
            stock >= acked_receipts[*i] && stock <= acked_receipts[*i] + unknown_receipts[*i],
            "k{i}: stock {stock}, acknowledged {}, unknown {}",
            acked_receipts[*i],
            unknown_receipts[*i]
        );
    }

    // A from-scratch replay of the same log, with no snapshot, gives the same views.
    let replay_dir = tempfile::tempdir().unwrap();
    let replay_data = replay_dir.path().join("data");
    std::fs::create_dir_all(replay_data.join("log")).unwrap();
    for entry in std::fs::read_dir(data.join("log")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), replay_data.join("log").join(entry.file_name())).unwrap();
    }
    let replay = Shopflow::start_http(
        &["up", "--data-dir", replay_data.to_str().unwrap(), "--demo-products", "0", "--workers", "1"],
        replay_dir.path(),
    )
    .await;
    let replayed = dump_views(&replay.base, &token).await;
    replay.terminate();
    assert_eq!(restarted, replayed, "the restarted views differ from a from-scratch replay");
}

/// `up` on first start shows the shop in use: demo shoppers' orders end in every state a
/// customer can see (decided by the real saga, charged by the real payment worker against the
/// test gateway), with their payments, a cart, top sellers, revenue and the latest orders.
#[tokio::test(flavor = "multi_thread")]
async fn up_starts_with_orders_in_every_state_with_payments_carts_and_rankings() {
    use shopflow_events::types::OrderStatus;
    use shopflow_shopdata::demo_orders::{self, Story};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let products = 30;
    let app = Shopflow::start_http(&["up", "--data-dir", data.to_str().unwrap(), "--demo-products", &products.to_string()], dir.path()).await;
    let demo = demo_orders::orders(products);
    let mut seen = std::collections::BTreeSet::new();
    for order in &demo {
        let expected = serde_json::to_value(order.story.settles_in()).unwrap();
        let path = format!("/api/v1/orders/{}", order.order_id);
        // Awaited: the saga, the payment worker and the demo's follow-ups take their time.
        let deadline = Instant::now() + DEADLINE;
        let row = loop {
            let (status, row) = send(reqwest::Method::GET, &app.base, &path, None).await;
            if status == 200 && row["status"] == expected {
                break row;
            }
            assert!(Instant::now() < deadline, "{} ({:?}) never reached {expected}: {status} {row}", order.order_id, order.story);
            tokio::time::sleep(Duration::from_millis(100)).await; // poll interval
        };
        seen.insert(row["status"].as_str().unwrap().to_owned());
        match order.story {
            Story::Declined | Story::InsufficientFunds => assert!(!row["reason"].as_str().unwrap().is_empty(), "{row}"),
            Story::OutOfStock => assert!(row["reason"].as_str().unwrap().starts_with("out_of_stock:"), "{row}"),
            _ => {}
        }
        if matches!(order.story, Story::Paid | Story::Shipped | Story::Refunded | Story::PartlyRefunded) {
            let (status, payment) = send(reqwest::Method::GET, &app.base, &format!("/api/v1/payments/{}", order.order_id), None).await;
            assert_eq!(status, 200, "{payment}");
            assert_eq!(payment["captured_minor"], row["total"]["amount_minor"], "{payment}");
            let refunded = payment["refunded_minor"].as_i64().unwrap();
            match order.story {
                Story::Refunded => assert_eq!(refunded, payment["captured_minor"].as_i64().unwrap(), "{payment}"),
                Story::PartlyRefunded => assert!(refunded > 0 && refunded < payment["captured_minor"].as_i64().unwrap(), "{payment}"),
                _ => assert_eq!(refunded, 0, "{payment}"),
            }
        }
    }
    // Every state but pending, which lasts only until the holds are decided.
    let every: Vec<&str> = OrderStatus::ALL.into_iter().filter(|s| *s != OrderStatus::Pending).map(OrderStatus::as_str).collect();
    assert!(every.iter().all(|s| seen.contains(*s)), "states on show: {seen:?}");

    let (status, latest) = send(reqwest::Method::GET, &app.base, "/api/v1/orders/latest", None).await;
    assert_eq!(status, 200, "{latest}");
    assert!(latest["items"].as_array().map_or(0, Vec::len) >= demo.len() - 1, "{latest}");
    let (status, sellers) = send(reqwest::Method::GET, &app.base, "/api/v1/top-sellers", None).await;
    assert_eq!(status, 200, "{sellers}");
    assert!(!sellers["items"].as_array().unwrap().is_empty(), "paid demo orders rank: {sellers}");
    let (status, cart) = send(reqwest::Method::GET, &app.base, "/api/v1/users/demo-user-01/cart", None).await;
    assert_eq!(status, 200, "{cart}");
    assert!(!cart["lines"].as_array().unwrap().is_empty(), "{cart}");
    app.terminate();
}
