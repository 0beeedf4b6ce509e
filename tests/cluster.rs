//! The scale-out shape: a two-process timely pipeline cluster on loopback exporting view
//! changelogs to a real broker, and two read replicas tailing them. A write through one
//! replica is read, with its consistency token, through the other.

mod support;

use serde_json::json;
use support::*;

/// One namespace on the test broker and one data directory: pipelines of any worker count and
/// replicas over them.
struct Deployment {
    broker: BrokerHandle,
    namespace: String,
    dir: tempfile::TempDir,
}

impl Deployment {
    fn new() -> Self {
        Self { broker: kafka_broker(), namespace: unique_namespace(), dir: tempfile::tempdir().unwrap() }
    }

    fn common(&self) -> Vec<String> {
        let data = self.dir.path().join("data");
        ["--kafka", self.broker.addr(), "--namespace", &self.namespace, "--data-dir", data.to_str().unwrap()].map(String::from).to_vec()
    }

    fn pipeline(&self, workers: &str) -> Shopflow {
        let common = self.common();
        let mut args = vec!["pipeline", "--workers", workers];
        args.extend(common.iter().map(String::as_str));
        Shopflow::spawn(&args, self.dir.path(), &format!("pipeline-{workers}-workers-{}", free_port()))
    }

    async fn replica(&self) -> Shopflow {
        let common = self.common();
        let mut args = vec!["serve"];
        args.extend(common.iter().map(String::as_str));
        Shopflow::start_http(&args, self.dir.path()).await
    }

    /// `up` on the same topics with an empty data directory: a replay from scratch.
    async fn replay_from_scratch(&self) -> Shopflow {
        let scratch = self.dir.path().join("scratch");
        let args = ["up", "--kafka", self.broker.addr(), "--namespace", &self.namespace, "--data-dir", scratch.to_str().unwrap(), "--demo-products", "0", "--workers", "1"];
        Shopflow::start_http(&args, self.dir.path()).await
    }
}

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

/// The rescale reproduction: 60 products written while a 2-worker pipeline exports the
/// changelogs, the pipeline restarted with 3 workers, then 15 products deleted and 45
/// renamed. A replica that tailed all along (warm) and one started afterwards (cold, reading
/// the compacted changelogs from the start, old cluster shape's records and markers included)
/// must both show exactly the 45 renamed products for the latest token. With changelog
/// partitions chosen by worker, keys changed partition with the worker count and the cold
/// replica showed deleted products and old names again.
///
/// The first write after the restart is waited for on the warm replica before the others are
/// made, so that the restarted pipeline has published its restored state: see the next test.
#[tokio::test(flavor = "multi_thread")]
async fn after_a_rescale_a_cold_replica_shows_exactly_what_the_warm_one_shows() {
    rescale_then_delete_and_rename(true).await;
}

/// The same with the deletes made while the restarted pipeline is still starting. Its first
/// publication used to consolidate the restored state (epoch e0: +row) with the deletes of
/// the next epochs (-row) into nothing, so no tombstone was written for those keys and every
/// replica kept the deleted products (seen: 7 of 15). The pipeline now publishes the
/// restored epoch on its own before it reads anything.
#[tokio::test(flavor = "multi_thread")]
async fn deletes_right_after_a_restart_reach_the_changelogs() {
    rescale_then_delete_and_rename(false).await;
}

async fn rescale_then_delete_and_rename(wait_for_restart: bool) {
    let deployment = Deployment::new();
    let pipeline = |workers: &str| deployment.pipeline(workers);

    let two = pipeline("2");
    let warm = deployment.replica().await;
    let mut ids = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..60 {
        let (status, created) = post(&warm.base, "/api/v1/products", &product_body(&format!("Product {i}"), "kitchen")).await;
        assert_eq!(status, 202, "{created}");
        ids.push(created["id"].as_str().unwrap().to_owned());
        tokens.push(created["consistency_token"].as_str().unwrap().to_owned());
    }
    let created = merge_tokens(tokens.iter().map(String::as_str));
    assert_eq!(all_products(&warm.base, &created).await.len(), 60, "the 2-worker pipeline published every product");
    two.terminate();

    let three = pipeline("3");
    let mut expected = std::collections::BTreeMap::new();
    // Product 1 is renamed first; products 0, 4, 8, ... are deleted, the others renamed.
    let order = std::iter::once(1).chain((0..60).filter(|i| *i != 1));
    for (n, i) in order.enumerate() {
        let id = &ids[i];
        let (status, answer) = if i % 4 == 0 {
            delete(&warm.base, &format!("/api/v1/products/{id}")).await
        } else {
            let name = format!("Renamed {i}");
            expected.insert(id.clone(), name.clone());
            patch(&warm.base, &format!("/api/v1/products/{id}"), &json!({ "name": name })).await
        };
        assert_eq!(status, 202, "{answer}");
        let token = answer["consistency_token"].as_str().unwrap().to_owned();
        if n == 0 && wait_for_restart {
            let renamed = get_consistent(&warm.base, &format!("/api/v1/products/{id}"), &token).await;
            assert_eq!(renamed["name"], "Renamed 1");
        }
        tokens.push(token);
    }
    assert_eq!(expected.len(), 45);
    let latest = merge_tokens(tokens.iter().map(String::as_str));

    let names = |products: &[serde_json::Value]| -> std::collections::BTreeMap<String, String> {
        products
            .iter()
            .map(|p| (p["product_id"].as_str().unwrap().to_owned(), p["name"].as_str().unwrap().to_owned()))
            .collect()
    };
    let warm_products = all_products(&warm.base, &latest).await;
    assert_eq!(names(&warm_products), expected, "the warm replica");

    let cold = deployment.replica().await;
    let cold_products = all_products(&cold.base, &latest).await;
    assert_eq!(names(&cold_products), expected, "the cold replica shows deleted products or old names");
    assert_eq!(cold_products, warm_products, "cold and warm replicas disagree");
    for (i, id) in ids.iter().enumerate().step_by(3) {
        let (status, body) = get_consistent_status(&cold.base, &format!("/api/v1/products/{id}"), &latest).await;
        if i % 4 == 0 {
            assert_eq!(status, 404, "deleted product {id} on the cold replica: {body}");
        } else {
            assert_eq!((status, &body["name"]), (200, &json!(format!("Renamed {i}"))), "{body}");
        }
    }

    cold.terminate();
    warm.terminate();
    three.terminate();
}

/// Rescale 2 → 3 → 1 workers on Kafka, the first change after a SIGKILL: nothing acknowledged
/// is lost, nothing is applied twice, and a cold replica and a from-scratch replay (a fresh
/// `up` on the same topics, no snapshot) show exactly what the warm replica shows.
#[tokio::test(flavor = "multi_thread")]
async fn a_rescale_from_2_to_3_to_1_workers_equals_a_from_scratch_replay() {
    let deployment = Deployment::new();
    let pipeline = |workers: &str| deployment.pipeline(workers);

    let mut expected_stock: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    let mut tokens: Vec<String> = Vec::new();
    fn accepted(tokens: &mut Vec<String>, (status, answer): (u16, serde_json::Value)) {
        assert_eq!(status, 202, "{answer}");
        tokens.push(answer["consistency_token"].as_str().unwrap().to_owned());
    }
    // Receipts of one round, spread over the products and three warehouses.
    fn receipts(expected: &mut std::collections::BTreeMap<String, i64>, round: usize, count: usize) -> Vec<serde_json::Value> {
        (0..count)
            .map(|j| {
                let i = (round * 7 + j * 3) % 40;
                let quantity = 1 + (round + j) % 5;
                *expected.entry(format!("r{i}")).or_insert(0) += quantity as i64;
                json!({"product_id": format!("r{i}"), "warehouse_id": format!("w{}", j % 3), "quantity": quantity})
            })
            .collect()
    }

    let two = pipeline("2");
    let warm = deployment.replica().await;
    for i in 0..40 {
        accepted(&mut tokens, post(&warm.base, "/api/v1/products", &json!({"product_id": format!("r{i}"), "name": format!("Item {i}"), "price": {"amount_minor": 100, "currency": "EUR"}, "category_id": "c", "brand_id": "b", "supplier_id": "s"})).await);
    }
    for body in receipts(&mut expected_stock, 1, 150) {
        accepted(&mut tokens, post(&warm.base, "/api/v1/stock/receipts", &body).await);
    }
    let before_kill = merge_tokens(tokens.iter().map(String::as_str));
    get_consistent(&warm.base, "/api/v1/products?limit=1", &before_kill).await;
    two.kill9();

    let three = pipeline("3");
    for body in receipts(&mut expected_stock, 2, 150) {
        accepted(&mut tokens, post(&warm.base, "/api/v1/stock/receipts", &body).await);
    }
    for i in (0..40).step_by(8) {
        accepted(&mut tokens, delete(&warm.base, &format!("/api/v1/products/r{i}")).await);
    }
    let mid = merge_tokens(tokens.iter().map(String::as_str));
    get_consistent(&warm.base, "/api/v1/products?limit=1", &mid).await;
    three.terminate();

    let one = pipeline("1");
    for body in receipts(&mut expected_stock, 3, 100) {
        accepted(&mut tokens, post(&warm.base, "/api/v1/stock/receipts", &body).await);
    }
    let latest = merge_tokens(tokens.iter().map(String::as_str));
    let warm_views = dump_views(&warm.base, &latest).await;
    one.terminate();

    // Nothing lost, nothing twice: every live product's stock is exactly what was received.
    let (products, _) = &warm_views;
    assert_eq!(products.len(), 35, "40 products, 5 deleted");
    for product in products {
        let id = product["product_id"].as_str().unwrap();
        assert_eq!(product["stock"].as_i64(), expected_stock.get(id).copied().or(Some(0)), "{id}");
    }

    let cold = deployment.replica().await;
    assert_eq!(dump_views(&cold.base, &latest).await, warm_views, "a cold replica after the rescale");
    cold.terminate();

    let replay = deployment.replay_from_scratch().await;
    assert_eq!(dump_views(&replay.base, &latest).await, warm_views, "a from-scratch replay of the same log");
    replay.terminate();
    warm.terminate();
}
