//! `shopflow import catalog` against a running server: the rows go through the write path
//! (products, their categories and brands, stock receipts), bad rows are reported with their
//! line numbers and skipped, and running the same import again appends nothing and changes
//! nothing (every write is sent under a key derived from what it writes).

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};
use support::*;

const CSV: &str = "\
id,title,description,category,brand,price,stock
imp-kettle,Copper Kettle,A kettle of hammered copper,Kitchen > Kettles,Hearth,39.90,5
,Steel Teapot,Brews six cups,Kitchen > Teapots,Hearth,24.50,
imp-broken,Broken Price,,Kitchen > Kettles,Hearth,abc,1
imp-lamp,\"Desk Lamp, LED\",Warm light,Home > Lighting,Lumo,19.99,12
imp-nameless,,No name at all,Home > Lighting,Lumo,9.99,1
";

fn import(base: &str, file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shopflow"))
        .args(["import", "catalog", file.to_str().unwrap(), "--url", base, "--map", "name=title", "--warehouse", "wh-import"])
        .env("SHOPFLOW_ACCESS_TOKEN", admin_token())
        .output()
        .expect("the binary runs")
}

/// The topics an import writes to.
const WRITTEN: [&str; 2] = ["catalog", "inventory"];

#[tokio::test(flavor = "multi_thread")]
async fn an_import_writes_through_the_api_reports_bad_rows_and_a_rerun_changes_nothing() {
    let broker = kafka_broker();
    let namespace = unique_namespace();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = ["up", "--demo-products", "0", "--workers", "1", "--kafka", broker.addr(), "--namespace", &namespace, "--data-dir", data.to_str().unwrap()];
    let app = Shopflow::start_http(&up, dir.path()).await;
    let (status, body) = post(&app.base, "/api/v1/warehouses", &json!({"warehouse_id": "wh-import", "name": "Import"})).await;
    assert_eq!(status, 202, "{body}");
    let file = dir.path().join("catalog.csv");
    std::fs::write(&file, CSV).unwrap();
    let log = kafka_log(&broker, &namespace).await;

    let first = import(&app.base, &file);
    let (stdout, stderr) = (String::from_utf8_lossy(&first.stdout), String::from_utf8_lossy(&first.stderr));
    assert!(first.status.success(), "{stderr}");
    assert!(stdout.contains("imported 3 of 5 rows; 2 skipped"), "{stdout}");
    assert!(stderr.contains("line 4: skipped: price \"abc\""), "{stderr}");
    assert!(stderr.contains("line 6: skipped: no name"), "{stderr}");

    let after_first = last_positions(log.as_ref(), &WRITTEN).await;
    let token = token_for(&after_first);
    let (products, stock) = dump_views(&app.base, &token).await;
    let names: Vec<&str> = products.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(products.len(), 3, "{names:?}");
    for name in ["Copper Kettle", "Steel Teapot", "Desk Lamp, LED"] {
        assert!(names.contains(&name), "{name} is missing from {names:?}");
    }
    let kettle = get_consistent(&app.base, "/api/v1/products/imp-kettle", &token).await;
    assert_eq!(kettle["price"]["amount_minor"], 3990, "{kettle}");
    assert_eq!(kettle["category_name"], "Kitchen > Kettles", "{kettle}");
    assert_eq!(kettle["brand_name"], "Hearth", "{kettle}");
    let stock_of = |product: &str| stock.iter().find(|s| s["product_id"] == product).cloned().unwrap_or(Value::Null);
    assert_eq!(stock_of("imp-kettle")["total"], 5, "{stock:?}");
    assert_eq!(stock_of("imp-kettle")["warehouses"][0]["warehouse_id"], "wh-import", "{stock:?}");
    assert_eq!(stock_of("imp-lamp")["total"], 12, "{stock:?}");

    // The same file again: every write is answered from its key; the log does not grow.
    let second = import(&app.base, &file);
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert!(String::from_utf8_lossy(&second.stdout).contains("imported 3 of 5 rows; 2 skipped"));
    assert_eq!(last_positions(log.as_ref(), &WRITTEN).await, after_first, "a re-run appended records");
    assert_eq!(dump_views(&app.base, &token).await, (products, stock), "a re-run changed the views");
}
