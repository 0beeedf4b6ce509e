//! The HTTP API over a real socket, with an in-memory log and views filled the way the
//! pipeline would fill them.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shopflow_views::ViewUpdate;
use shopflow_serving::ConsistencyToken;
use shopflow_events::types::Role;
use support::*;

const JSON: &str = "application/json";

async fn json_body(response: reqwest::Response) -> Result<Value> {
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_owned());
    ensure!(content_type.as_deref() == Some(JSON), "content type {content_type:?}");
    Ok(response.json().await?)
}

/// Asserts a JSON error with the given status and code; returns the error object.
async fn expect_error(response: reqwest::Response, status: StatusCode, code: &str) -> Result<Value> {
    let got = response.status();
    let body = json_body(response).await?;
    ensure!(got == status, "expected {status} {code}, got {got}: {body}");
    ensure!(body["error"]["code"] == code, "expected code {code}: {body}");
    ensure!(body["error"]["message"].is_string(), "no message: {body}");
    Ok(body["error"].clone())
}

fn fill_products(app: &TestApp, rows: impl IntoIterator<Item = shopflow_views::ProductRow>) {
    app.views.apply(rows.into_iter().map(|row| ViewUpdate::Product { key: row.product_id.clone(), row: Some(row) }));
}

#[tokio::test]
async fn create_answers_202_and_a_strong_read_waits_for_the_pipeline() -> Result<()> {
    let mut app = spawn_app().await;
    let response = app.admin(Method::POST, "/api/v1/products").json(&product_body()).send().await?;
    ensure!(response.status() == StatusCode::ACCEPTED, "{}", response.status());
    let header_token = response.headers()["x-consistency-token"].to_str()?.to_owned();
    let body = json_body(response).await?;
    let id = body["id"].as_str().context("id")?.to_owned();
    let token = body["consistency_token"].as_str().context("token")?;
    ensure!(token == header_token, "{token} != {header_token}");
    ensure!(uuid::Uuid::parse_str(&id).is_ok(), "server-minted ids are UUIDs: {id}");
    let parsed: ConsistencyToken = token.parse()?;
    let appended = app.appended.recv().await.context("append notification")?;
    ensure!(parsed.positions() == [appended.position.clone()], "{token} vs {:?}", appended.position);
    ensure!(appended.position.topic == "catalog");

    // Eventual read: the pipeline has not run, the product is not there yet.
    let eventual = app.client.get(app.url(&format!("/api/v1/products/{id}"))).send().await?;
    expect_error(eventual, StatusCode::NOT_FOUND, "not_found").await?;

    // Strong read: starts, and must still be waiting when the pipeline applies the event.
    let mut waiting = app.state.waiting_reads();
    let read = tokio::spawn({
        let client = app.client.clone();
        let url = app.url(&format!("/api/v1/products/{id}"));
        let token = token.to_owned();
        async move { client.get(url).header("x-consistency-token", token).send().await }
    });
    waiting.wait_for(|n| *n == 1).await?;
    ensure!(!read.is_finished(), "the read answered before the view had the row");
    apply_like_pipeline(&app.views, &appended, &mut HashMap::new());

    let response = read.await??;
    ensure!(response.status() == StatusCode::OK, "{}", response.status());
    let product = json_body(response).await?;
    ensure!(product["product_id"] == id.as_str() && product["name"] == "Trail shoe", "{product}");
    ensure!(product["price"] == json!({"amount_minor": 12900, "currency": "EUR"}), "{product}");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_token_that_is_never_covered_times_out_with_503_within_the_bound() -> Result<()> {
    let bound = Duration::from_millis(400);
    let app = spawn_app_with(|c| c.read_wait_max = bound).await;
    let started = Instant::now();
    let response = app.client.get(app.url("/api/v1/products/p-1?consistency_token=catalog:0:999")).send().await?;
    let elapsed = started.elapsed();
    ensure!(response.headers()["retry-after"] == "1");
    ensure!(response.headers().contains_key("x-view-lag-ms"), "lag headers on errors too");
    expect_error(response, StatusCode::SERVICE_UNAVAILABLE, "consistency_timeout").await?;
    ensure!(elapsed >= bound, "answered after {elapsed:?}, before the bound");
    ensure!(elapsed < bound + Duration::from_secs(3), "answered after {elapsed:?}");

    // A client asking for more than the bound gets the bound; asking for less gets less.
    let long = Instant::now();
    let response = app.client.get(app.url("/api/v1/products?wait_ms=60000")).header("x-consistency-token", "inventory:2:5").send().await?;
    expect_error(response, StatusCode::SERVICE_UNAVAILABLE, "consistency_timeout").await?;
    ensure!(long.elapsed() < bound + Duration::from_secs(3), "{:?}", long.elapsed());
    app.stop().await;

    let app = spawn_app_with(|c| c.read_wait_max = Duration::from_secs(30)).await;
    let short = Instant::now();
    let response = app.client.get(app.url("/api/v1/warehouses")).header("x-consistency-token", "inventory:0:1").header("x-consistency-wait-ms", "50").send().await?;
    expect_error(response, StatusCode::SERVICE_UNAVAILABLE, "consistency_timeout").await?;
    ensure!(short.elapsed() < Duration::from_secs(10), "waited {:?} though 50ms were asked", short.elapsed());
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn pagination_walks_every_product_exactly_once() -> Result<()> {
    let app = spawn_app().await;
    let ids: Vec<String> = (0..237).map(|i| format!("p-{i:04}")).collect();
    fill_products(&app, ids.iter().map(|id| product_row(id, "c", "b")));

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = app.url("/api/v1/products?limit=50");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = json_body(app.client.get(url).send().await?).await?;
        pages += 1;
        let items = page["items"].as_array().context("items")?;
        ensure!(items.len() <= 50);
        seen.extend(items.iter().map(|i| i["product_id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                ensure!(page["next_cursor"].is_null(), "{page}");
                break;
            }
        }
    }
    ensure!(pages == 5, "{pages} pages");
    ensure!(seen == ids, "every id once, in order");

    // The default page size is 50, and an exact multiple ends without an empty page.
    let page = json_body(app.client.get(app.url("/api/v1/products")).send().await?).await?;
    ensure!(page["items"].as_array().unwrap().len() == 50);
    let exact = spawn_app().await;
    fill_products(&exact, (0..4).map(|i| product_row(&format!("x{i}"), "c", "b")));
    let first = json_body(exact.client.get(exact.url("/api/v1/products?limit=2")).send().await?).await?;
    let cursor = first["next_cursor"].as_str().context("cursor")?;
    let second = json_body(exact.client.get(exact.url(&format!("/api/v1/products?limit=2&cursor={cursor}"))).send().await?).await?;
    ensure!(second["items"].as_array().unwrap().len() == 2 && second["next_cursor"].is_null(), "{second}");
    app.stop().await;
    exact.stop().await;
    Ok(())
}

#[tokio::test]
async fn category_and_brand_filters_select_and_paginate() -> Result<()> {
    let app = spawn_app().await;
    fill_products(
        &app,
        (0..30).map(|i| product_row(&format!("p-{i:02}"), ["shoes", "hats", "bags"][i % 3], ["acme", "zed"][i % 2])),
    );
    let walk = |query: &'static str| {
        let app = &app;
        async move {
            let mut seen = Vec::new();
            let mut cursor = String::new();
            loop {
                let url = app.url(&format!("/api/v1/products?limit=3&{query}{cursor}"));
                let page = json_body(app.client.get(url).send().await?).await?;
                for item in page["items"].as_array().unwrap() {
                    seen.push((item["category_id"].as_str().unwrap().to_owned(), item["brand_id"].as_str().unwrap().to_owned()));
                }
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = format!("&cursor={c}"),
                    None => return anyhow::Ok(seen),
                }
            }
        }
    };
    let shoes = walk("category=shoes").await?;
    ensure!(shoes.len() == 10 && shoes.iter().all(|(c, _)| c == "shoes"), "{shoes:?}");
    let acme = walk("brand=acme").await?;
    ensure!(acme.len() == 15 && acme.iter().all(|(_, b)| b == "acme"), "{acme:?}");
    let both = walk("category=hats&brand=zed").await?;
    ensure!(both.len() == 5 && both.iter().all(|(c, b)| c == "hats" && b == "zed"), "{both:?}");
    let none = walk("category=unknown").await?;
    ensure!(none.is_empty());
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn every_invalid_request_gets_a_4xx_json_error() -> Result<()> {
    let app = spawn_app_with(|c| c.max_body_bytes = 4096).await;
    let post = |path: &str| app.admin(Method::POST, path);
    let mut body = product_body();

    let r = post("/api/v1/products").header("content-type", JSON).body("{\"name\":").send().await?;
    expect_error(r, StatusCode::BAD_REQUEST, "malformed_json").await?;
    let r = post("/api/v1/products").header("content-type", "text/plain").body(product_body().to_string()).send().await?;
    expect_error(r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await?;
    let r = post("/api/v1/products").body(product_body().to_string()).send().await?;
    expect_error(r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await?;

    body["colour"] = json!("red");
    let r = post("/api/v1/products").json(&body).send().await?;
    let e = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await?;
    ensure!(e["message"].as_str().unwrap().contains("colour"), "{e}");
    let mut body = product_body();
    body.as_object_mut().unwrap().remove("name");
    let r = post("/api/v1/products").json(&body).send().await?;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await?;
    let mut body = product_body();
    body["price"] = json!("12.90");
    let r = post("/api/v1/products").json(&body).send().await?;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await?;

    let mut body = product_body();
    body["price"]["amount_minor"] = json!(-1);
    let r = post("/api/v1/products").json(&body).send().await?;
    let e = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await?;
    ensure!(e["field"] == "price", "{e}");
    let mut body = product_body();
    body["product_id"] = json!("not an id!");
    let r = post("/api/v1/products").json(&body).send().await?;
    let e = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await?;
    ensure!(e["field"] == "product_id", "{e}");
    let mut body = product_body();
    body["name"] = json!("   ");
    let r = post("/api/v1/products").json(&body).send().await?;
    let e = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await?;
    ensure!(e["field"] == "name", "{e}");

    let mut body = product_body();
    body["description"] = json!("x".repeat(8192));
    let r = post("/api/v1/products").json(&body).send().await?;
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await?;

    let r = app.admin(Method::PATCH, "/api/v1/products/p-1").json(&json!({})).send().await?;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await?;
    let r = app.admin(Method::PATCH, "/api/v1/products/p-1").json(&json!({"stock": 3})).send().await?;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await?;
    let r = app.admin(Method::DELETE, "/api/v1/products/bad%20id").send().await?;
    expect_error(r, StatusCode::BAD_REQUEST, "invalid_id").await?;

    let r = post("/api/v1/stock/receipts").json(&json!({"product_id": "p", "warehouse_id": "w", "quantity": 0})).send().await?;
    let e = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await?;
    ensure!(e["field"] == "quantity", "{e}");
    let r = post("/api/v1/stock/receipts").json(&json!({"product_id": "p", "warehouse_id": "w", "quantity": -4})).send().await?;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await?;
    let r = post("/api/v1/stock/adjustments").json(&json!({"product_id": "p", "warehouse_id": "w", "delta": 0})).send().await?;
    let e = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await?;
    ensure!(e["field"] == "delta", "{e}");
    let r = post("/api/v1/categories").json(&json!({"name": ""})).send().await?;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await?;
    let r = post("/api/v1/warehouses").json(&json!({"warehouse_id": "w/1", "name": "x"})).send().await?;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await?;

    let get = |path: &str| app.client.get(app.url(path));
    expect_error(get("/api/v1/products/bad%20id").send().await?, StatusCode::BAD_REQUEST, "invalid_id").await?;
    expect_error(get(&format!("/api/v1/products/{}", "x".repeat(65))).send().await?, StatusCode::BAD_REQUEST, "invalid_id").await?;
    expect_error(get("/api/v1/products/missing").send().await?, StatusCode::NOT_FOUND, "not_found").await?;
    expect_error(get("/api/v1/products/missing/stock").send().await?, StatusCode::NOT_FOUND, "not_found").await?;
    expect_error(get("/api/v1/warehouses/missing").send().await?, StatusCode::NOT_FOUND, "not_found").await?;
    for query in ["limit=0", "limit=201", "limit=abc", "limit=-1", "category=a%20b", "wait_ms=soon"] {
        expect_error(get(&format!("/api/v1/products?{query}")).send().await?, StatusCode::BAD_REQUEST, "invalid_query").await?;
    }
    expect_error(get("/api/v1/products?cursor=!!").send().await?, StatusCode::BAD_REQUEST, "invalid_cursor").await?;
    for token in ["garbage", "catalog:0", "orderz:0:1", "catalog:0:-5", "catalog:0:1,"] {
        let r = get(&format!("/api/v1/products?consistency_token={token}")).send().await?;
        expect_error(r, StatusCode::BAD_REQUEST, "invalid_consistency_token").await?;
        let r = get("/api/v1/products/p-1").header("x-consistency-token", token).send().await?;
        expect_error(r, StatusCode::BAD_REQUEST, "invalid_consistency_token").await?;
    }

    expect_error(get("/api/v1/nothing-here").send().await?, StatusCode::NOT_FOUND, "route_not_found").await?;
    expect_error(get("/").send().await?, StatusCode::NOT_FOUND, "route_not_found").await?;
    let r = app.admin(Method::PUT, "/api/v1/products").send().await?;
    ensure!(r.headers()["allow"] == "GET,HEAD,POST", "{:?}", r.headers().get("allow"));
    expect_error(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await?;
    let r = app.admin(Method::DELETE, "/api/v1/warehouses").send().await?;
    expect_error(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await?;
    let r = app.client.get(app.url("/api/v1/stock/receipts")).send().await?;
    expect_error(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await?;

    // Nothing invalid reached the log.
    ensure!(app.appended.is_empty(), "an invalid request was appended");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn admin_writes_need_an_admin_access_token() -> Result<()> {
    let app = spawn_app().await;
    let url = app.url("/api/v1/products");
    let config = support::test_config();
    let customer = support::token_for(&config, "customer-1", Role::Customer);

    let r = app.client.post(&url).json(&product_body()).send().await?;
    ensure!(r.headers()["www-authenticate"] == "Bearer");
    expect_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await?;
    let r = app.client.post(&url).basic_auth("admin", Some("password")).json(&product_body()).send().await?;
    expect_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await?;
    let r = app.client.post(&url).bearer_auth("wrong-token").json(&product_body()).send().await?;
    expect_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await?;
    let r = app.client.post(&url).bearer_auth(&customer).json(&product_body()).send().await?;
    expect_error(r, StatusCode::FORBIDDEN, "forbidden").await?;
    // Authorisation is checked before the body: no validation details for customers.
    let r = app.client.post(&url).bearer_auth(&customer).header("content-type", JSON).body("{").send().await?;
    expect_error(r, StatusCode::FORBIDDEN, "forbidden").await?;
    for (method, path, body) in [
        (Method::PATCH, "/api/v1/products/p-1", json!({"name": "x"})),
        (Method::DELETE, "/api/v1/products/p-1", Value::Null),
        (Method::POST, "/api/v1/categories", json!({"name": "x"})),
        (Method::POST, "/api/v1/brands", json!({"name": "x"})),
        (Method::POST, "/api/v1/suppliers", json!({"name": "x"})),
        (Method::POST, "/api/v1/warehouses", json!({"name": "x"})),
        (Method::POST, "/api/v1/stock/receipts", json!({"product_id": "p", "warehouse_id": "w", "quantity": 1})),
        (Method::POST, "/api/v1/stock/adjustments", json!({"product_id": "p", "warehouse_id": "w", "delta": -1})),
    ] {
        let r = app.client.request(method.clone(), app.url(path)).json(&body).send().await?;
        expect_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await.with_context(|| format!("{method} {path}"))?;
        let r = app.client.request(method.clone(), app.url(path)).bearer_auth(&customer).json(&body).send().await?;
        expect_error(r, StatusCode::FORBIDDEN, "forbidden").await.with_context(|| format!("{method} {path} as a customer"))?;
    }
    ensure!(app.appended.is_empty(), "an unauthorised write reached the log");

    let r = app.admin(Method::POST, "/api/v1/products").json(&product_body()).send().await?;
    ensure!(r.status() == StatusCode::ACCEPTED, "{}", r.status());
    // Reads are public.
    ensure!(app.client.get(&url).send().await?.status() == StatusCode::OK);
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn reads_say_how_far_behind_the_log_the_views_are() -> Result<()> {
    let mut app = spawn_app().await;
    let lag = |r: &reqwest::Response| -> Result<(u64, u64, u64)> {
        let get = |name: &str| -> Result<u64> {
            Ok(r.headers().get(name).with_context(|| format!("{name} missing"))?.to_str()?.parse()?)
        };
        Ok((get("x-view-frontier")?, get("x-view-lag-ms")?, get("x-view-lag-records")?))
    };
    let r = app.client.get(app.url("/api/v1/products")).send().await?;
    let (frontier, _, records) = lag(&r)?;
    ensure!(frontier == 0 && records == 0, "nothing written, nothing reported: {frontier} {records}");

    for name in ["a", "b", "c"] {
        let r = app.admin(Method::POST, "/api/v1/categories").json(&json!({"name": name})).send().await?;
        ensure!(r.status() == StatusCode::ACCEPTED);
    }
    let r = app.client.get(app.url("/api/v1/warehouses")).send().await?;
    ensure!(lag(&r)?.2 == 3, "three unapplied writes: {:?}", lag(&r)?);

    let mut covered = HashMap::new();
    for _ in 0..3 {
        let appended = app.appended.recv().await.context("append")?;
        apply_like_pipeline(&app.views, &appended, &mut covered);
    }
    let before = now_ms();
    let r = app.client.get(app.url("/api/v1/products/missing")).send().await?;
    let (frontier, lag_ms, records) = lag(&r)?;
    ensure!(r.status() == StatusCode::NOT_FOUND);
    ensure!(records == 0, "all applied: {records}");
    ensure!(frontier > 0 && frontier <= before + 3, "frontier {frontier}");
    ensure!(lag_ms < 60_000, "lag {lag_ms}ms");

    // Write responses are not view reads and carry no lag headers.
    let r = app.admin(Method::POST, "/api/v1/brands").json(&json!({"name": "z"})).send().await?;
    ensure!(!r.headers().contains_key("x-view-frontier"));
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn stock_and_warehouses_round_trip_through_the_pipeline() -> Result<()> {
    let mut app = spawn_app().await;
    let mut covered = HashMap::new();
    let mut last_token = String::new();
    let mut write = async |method: Method, path: &str, body: Value| -> Result<Value> {
        let r = app.admin(method, path).json(&body).send().await?;
        ensure!(r.status() == StatusCode::ACCEPTED, "{path}: {}", r.status());
        let body = json_body(r).await?;
        let appended = app.appended.recv().await.context("append")?;
        apply_like_pipeline(&app.views, &appended, &mut covered);
        last_token = body["consistency_token"].as_str().unwrap().to_owned();
        Ok(body)
    };
    let w1 = write(Method::POST, "/api/v1/warehouses", json!({"warehouse_id": "wh-berlin", "name": "Berlin", "location": "DE"})).await?;
    ensure!(w1["id"] == "wh-berlin");
    let w2 = write(Method::POST, "/api/v1/warehouses", json!({"name": "Lyon"})).await?;
    let lyon = w2["id"].as_str().unwrap().to_owned();
    let mut product = product_body();
    product["product_id"] = json!("sku-42");
    let p = write(Method::POST, "/api/v1/products", product).await?;
    ensure!(p["id"] == "sku-42");
    let receipt = write(Method::POST, "/api/v1/stock/receipts", json!({"product_id": "sku-42", "warehouse_id": "wh-berlin", "quantity": 5})).await?;
    ensure!(receipt["id"] == receipt["event_id"], "stock movements are identified by their event");
    write(Method::POST, "/api/v1/stock/receipts", json!({"product_id": "sku-42", "warehouse_id": "wh-berlin", "quantity": 2})).await?;
    write(Method::POST, "/api/v1/stock/receipts", json!({"product_id": "sku-42", "warehouse_id": lyon, "quantity": 10})).await?;
    let token = last_token.clone();

    let r = app.client.get(app.url(&format!("/api/v1/products/sku-42/stock?consistency_token={token}"))).send().await?;
    ensure!(r.status() == StatusCode::OK);
    let stock = json_body(r).await?;
    ensure!(stock["total"] == 17, "{stock}");
    let rows = stock["warehouses"].as_array().unwrap();
    ensure!(rows.len() == 2, "{stock}");
    let berlin = rows.iter().find(|r| r["warehouse_id"] == "wh-berlin").context("berlin")?;
    ensure!(berlin["quantity"] == 7 && berlin["warehouse_name"] == "Berlin", "{stock}");

    let list = json_body(app.client.get(app.url("/api/v1/warehouses")).send().await?).await?;
    let names: HashSet<&str> = list["items"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    ensure!(names == HashSet::from(["Berlin", "Lyon"]), "{list}");
    let one = json_body(app.client.get(app.url(&format!("/api/v1/warehouses/{lyon}"))).send().await?).await?;
    ensure!(one["name"] == "Lyon");

    let r = app.admin(Method::POST, "/api/v1/stock/adjustments").json(&json!({"product_id": "sku-42", "warehouse_id": "wh-berlin", "delta": -3, "reason": "damaged"})).send().await?;
    ensure!(r.status() == StatusCode::ACCEPTED);
    let appended = app.appended.recv().await.context("append")?;
    ensure!(appended.position.topic == "inventory");
    ensure!(matches!(appended.envelope.event, shopflow_events::Event::StockAdjusted(ref a) if a.delta == -3 && a.reason == "damaged"));
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn update_and_delete_are_events_keyed_by_the_product() -> Result<()> {
    let mut app = spawn_app().await;
    let mut covered = HashMap::new();
    let mut body = product_body();
    body["product_id"] = json!("p-7");
    app.admin(Method::POST, "/api/v1/products").json(&body).send().await?;
    let created = app.appended.recv().await.context("append")?;
    apply_like_pipeline(&app.views, &created, &mut covered);

    let r = app.admin(Method::PATCH, "/api/v1/products/p-7").json(&json!({"price": {"amount_minor": 999, "currency": "EUR"}})).send().await?;
    ensure!(r.status() == StatusCode::ACCEPTED);
    let body = json_body(r).await?;
    ensure!(body["id"] == "p-7");
    let updated = app.appended.recv().await.context("append")?;
    ensure!(updated.position.partition == created.position.partition, "same key, same partition");
    ensure!(updated.position.offset == created.position.offset + 1);
    match &updated.envelope.event {
        shopflow_events::Event::ProductUpdated(u) => {
            ensure!(u.price.as_ref().map(|p| p.amount_minor) == Some(999) && u.name.is_none(), "{u:?}")
        }
        other => anyhow::bail!("unexpected {other:?}"),
    }
    apply_like_pipeline(&app.views, &updated, &mut covered);

    let r = app.admin(Method::DELETE, "/api/v1/products/p-7").send().await?;
    ensure!(r.status() == StatusCode::ACCEPTED);
    let token = json_body(r).await?["consistency_token"].as_str().unwrap().to_owned();
    let deleted = app.appended.recv().await.context("append")?;
    apply_like_pipeline(&app.views, &deleted, &mut covered);
    let r = app.client.get(app.url("/api/v1/products/p-7")).header("x-consistency-token", token).send().await?;
    expect_error(r, StatusCode::NOT_FOUND, "not_found").await?;
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_unavailable_log_answers_503_and_nothing_is_acknowledged() -> Result<()> {
    let app = spawn_app().await;
    app.log.set_available(false);
    let r = app.admin(Method::POST, "/api/v1/products").json(&product_body()).send().await?;
    ensure!(r.headers()["retry-after"] == "1");
    let e = expect_error(r, StatusCode::SERVICE_UNAVAILABLE, "log_unavailable").await?;
    ensure!(!e["message"].as_str().unwrap().contains("switched off"), "backend details stay in our logs: {e}");
    // Reads keep working from the views while the log is away.
    fill_products(&app, [product_row("p-1", "c", "b")]);
    let r = app.client.get(app.url("/api/v1/products/p-1")).send().await?;
    ensure!(r.status() == StatusCode::OK);
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn health_and_metrics_are_served() -> Result<()> {
    let app = spawn_app().await;
    let health = json_body(app.client.get(app.url("/healthz")).send().await?).await?;
    ensure!(health["status"] == "ok" && health["log"] == "memory", "{health}");
    app.client.get(app.url("/api/v1/products")).send().await?;
    app.client.get(app.url("/api/v1/products/nope")).send().await?;
    app.client.get(app.url("/no/such/route")).send().await?;
    let r = app.client.get(app.url("/metrics")).send().await?;
    ensure!(r.status() == StatusCode::OK);
    let text = r.text().await?;
    let has = |needle: &str| text.lines().any(|l| l.starts_with("http_requests_total") && l.contains(needle));
    ensure!(has(r#"route="/api/v1/products""#) && has(r#"status="200""#), "{text}");
    ensure!(has(r#"route="/api/v1/products/{id}""#) && has(r#"status="404""#), "templated routes: {text}");
    ensure!(has(r#"route="unmatched""#), "{text}");
    ensure!(text.contains("http_request_duration_seconds_bucket"), "latency histogram: {text}");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn shutdown_lets_a_waiting_read_finish() -> Result<()> {
    let mut app = spawn_app().await;
    let r = app.admin(Method::POST, "/api/v1/products").json(&product_body()).send().await?;
    let body = json_body(r).await?;
    let (id, token) = (body["id"].as_str().unwrap().to_owned(), body["consistency_token"].as_str().unwrap().to_owned());
    let appended = app.appended.recv().await.context("append")?;

    let mut waiting = app.state.waiting_reads();
    let read = tokio::spawn({
        let client = app.client.clone();
        let url = app.url(&format!("/api/v1/products/{id}?consistency_token={token}"));
        async move { client.get(url).send().await }
    });
    waiting.wait_for(|n| *n == 1).await?;
    app.begin_stop();
    // Shutdown has begun once the listener is closed: new connections are refused.
    let addr = app.base.trim_start_matches("http://").to_owned();
    while tokio::net::TcpStream::connect(&addr).await.is_ok() {
        tokio::task::yield_now().await;
    }
    ensure!(!read.is_finished(), "the in-flight read was cut off by the shutdown");
    // ...but the in-flight read is still served, and answered once the view has the row.
    apply_like_pipeline(&app.views, &appended, &mut HashMap::new());
    let response = read.await??;
    ensure!(response.status() == StatusCode::OK, "{}", response.status());
    let state = app.state.clone();
    app.stop().await;
    ensure!(*state.waiting_reads().borrow() == 0);
    Ok(())
}
