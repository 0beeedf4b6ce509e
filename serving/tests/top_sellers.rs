//! `GET /api/v1/top-sellers` over HTTP: ranking, category filter, limits.

mod support;

use serde_json::Value;
use shopflow_views::{TopSellerRow, ViewUpdate};
use support::*;

fn seller(product: &str, category: Option<&str>, units: i64) -> ViewUpdate {
    ViewUpdate::TopSeller {
        key: product.into(),
        row: Some(TopSellerRow { product_id: product.into(), category_id: category.map(Into::into), units }),
    }
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn ids(body: &Value) -> Vec<(String, i64)> {
    body["items"].as_array().unwrap().iter().map(|r| (r["product_id"].as_str().unwrap().to_owned(), r["units"].as_i64().unwrap())).collect()
}

#[tokio::test]
async fn top_sellers_rank_by_units_within_a_category_and_respect_the_limit() {
    let app = spawn_app().await;
    app.views.apply([
        seller("kettle", Some("kitchen"), 7),
        seller("pan", Some("kitchen"), 9),
        seller("lamp", Some("living"), 12),
        seller("cup", Some("kitchen"), 7),
        seller("gone", None, 30),
    ]);

    let (status, all) = get(&app, "/api/v1/top-sellers").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(ids(&all), vec![("gone".into(), 30), ("lamp".into(), 12), ("pan".into(), 9), ("cup".into(), 7), ("kettle".into(), 7)]);

    let (_, kitchen) = get(&app, "/api/v1/top-sellers?category=kitchen&limit=2").await;
    assert_eq!(ids(&kitchen), vec![("pan".into(), 9), ("cup".into(), 7)]);

    // A product that stops selling (all its orders cancelled) leaves the view.
    app.views.apply([ViewUpdate::TopSeller { key: "gone".into(), row: None }]);
    let (_, after) = get(&app, "/api/v1/top-sellers?limit=1").await;
    assert_eq!(ids(&after), vec![("lamp".into(), 12)]);

    for bad in ["/api/v1/top-sellers?limit=0", "/api/v1/top-sellers?limit=101", "/api/v1/top-sellers?category=a%20b"] {
        let (status, body) = get(&app, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"]["code"].is_string());
    }
    app.stop().await;
}
