//! The scale-out shape: a two-process timely pipeline cluster on loopback exporting view
//! changelogs to a real broker, and two read replicas tailing them. A write through one
//! replica is read, with its consistency token, through the other.

mod support;

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_write_through_one_replica_is_read_with_its_token_through_another() {
    let broker = kafka_broker();
    let namespace = unique_namespace();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let addresses = format!("127.0.0.1:{},127.0.0.1:{}", free_port(), free_port());
    let common = ["--kafka", broker.addr(), "--namespace", &namespace, "--data-dir", data.to_str().unwrap()];

    let pipelines: Vec<Shopflow> = (0..2)
        .map(|process| {
            let process = process.to_string();
            let mut args = vec!["pipeline", "--workers", "1", "--process", &process, "--addresses", &addresses];
            args.extend(common);
            Shopflow::spawn(&args, dir.path(), &format!("pipeline-{process}"))
        })
        .collect();
    let mut serve = vec!["serve"];
    serve.extend(common);
    let replica_a = Shopflow::start_http(&serve, dir.path()).await;
    let replica_b = Shopflow::start_http(&serve, dir.path()).await;

    let (status, created) = post(&replica_a.base, "/api/v1/products", &product_body("Replicated Kettle", "kitchen")).await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap();
    let token = created["consistency_token"].as_str().unwrap();
    let (status, receipt) =
        post(&replica_a.base, "/api/v1/stock/receipts", &json!({"product_id": id, "warehouse_id": "w1", "quantity": 3})).await;
    assert_eq!(status, 202, "{receipt}");
    let both = merge_tokens([token, receipt["consistency_token"].as_str().unwrap()]);

    let product = get_consistent(&replica_b.base, &format!("/api/v1/products/{id}"), &both).await;
    assert_eq!(product["name"], "Replicated Kettle");
    assert_eq!(product["stock"], 3);
    // And the replica the write went through agrees.
    let same = get_consistent(&replica_a.base, &format!("/api/v1/products/{id}"), &both).await;
    assert_eq!(same, product);

    replica_a.terminate();
    replica_b.terminate();
    for pipeline in pipelines {
        pipeline.terminate();
    }
}
