//! Restart with a backlog: thousands of stock receipts read in many epochs across several
//! partitions, `kill -9` with no snapshot taken, restart with a small read batch. Replay must
//! finish (it used to wedge: records of one partition held for a later epoch filled the batch
//! while the current epoch waited for another partition) and the views hold every receipt
//! exactly once.

mod support;

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt};
use serde_json::json;
use support::*;

const PRODUCTS: usize = 40;
const RECEIPTS: usize = 3_000;

/// Env of both runs: a small batch (the wedge needed `held >= max_batch`) and no snapshot
/// before the kill, so the whole log is replayed under its recorded epochs.
const ENV: [(&str, &str); 2] = [("SHOPFLOW_PIPELINE__MAX_BATCH", "50"), ("SHOPFLOW_PIPELINE__SNAPSHOT_INTERVAL_MS", "3600000")];

async fn write_backlog(base: &str) -> (BTreeMap<String, i64>, Vec<String>) {
    let mut tokens = Vec::new();
    for i in 0..PRODUCTS {
        let (status, body) = post(base, "/api/v1/products", &json!({"product_id": format!("r{i}"), "name": format!("Item {i}"), "price": {"amount_minor": 100, "currency": "EUR"}, "category_id": "c", "brand_id": "b", "supplier_id": "s"})).await;
        assert_eq!(status, 202, "{body}");
        tokens.push(body["consistency_token"].as_str().unwrap().to_owned());
    }
    // Concurrent writers, so every partition's records interleave over many epochs.
    let answers: Vec<(usize, u16, serde_json::Value)> = stream::iter(0..RECEIPTS)
        .map(|i| async move {
            let body = json!({"product_id": format!("r{}", i % PRODUCTS), "warehouse_id": format!("w{}", i % 3), "quantity": 1 + i % 7});
            let (status, answer) = post(base, "/api/v1/stock/receipts", &body).await;
            (i, status, answer)
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut expected = BTreeMap::new();
    for (i, status, answer) in answers {
        assert_eq!(status, 202, "{answer}");
        *expected.entry(format!("r{}", i % PRODUCTS)).or_insert(0) += (1 + i % 7) as i64;
        tokens.push(answer["consistency_token"].as_str().unwrap().to_owned());
    }
    (expected, tokens)
}

async fn assert_stock(base: &str, token: &str, expected: &BTreeMap<String, i64>) {
    let products = all_products(base, token).await;
    let actual: BTreeMap<String, i64> =
        products.iter().map(|p| (p["product_id"].as_str().unwrap().to_owned(), p["stock"].as_i64().unwrap())).collect();
    assert_eq!(&actual, expected, "stock after restart differs from the acknowledged receipts");
}

async fn restart_with_a_backlog(args: &[&str], dir: &std::path::Path) {
    let app = Shopflow::start_http_env(args, &ENV, dir).await;
    let (expected, tokens) = write_backlog(&app.base).await;
    let token = merge_tokens(tokens.iter().map(String::as_str));
    // Every receipt is in the views (so every epoch is recorded in the remap), then SIGKILL.
    assert_stock(&app.base, &token, &expected).await;
    app.kill9();

    let app = Shopflow::start_http_env(args, &ENV, dir).await;
    assert_stock(&app.base, &token, &expected).await;
    let stderr = app.stderr_text();
    assert!(stderr.contains("replaying recorded epochs"), "the restart replayed recorded epochs");
    assert!(stderr.contains("replay of recorded epochs done"), "replay finished");
    app.terminate();
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_with_a_backlog_and_a_small_batch_finishes_replay_on_the_embedded_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["up", "--data-dir", data.to_str().unwrap(), "--demo-products", "0", "--workers", "2"];
    restart_with_a_backlog(&args, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_with_a_backlog_and_a_small_batch_finishes_replay_on_kafka() {
    let broker = kafka_broker();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let namespace = unique_namespace();
    let args = ["up", "--kafka", broker.addr(), "--namespace", &namespace, "--data-dir", data.to_str().unwrap(), "--demo-products", "0", "--workers", "2"];
    restart_with_a_backlog(&args, dir.path()).await;
}

/// Rebuilding a partition from its first record (lost or unusable snapshot, a rescale onto a
/// machine without it) needs every record: entity topics are created with no retention limit,
/// whatever the broker's default.
#[tokio::test(flavor = "multi_thread")]
async fn entity_topics_are_created_without_retention_limits_on_kafka() {
    let broker = kafka_broker();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let namespace = unique_namespace();
    let app = Shopflow::start_http(
        &["up", "--kafka", broker.addr(), "--namespace", &namespace, "--data-dir", data.to_str().unwrap(), "--demo-products", "0"],
        dir.path(),
    )
    .await;
    let log = shopflow_ingest::KafkaLog::connect(shopflow_ingest::KafkaConfig::new(broker.addr()).with_namespace(&namespace)).unwrap();
    for topic in ["catalog", "inventory", "users", "carts", "orders", "payments", "interactions", "decisions"] {
        let config = log.topic_config(topic).await.unwrap();
        assert_eq!(config.get("retention.ms").map(String::as_str), Some("-1"), "{topic}: {config:?}");
        assert_eq!(config.get("retention.bytes").map(String::as_str), Some("-1"), "{topic}: {config:?}");
    }
    app.terminate();
}
