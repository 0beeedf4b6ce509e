//! Product search through the real HTTP server: writes over HTTP become searchable with the
//! write's token (awaited, never slept), the query features and filters, facet counts against
//! a plain scan of the catalog view, hostile input, and an index rebuilt at restart.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shopflow_events::types::ReviewPosted;
use shopflow_events::{Envelope, Event, Id};
use shopflow_ingest::{EventLog, OutRecord};
use shopflow_views::{ProductRow, Stars, TopSellerRow, ViewUpdate, Views};
use support::*;
use tokio::sync::mpsc;

async fn soon<T>(what: &str, future: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(Duration::from_secs(10), future).await.with_context(|| format!("{what} did not happen"))
}

/// Stands in for the pipeline: applies every appended record to the views as it lands, and
/// hands the records on so a test can see what was written (search interactions).
fn run_pipeline(app: &mut TestApp) -> mpsc::UnboundedReceiver<Appended> {
    let (seen, records) = mpsc::unbounded_channel();
    let (_, mut appended) = mpsc::unbounded_channel();
    std::mem::swap(&mut appended, &mut app.appended);
    let views = app.views.clone();
    tokio::spawn(async move {
        let mut covered = HashMap::new();
        let mut stars: HashMap<(Id, Id), u8> = HashMap::new();
        while let Some(record) = appended.recv().await {
            if let Event::ReviewPosted(review) = &record.envelope.event {
                rate(&views, &mut stars, review);
            }
            apply_like_pipeline(&views, &record, &mut covered);
            let _ = seen.send(record);
        }
    });
    records
}

/// The catalog fold's rating, for the stand-in: each review id counts once, with its latest stars.
fn rate(views: &Views, stars: &mut HashMap<(Id, Id), u8>, review: &ReviewPosted) {
    stars.insert((review.product_id.clone(), review.review_id.clone()), review.rating);
    let Some(mut row) = views.products.get(&review.product_id) else { return };
    let of_product: Vec<u64> = stars.iter().filter(|((p, _), _)| *p == review.product_id).map(|(_, s)| u64::from(*s)).collect();
    row.rating_count = of_product.len() as u32;
    row.rating_avg = Stars::mean(of_product.iter().sum(), row.rating_count);
    views.apply([ViewUpdate::Product { key: review.product_id.clone(), row: Some(row) }]);
}

/// Posts a review the way a reviews service would: an event on the catalog topic. Returns its
/// consistency token.
async fn review(app: &TestApp, product: &str, review: &str, rating: u8) -> Result<String> {
    let event = Event::ReviewPosted(ReviewPosted { review_id: review.into(), product_id: product.into(), user_id: "u-1".into(), rating, text: String::new() });
    let envelope = Envelope::new(event);
    let record = OutRecord::of(&envelope);
    let position = app.log.append(vec![record]).await?.pop().context("a position")?;
    Ok(format!("{}:{}:{}", position.topic, position.partition, position.offset))
}

/// Makes the app ready (the views report progress; the index syncs) and waits for it.
async fn ready(app: &TestApp) -> Result<()> {
    report(&app.views, &HashMap::new());
    soon("ready", app.state.ready().wait_for(|r| *r)).await??;
    Ok(())
}

async fn create(app: &TestApp, id: &str, name: &str, description: &str, category: &str, brand: &str, price: i64) -> Result<String> {
    let body = json!({
        "product_id": id, "name": name, "description": description,
        "price": {"amount_minor": price, "currency": "EUR"},
        "category_id": category, "brand_id": brand, "supplier_id": "sup-1"
    });
    let response = app.admin(Method::POST, "/api/v1/products").json(&body).send().await?;
    ensure!(response.status() == StatusCode::ACCEPTED, "{}", response.status());
    let body: Value = response.json().await?;
    Ok(body["consistency_token"].as_str().context("token")?.to_owned())
}

async fn search(app: &TestApp, query: &str) -> Result<Value> {
    let response = app.client.get(app.url(&format!("/api/v1/products/search?{query}"))).send().await?;
    let status = response.status();
    let body: Value = response.json().await?;
    ensure!(status == StatusCode::OK, "{query}: {status} {body}");
    Ok(body)
}

fn ids(results: &Value) -> Vec<String> {
    results["hits"].as_array().map(|hits| hits.iter().map(|h| h["id"].as_str().unwrap_or("").to_owned()).collect()).unwrap_or_default()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The same small shop for every query test, written over HTTP; returns the last token.
async fn shop(app: &TestApp) -> Result<String> {
    let products = [
        ("p1", "Electric Kettle", "Boils water fast, stainless steel.", "kitchen", "acme", 2999),
        ("p2", "Glass Teapot", "A teapot for loose leaf tea.", "kitchen", "northwind", 1999),
        ("p3", "Wireless Headphones", "Noise cancelling over-ear headphones.", "audio", "globex", 12999),
        ("p4", "Bluetooth Speaker", "Portable speaker with deep bass.", "audio", "acme", 4999),
        ("p5", "Leather Sofa", "Three seat sofa in brown leather.", "furniture", "initech", 89999),
        ("p6", "Camping Tent", "Two person tent, waterproof.", "outdoor", "umbrella", 15999),
        ("p7", "Stovetop Kettle", "Whistling kettle for gas and induction.", "kitchen", "northwind", 3499),
    ];
    let mut token = String::new();
    for (id, name, description, category, brand, price) in products {
        token = create(app, id, name, description, category, brand, price).await?;
    }
    Ok(token)
}

/// Waits for the search index to have applied `token` (through the API: a search with it).
async fn searchable(app: &TestApp, token: &str) -> Result<()> {
    search(app, &format!("q=&limit=1&consistency_token={token}")).await.map(|_| ())
}

#[tokio::test]
async fn a_product_written_over_http_is_found_changed_and_gone_with_the_writes_token() -> Result<()> {
    let mut app = spawn_app().await;
    ready(&app).await?;
    // The search with the token is started before the pipeline sees the write: it must wait.
    let token = create(&app, "tp-1", "Copper Teapot", "Hand hammered.", "kitchen", "acme", 4500).await?;
    let mut waiting = app.state.waiting_reads();
    let pending = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url(&format!("/api/v1/products/search?q=teapot&consistency_token={token}")));
        async move { client.get(url).send().await }
    });
    soon("the search waits for its token", waiting.wait_for(|n| *n == 1)).await??;
    ensure!(!pending.is_finished());
    let mut records = run_pipeline(&mut app);
    let found: Value = soon("the search", pending).await???.json().await?;
    ensure!(ids(&found) == ["tp-1"], "{found}");
    ensure!(found["total"] == 1 && found["hits"][0]["highlight"]["name"] == "Copper <em>Teapot</em>", "{found}");

    // Every search with text is an interaction, with its hit count.
    let mut searched = None;
    while searched.is_none() {
        let record = soon("the search interaction", records.recv()).await?.context("log closed")?;
        if let Event::SearchPerformed(e) = record.envelope.event {
            searched = Some(e);
        }
    }
    let searched = searched.context("searched")?;
    ensure!(searched.query == "teapot" && searched.results == 1 && searched.user_id.as_str() == "anonymous", "{searched:?}");

    let response = app.admin(Method::PATCH, "/api/v1/products/tp-1").json(&json!({"name": "Copper Kettle"})).send().await?;
    let token = response.json::<Value>().await?["consistency_token"].as_str().context("token")?.to_owned();
    let changed = search(&app, &format!("q=kettle&consistency_token={token}")).await?;
    ensure!(ids(&changed) == ["tp-1"], "{changed}");
    ensure!(ids(&search(&app, "q=teapot").await?).is_empty());

    let response = app.admin(Method::DELETE, "/api/v1/products/tp-1").send().await?;
    let token = response.json::<Value>().await?["consistency_token"].as_str().context("token")?.to_owned();
    let gone = search(&app, &format!("q=kettle&consistency_token={token}&user_id=shopper-9")).await?;
    ensure!(ids(&gone).is_empty() && gone["total"] == 0, "{gone}");
    loop {
        let record = soon("the zero-result interaction", records.recv()).await?.context("log closed")?;
        if let Event::SearchPerformed(e) = record.envelope.event {
            if e.user_id.as_str() == "shopper-9" {
                ensure!(e.results == 0 && e.query == "kettle", "{e:?}");
                break;
            }
        }
    }
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn searches_are_timed_in_the_index_apart_from_the_wait_for_a_blocking_thread() -> Result<()> {
    let mut app = spawn_app().await;
    ready(&app).await?;
    let _records = run_pipeline(&mut app);
    let token = shop(&app).await?;
    searchable(&app, &token).await?;
    let queries = ["q=kettle", "q=kettel", "q=sofa&sort=price_asc"];
    for query in queries {
        search(&app, query).await?;
    }
    let metrics = app.client.get(app.url("/metrics")).send().await?.text().await?;
    // `searchable` searched once or more (it waits with a token), then the queries above.
    for phase in ["queued", "searched"] {
        let prefix = format!("search_duration_seconds_count{{phase=\"{phase}\"}} ");
        let line = metrics.lines().find(|l| l.starts_with(&prefix)).with_context(|| format!("no {prefix} in\n{metrics}"))?;
        let count: f64 = line[prefix.len()..].trim().parse()?;
        ensure!(count >= (queries.len() + 1) as f64, "{line}");
    }
    ensure!(metrics.contains("search_duration_seconds_bucket{phase=\"searched\",le=\"0.001\"}"), "{metrics}");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn typos_stemming_and_the_last_word_as_a_prefix() -> Result<()> {
    let mut app = spawn_app().await;
    ready(&app).await?;
    let _records = run_pipeline(&mut app);
    let token = shop(&app).await?;
    searchable(&app, &token).await?;
    let q = |text: &str| format!("q={}", urlencode(text));
    ensure!(sorted(ids(&search(&app, &q("kettles ")).await?)) == ["p1", "p7"], "plural");
    ensure!(ids(&search(&app, &q("headphone ")).await?) == ["p3"], "singular of a plural");
    ensure!(sorted(ids(&search(&app, &q("kettel ")).await?)) == ["p1", "p7"], "one typo");
    ensure!(ids(&search(&app, &q("haedphnoes ")).await?) == ["p3"], "two typos from nine letters");
    ensure!(ids(&search(&app, &q("snfa ")).await?).is_empty(), "no typo in four letters");
    ensure!(ids(&search(&app, &q("wireless headph")).await?) == ["p3"], "prefix");
    let suggestions: Value = app.client.get(app.url("/api/v1/products/suggest?q=ket")).send().await?.json().await?;
    let mut names: Vec<&str> = suggestions.as_array().context("a list")?.iter().filter_map(|s| s["name"].as_str()).collect();
    names.sort();
    ensure!(names == ["Electric Kettle", "Stovetop Kettle"], "{suggestions}");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn synonyms_put_by_an_admin_are_used_by_the_search_with_the_puts_token() -> Result<()> {
    let mut app = spawn_app().await;
    ready(&app).await?;
    let _records = run_pipeline(&mut app);
    let token = shop(&app).await?;
    ensure!(ids(&search(&app, &format!("q=couch&consistency_token={token}")).await?).is_empty());
    let body = json!({"groups": [["couch", "sofa"], ["pot", "kettle"]]});
    let refused = app.client.put(app.url("/api/v1/search/synonyms")).json(&body).send().await?;
    ensure!(refused.status() == StatusCode::UNAUTHORIZED, "{}", refused.status());
    let bad = app.admin(Method::PUT, "/api/v1/search/synonyms").json(&json!({"groups": [["alone"]]})).send().await?;
    ensure!(bad.status().is_client_error(), "{}", bad.status());
    let response = app.admin(Method::PUT, "/api/v1/search/synonyms").json(&body).send().await?;
    ensure!(response.status() == StatusCode::ACCEPTED, "{}", response.status());
    let token = response.json::<Value>().await?["consistency_token"].as_str().context("token")?.to_owned();
    ensure!(ids(&search(&app, &format!("q=couch&consistency_token={token}")).await?) == ["p5"]);
    ensure!(sorted(ids(&search(&app, "q=pot").await?)) == ["p1", "p7"]);
    let stored: Value = app.client.get(app.url("/api/v1/search/synonyms")).send().await?.json().await?;
    ensure!(stored == body, "{stored}");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn every_filter_and_sort_and_cursor_pages() -> Result<()> {
    let mut app = spawn_app().await;
    ready(&app).await?;
    let _records = run_pipeline(&mut app);
    shop(&app).await?;
    let stock = app.admin(Method::POST, "/api/v1/warehouses").json(&json!({"warehouse_id": "wh-1", "name": "Main"})).send().await?;
    ensure!(stock.status() == StatusCode::ACCEPTED);
    let receipt = app.admin(Method::POST, "/api/v1/stock/receipts").json(&json!({"product_id": "p4", "warehouse_id": "wh-1", "quantity": 3})).send().await?;
    let token = receipt.json::<Value>().await?["consistency_token"].as_str().context("token")?.to_owned();
    searchable(&app, &token).await?;

    ensure!(sorted(ids(&search(&app, "category=kitchen&limit=50").await?)) == ["p1", "p2", "p7"]);
    ensure!(sorted(ids(&search(&app, "brand=acme,globex").await?)) == ["p1", "p3", "p4"]);
    ensure!(sorted(ids(&search(&app, "price_min=3000&price_max=15999").await?)) == ["p3", "p4", "p6", "p7"]);
    ensure!(ids(&search(&app, "in_stock=true").await?) == ["p4"]);
    ensure!(ids(&search(&app, "q=kettle&brand=northwind").await?) == ["p7"]);

    // Popularity comes from the top-sellers view.
    let top = |id: &str, units| ViewUpdate::TopSeller { key: id.into(), row: Some(TopSellerRow { product_id: id.into(), category_id: None, units }) };
    app.views.apply([top("p6", 50), top("p2", 10), top("p3", 30)]);
    let mut covered = HashMap::new();
    covered.insert(("orders".to_owned(), 0), 1);
    report(&app.views, &covered);
    searchable(&app, "orders:0:0").await?;
    ensure!(ids(&search(&app, "sort=popularity&limit=3").await?) == ["p6", "p3", "p2"]);

    for (sort, expected) in [("price_asc", ["p2", "p1", "p7", "p4", "p3", "p6", "p5"]), ("price_desc", ["p5", "p6", "p3", "p4", "p7", "p1", "p2"])] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let after = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
            let page = search(&app, &format!("sort={sort}&limit=3{after}")).await?;
            seen.extend(ids(&page));
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        ensure!(seen == expected, "{sort}: {seen:?}");
    }
    let relevance = search(&app, "q=kettle&limit=1").await?;
    ensure!(relevance["hits"][0]["score"].as_f64().unwrap_or(0.0) > 0.0, "{relevance}");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_minimum_rating_filters_on_the_reviews_folded_into_the_catalog() -> Result<()> {
    let mut app = spawn_app().await;
    ready(&app).await?;
    let _records = run_pipeline(&mut app);
    shop(&app).await?;
    // p1: 5 and 4 (4.5); p2: 3; p3: 5, 5 and 2 (4.0); p4: 1, then the same review edited to 5.
    let mut token = String::new();
    for (product, id, stars) in [("p1", "r1", 5), ("p1", "r2", 4), ("p2", "r3", 3), ("p3", "r4", 5), ("p3", "r5", 5), ("p3", "r6", 2), ("p4", "r7", 1), ("p4", "r7", 5)] {
        token = review(&app, product, id, stars).await?;
    }
    searchable(&app, &token).await?;
    ensure!(sorted(ids(&search(&app, "min_rating=4").await?)) == ["p1", "p3", "p4"], "4 is inclusive; an edited review counts once");
    ensure!(sorted(ids(&search(&app, "min_rating=4.5").await?)) == ["p1", "p4"]);
    ensure!(sorted(ids(&search(&app, "min_rating=0").await?)) == ["p1", "p2", "p3", "p4"], "unreviewed products are left out");
    ensure!(ids(&search(&app, "q=kettle&min_rating=4").await?) == ["p1"], "with text");
    let rated = search(&app, "q=teapot").await?;
    ensure!(rated["hits"][0]["rating_avg"] == 3.0 && rated["hits"][0]["rating_count"] == 1, "{rated}");
    let edited = search(&app, "q=speaker").await?;
    ensure!(edited["hits"][0]["rating_avg"] == 5.0 && edited["hits"][0]["rating_count"] == 1, "{edited}");
    let unrated = search(&app, "q=sofa").await?;
    ensure!(unrated["hits"][0].get("rating_avg").is_none() && unrated["hits"][0]["rating_count"] == 0, "{unrated}");
    // The catalog's own endpoint shows the same columns.
    let product: Value = app.client.get(app.url("/api/v1/products/p3")).send().await?.json().await?;
    ensure!(product["rating_avg"] == 4.0 && product["rating_count"] == 3, "{product}");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn newest_lists_by_creation_time_as_a_scan_of_the_catalog_would() -> Result<()> {
    let mut app = spawn_app().await;
    ready(&app).await?;
    let _records = run_pipeline(&mut app);
    let token = shop(&app).await?;
    searchable(&app, &token).await?;
    let extra = create(&app, "p8", "Oak Kettle Stand", "", "kitchen", "acme", 999).await?;
    searchable(&app, &extra).await?;
    // The scan: creation times from the catalog view (products created in one millisecond
    // tie; the index breaks ties by id hash, so only the times' order is compared).
    let mut scan: Vec<(i64, String)> = Vec::new();
    let page: Value = app.client.get(app.url("/api/v1/products?limit=50")).send().await?.json().await?;
    for item in page["items"].as_array().context("items")? {
        scan.push((item["created_at"].as_i64().context("created_at")?, item["product_id"].as_str().context("id")?.to_owned()));
    }
    ensure!(scan.len() == 8 && scan.iter().all(|(t, _)| *t > 0), "{scan:?}");
    let created: HashMap<String, i64> = scan.iter().map(|(t, id)| (id.clone(), *t)).collect();
    let mut seen: Vec<(i64, String)> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let after = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let page = search(&app, &format!("sort=newest&limit=3{after}")).await?;
        for hit in page["hits"].as_array().context("hits")? {
            let id = hit["id"].as_str().context("id")?.to_owned();
            ensure!(hit["created_at"].as_i64() == created.get(&id).copied(), "{hit}");
            seen.push((hit["created_at"].as_i64().unwrap_or(0), id));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    scan.sort_by(|a, b| b.0.cmp(&a.0));
    ensure!(seen.iter().map(|s| s.0).collect::<Vec<_>>() == scan.iter().map(|s| s.0).collect::<Vec<_>>(), "{seen:?} vs {scan:?}");
    ensure!(sorted(seen.iter().map(|s| s.1.clone()).collect()) == sorted(scan.iter().map(|s| s.1.clone()).collect()), "every product once");
    ensure!(seen[0].1 == "p8" || seen[0].0 == created["p8"], "the last created comes first: {seen:?}");
    let kettles = search(&app, "q=kettle&sort=newest").await?;
    ensure!(ids(&kettles).first().map(String::as_str) == Some("p8") || created["p8"] == created["p7"], "{kettles}");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn facet_counts_equal_a_plain_scan_of_the_catalog_view() -> Result<()> {
    let mut app = spawn_app().await;
    ready(&app).await?;
    let _records = run_pipeline(&mut app);
    let mut token = String::new();
    for i in 0..60 {
        let (category, brand) = (["kitchen", "audio", "garden", "books"][i % 4], ["acme", "globex", "initech"][i % 3]);
        let name = ["Kettle", "Speaker", "Planter", "Novel", "Lamp"][i % 5];
        token = create(&app, &format!("f-{i:03}"), &format!("{name} {i}"), "", category, brand, 100 + i as i64).await?;
    }
    searchable(&app, &token).await?;
    // The scan: every product through the catalog's own list endpoint.
    let mut scan_categories: BTreeMap<String, u64> = BTreeMap::new();
    let mut scan_brands: BTreeMap<String, u64> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let after = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let page: Value = app.client.get(app.url(&format!("/api/v1/products?limit=7{after}"))).send().await?.json().await?;
        for item in page["items"].as_array().context("items")? {
            *scan_categories.entry(item["category_id"].as_str().context("category")?.to_owned()).or_default() += 1;
            *scan_brands.entry(item["brand_id"].as_str().context("brand")?.to_owned()).or_default() += 1;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let facets = |results: &Value, name: &str| -> BTreeMap<String, u64> {
        results["facets"][name].as_array().map(|a| a.iter().map(|c| (c["value"].as_str().unwrap_or("").to_owned(), c["count"].as_u64().unwrap_or(0))).collect()).unwrap_or_default()
    };
    let all = search(&app, "limit=1&facets=true").await?;
    ensure!(all["total"] == 60, "{all}");
    ensure!(facets(&all, "category") == scan_categories, "{all}");
    ensure!(facets(&all, "brand") == scan_brands, "{all}");
    // Facets count what matches: filtered, they equal the scan of that subset.
    let kitchen = search(&app, "category=kitchen&facets=true&limit=1").await?;
    ensure!(facets(&kitchen, "brand").values().sum::<u64>() == scan_categories["kitchen"], "{kitchen}");
    ensure!(search(&app, "limit=1").await?.get("facets").is_none(), "only when asked");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn hostile_input_is_answered_200_or_4xx_never_5xx() -> Result<()> {
    let mut app = spawn_app().await;
    ready(&app).await?;
    let _records = run_pipeline(&mut app);
    let token = shop(&app).await?;
    searchable(&app, &token).await?;
    let long = "kettle ".repeat(1_500);
    let syntax = "+-&|!(){}[]^\"~*?:\\/<>'`=,.;%$#@ AND OR NOT";
    let mut texts: Vec<String> = vec![
        String::new(), " ".into(), syntax.into(), "🫖☕ kettle".into(), "كتاب إبريق".into(), "\u{202e}elttek".into(),
        "\u{0}\u{1}".into(), "é".repeat(3_000), long, "a".into(), "*".into(), "\"unclosed".into(), "title:kettle".into(),
    ];
    texts.extend(syntax.chars().map(String::from));
    let mut statuses = BTreeMap::new();
    for text in &texts {
        for path in ["/api/v1/products/search?q=", "/api/v1/products/suggest?q="] {
            let url = format!("{}{path}{}", app.base, urlencode(text));
            let status = app.client.get(url).send().await?.status();
            ensure!(status.is_success() || status.is_client_error(), "{path}{text:?}: {status}");
            *statuses.entry(status.as_u16()).or_insert(0) += 1;
        }
    }
    for bad in [
        "sort=cheapest", "limit=0", "limit=1000", "limit=-1", "price_min=x", "price_min=10&price_max=1", "cursor=%%%",
        "cursor=bm90IGEgY3Vyc29y", "in_stock=maybe", "category=%2F%2F", "user_id=%20", "consistency_token=nope",
        "min_rating=6", "min_rating=-1", "min_rating=NaN", "min_rating=x", "facets=maybe", "sort=oldest",
    ] {
        let response = app.client.get(app.url(&format!("/api/v1/products/search?{bad}"))).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status == StatusCode::BAD_REQUEST && body["error"]["code"].is_string(), "{bad}: {status} {body}");
    }
    ensure!(statuses.keys().all(|s| *s == 200 || *s == 400), "{statuses:?}");
    app.stop().await;
    Ok(())
}

fn seed(views: &Views, products: usize) {
    views.apply((0..products).map(|i| {
        let mut row: ProductRow = product_row(&format!("r-{i}"), "kitchen", "acme");
        row.name = format!("Kettle number {i}");
        ViewUpdate::Product { key: row.product_id.clone(), row: Some(row) }
    }));
}

#[tokio::test]
async fn a_restart_with_a_missing_or_old_version_index_rebuilds_it_before_ready() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let search_dir = dir.path().join("search");
    for restart in ["first start", "old version", "missing"] {
        match restart {
            "old version" => std::fs::write(search_dir.join("VERSION"), "0\n")?,
            "missing" => std::fs::remove_dir_all(&search_dir)?,
            _ => {}
        }
        let configured = search_dir.clone();
        let app = spawn_app_with(move |c| c.search_dir = Some(configured)).await;
        seed(&app.views, 25);
        ready(&app).await?;
        let found = search(&app, "q=kettle&limit=1").await?;
        ensure!(found["total"] == 25, "{restart}: {found}");
        let version = std::fs::read_to_string(search_dir.join("VERSION"))?;
        ensure!(version.trim() == shopflow_search::SCHEMA_VERSION.to_string(), "{restart}: {version}");
        app.stop().await;
    }
    Ok(())
}

#[tokio::test]
async fn readyz_waits_for_the_search_index() -> Result<()> {
    let app = spawn_app().await;
    let _ = Arc::clone(&app.views);
    seed(&app.views, 10);
    report(&app.views, &HashMap::new());
    soon("ready", app.state.ready().wait_for(|r| *r)).await??;
    // Ready means searchable: the sync committed before readiness latched.
    ensure!(app.state.search.num_docs() == 10);
    ensure!(app.client.get(app.url("/readyz")).send().await?.status() == StatusCode::OK);
    app.stop().await;
    Ok(())
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
