//! Recommendations end to end: the real binary on a real broker; a model trained from the
//! log by `shopflow train`, promoted with `shopflow models`, picked up by the running server
//! without a restart; a new shopper's first clicks change what they are recommended.

mod support;

use std::process::Command;
use std::time::Instant;

use serde_json::{json, Value};
use shopflow_ingest::{KafkaConfig, KafkaLog};
use support::*;

fn shopflow(args: &[&str]) -> std::process::Output {
    let output = Command::new(env!("CARGO_BIN_EXE_shopflow")).args(args).output().expect("the binary runs");
    assert!(output.status.success(), "shopflow {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promoted_model_answers_and_a_new_shoppers_first_clicks_change_the_answer() {
    let broker = kafka_broker();
    let namespace = unique_namespace();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let kafka = ["--kafka", broker.addr(), "--namespace", &namespace, "--data-dir", data];
    let mut up = vec!["up", "--demo-products", "120", "--workers", "2"];
    up.extend(kafka);
    let app = Shopflow::start_http(&up, dir.path()).await;

    // Everything the demo wrote, as one token.
    let log = KafkaLog::connect(KafkaConfig::new(broker.addr()).with_namespace(namespace.as_str())).unwrap();
    let demo = token_for(&last_positions(&log, &["catalog", "inventory", "interactions", "carts", "orders"]).await);

    // No model yet: a shopper with no history gets trending.
    let cold = get_consistent(&app.base, "/api/v1/recommend/user/newcomer", &demo).await;
    assert_eq!(cold["source"], "trending", "{cold}");
    assert!(cold["model_version"].is_null());
    assert!(!cold["items"].as_array().unwrap().is_empty(), "the demo shoppers make products trend");

    let mut train = vec!["train", "--from-log", "--rank", "8", "--iterations", "60", "--test-per-user", "2", "--k", "5"];
    train.extend(kafka);
    shopflow(&train);
    shopflow(&["models", "promote", "1", "--data-dir", data]);

    // The server picks the promoted model up by itself; its version shows in the answers.
    let deadline = Instant::now() + DEADLINE;
    let clicks = ["demo-0002", "demo-0008", "demo-0014"]; // all in the audio category
    let mut tokens = Vec::new();
    for product in clicks {
        let (status, body) =
            post(&app.base, "/api/v1/interactions", &json!({"type": "product.viewed", "user_id": "newcomer", "product_id": product})).await;
        assert_eq!(status, 202, "{body}");
        tokens.push(body["consistency_token"].as_str().unwrap().to_owned());
    }
    let after_clicks = merge_tokens(tokens.iter().map(String::as_str));
    let warm: Value = loop {
        let answer = get_consistent(&app.base, "/api/v1/recommend/user/newcomer", &after_clicks).await;
        if !answer["model_version"].is_null() {
            break answer;
        }
        assert!(Instant::now() < deadline, "the promoted model was never picked up: {answer}");
    };
    assert!(warm["source"].as_str().unwrap().starts_with("model"), "{warm}");
    assert_ne!(warm["items"], cold["items"], "the first clicks changed nothing");

    let similar = get_consistent(&app.base, "/api/v1/recommend/similar/demo-0002", &demo).await;
    let items = similar["items"].as_array().unwrap();
    assert!(!items.is_empty(), "{similar}");
    assert!(items.iter().all(|i| i["product_id"] != "demo-0002"), "a product is not similar to itself");
    app.terminate();
}
