//! `shopflow train` and `shopflow models` as a user runs them: train from a generated
//! `.inter` file into a fresh store, promote, train again, promote, roll back; and train from
//! an embedded event log written by the test.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use shopflow_events::types::{CartItemChanged, OrderLine, OrderPlaced, ProductViewed};
use shopflow_events::{Envelope, Event, Id, Money, Topic};
use shopflow_ingest::{EmbeddedLog, EventLog, OutRecord, TopicSpec};

fn shopflow(args: &[&str], cwd: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_shopflow"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run shopflow");
    assert!(
        out.status.success(),
        "shopflow {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// 90 users in three taste groups over 45 items, a little noise, increasing timestamps: a
/// matrix NMF can learn and a popularity ranking cannot (every group is equally popular).
fn write_inter(path: &Path) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut text = String::from("user_id:token\titem_id:token\trating:float\ttimestamp:float\n");
    let mut ts = 880_000_000u64;
    for u in 0..90 {
        for i in 0..45 {
            let p = if i % 3 == u % 3 { 0.6 } else { 0.03 };
            if rand() < p {
                ts += 1 + (rand() * 100.0) as u64;
                text.push_str(&format!("u{u}\tm{i}\t{}\t{ts}\n", 1 + (rand() * 5.0) as u32));
            }
        }
    }
    std::fs::write(path, text).unwrap();
}

/// Minimal XML well-formedness: every start tag closed in order, one root, nothing after.
fn assert_well_formed_xml(xml: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("unterminated tag") + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name.trim()), "mismatched </{name}>");
            continue;
        }
        let name = tag.split_whitespace().next().unwrap().trim_end_matches('/').to_owned();
        if stack.is_empty() {
            roots += 1;
        }
        if !tag.ends_with('/') {
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert_eq!(roots, 1);
}

fn current(store: &Path) -> u64 {
    let p: Value = serde_json::from_slice(&std::fs::read(store.join("current.json")).unwrap()).unwrap();
    p["version"].as_u64().unwrap()
}

#[test]
fn train_promote_train_promote_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let inter = dir.path().join("shop.inter");
    write_inter(&inter);
    let store = dir.path().join("models");
    let s = store.to_str().unwrap();
    let train = |seed: &str| {
        stdout(&shopflow(
            &["train", "--from-file", inter.to_str().unwrap(), "--store", s, "--rank", "4", "--iterations", "30", "--seed", seed, "--test-per-user", "5", "--promote"],
            dir.path(),
        ))
    };

    let first = train("0");
    assert!(first.contains("wrote model v000001"), "{first}");
    assert!(first.contains("promoted v000001"), "{first}");
    assert!(first.contains("P@10") && first.contains("popularity"), "metrics table missing:\n{first}");
    let list = stdout(&shopflow(&["models", "list", "--store", s], dir.path()));
    assert!(list.lines().any(|l| l.starts_with("* v000001")), "{list}");

    // The files of a version.
    let v1 = store.join("v000001");
    let metrics: Value = serde_json::from_slice(&std::fs::read(v1.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["k"], 10);
    for who in ["model", "popularity"] {
        for m in ["precision", "recall", "ndcg", "map", "coverage"] {
            let v = metrics[who][m].as_f64().unwrap_or_else(|| panic!("{who}.{m} missing: {metrics}"));
            assert!((0.0..=1.0).contains(&v), "{who}.{m} = {v}");
        }
    }
    assert!(metrics["model"]["precision"].as_f64() > metrics["popularity"]["precision"].as_f64());
    let meta: Value = serde_json::from_slice(&std::fs::read(v1.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["hyperparameters"]["rank"], 4);
    assert_eq!(meta["shape"]["items"], 45);
    assert!(meta["training"]["seconds"].as_f64().is_some());
    let items: Vec<String> = serde_json::from_slice(&std::fs::read(v1.join("items.json")).unwrap()).unwrap();
    assert_eq!(items.len(), 45);
    let similar: Value = serde_json::from_slice(&std::fs::read(v1.join("similar.json")).unwrap()).unwrap();
    assert_eq!(similar["neighbours"].as_array().unwrap().len(), 45);
    let svg = std::fs::read_to_string(v1.join("loss.svg")).unwrap();
    assert_well_formed_xml(&svg);
    assert!(svg.contains("<svg") && svg.contains("<path class=\"loss\""), "no loss path in the plot");
    assert!(v1.join("item_factors.bin").is_file());

    let second = train("1");
    assert!(second.contains("promoted v000002"), "{second}");
    assert_eq!(current(&store), 2);
    let list = stdout(&shopflow(&["models", "list", "--store", s], dir.path()));
    assert!(list.lines().any(|l| l.starts_with("* v000002")), "{list}");
    assert!(list.lines().any(|l| l.starts_with("  v000001")), "{list}");

    let back = stdout(&shopflow(&["models", "rollback", "--store", s], dir.path()));
    assert!(back.contains("rolled back to v000001"), "{back}");
    assert_eq!(current(&store), 1);
    let list = stdout(&shopflow(&["models", "list", "--store", s], dir.path()));
    assert!(list.lines().any(|l| l.starts_with("* v000001")), "{list}");

    // Explicit promote by version, and the errors a user can run into.
    stdout(&shopflow(&["models", "promote", "v000002", "--store", s], dir.path()));
    assert_eq!(current(&store), 2);
    let missing = Command::new(env!("CARGO_BIN_EXE_shopflow"))
        .args(["models", "promote", "7", "--store", s])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));
    assert_eq!(current(&store), 2);
}

#[test]
fn train_from_the_event_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let log = EmbeddedLog::open(&data.join("log")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            for topic in [Topic::Interactions, Topic::Carts, Topic::Orders] {
                log.ensure_topic(&TopicSpec::new(topic.name(), 4)).await.unwrap();
            }
            let mut records = Vec::new();
            let mut push = |e: Event| {
                let env = Envelope::new(e);
                records.push(OutRecord::of(&env));
            };
            // Two groups of 12 shoppers; each views most products of its group, carts a few,
            // buys one.
            for u in 0..24usize {
                let user = Id::from(format!("user-{u}").as_str());
                let base = if u < 12 { 0 } else { 10 };
                for i in 0..10usize {
                    if (u + i) % 5 != 0 {
                        let product_id = Id::from(format!("prod-{}", base + i).as_str());
                        push(Event::ProductViewed(ProductViewed { user_id: user.clone(), product_id: product_id.clone() }));
                        if (u + i) % 3 == 0 {
                            push(Event::CartItemAdded(CartItemChanged { user_id: user.clone(), product_id, quantity: 1 }));
                        }
                    }
                }
                push(Event::OrderPlaced(OrderPlaced {
                    order_id: Id::from(format!("order-{u}").as_str()),
                    user_id: user.clone(),
                    lines: vec![OrderLine {
                        product_id: Id::from(format!("prod-{}", base + u % 10).as_str()),
                        quantity: 2,
                        unit_price: Money::new(500, "EUR"),
                    }],
                    address_id: Id::from("addr"),
                    idempotency_key: format!("k{u}"),
                    payment_token: "tok_ok".into(),
            from_cart: false,
                }));
            }
            log.append(records).await.unwrap();
        });
    }
    let store = dir.path().join("models");
    let out = stdout(&shopflow(
        &["train", "--from-log", "--data-dir", data.to_str().unwrap(), "--store", store.to_str().unwrap(), "--rank", "2", "--iterations", "50", "--test-per-user", "2", "--promote"],
        dir.path(),
    ));
    assert!(out.contains("from log:embedded"), "{out}");
    assert!(out.contains("wrote model v000001"), "{out}");
    let meta: Value = serde_json::from_slice(&std::fs::read(store.join("v000001/metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["shape"]["users"], 24);
    assert_eq!(meta["shape"]["items"], 20);
    assert!(meta["data_source"].as_str().unwrap().starts_with("log:embedded"));
    let metrics: Value = serde_json::from_slice(&std::fs::read(store.join("v000001/metrics.json")).unwrap()).unwrap();
    assert!(metrics["split"].as_str().unwrap().contains("weighted"), "the log trains on weighted interactions");
}
