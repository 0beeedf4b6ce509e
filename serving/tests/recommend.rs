//! The recommendation routes over a real socket: views filled the way the pipeline fills them,
//! and a small co-occurrence model standing in for the NMF model behind the `Recommender`
//! seam (the routes' dependency, not the system under test).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::Value;
use shopflow_views::{InteractionRow, PurchaseRow, StockRow, TrendingRow, ViewUpdate, Views};
use shopflow_events::Id;
use shopflow_serving::{ModelSlot, Recommender};
use support::*;
use tokio::sync::watch;

/// Scores products by how often they share a basket with the given ones. A product shares a
/// basket with itself, so `similar` would return the product first unless told not to.
#[derive(Clone)]
struct CoModel {
    version: &'static str,
    co: BTreeMap<Id, BTreeMap<Id, f64>>,
    /// False: ignores `skip`, as a buggy model might; serving must filter anyway.
    honours_skip: bool,
}

impl CoModel {
    fn new(version: &'static str, baskets: &[&[&str]]) -> Self {
        let mut co: BTreeMap<Id, BTreeMap<Id, f64>> = BTreeMap::new();
        for basket in baskets {
            for a in *basket {
                for b in *basket {
                    *co.entry(Id::from(*a)).or_default().entry(Id::from(*b)).or_default() += 1.0;
                }
            }
        }
        Self { version, co, honours_skip: true }
    }

    fn sloppy(mut self) -> Self {
        self.honours_skip = false;
        self
    }

    fn boxed(&self) -> Option<Box<dyn Recommender>> {
        Some(Box::new(self.clone()))
    }

    fn top(&self, scores: BTreeMap<Id, f64>, n: usize, skip: &dyn Fn(&Id) -> bool) -> Vec<(Id, f64)> {
        let mut ranked: Vec<(Id, f64)> =
            scores.into_iter().filter(|(id, _)| !self.honours_skip || !skip(id)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(n);
        ranked
    }
}

impl Recommender for CoModel {
    fn version(&self) -> String {
        self.version.to_owned()
    }

    fn recommend(&self, interactions: &[(Id, f64)], n: usize, skip: &dyn Fn(&Id) -> bool) -> Vec<(Id, f64)> {
        let mut scores = BTreeMap::new();
        for (product, weight) in interactions {
            for (other, count) in self.co.get(product).into_iter().flatten() {
                *scores.entry(other.clone()).or_insert(0.0) += weight * count;
            }
        }
        for (product, _) in interactions {
            scores.remove(product);
        }
        self.top(scores, n, skip)
    }

    fn similar(&self, product: &Id, n: usize, skip: &dyn Fn(&Id) -> bool) -> Option<Vec<(Id, f64)>> {
        Some(self.top(self.co.get(product)?.clone(), n, skip))
    }
}

/// v1: a sits with b, c, d, x (out of stock) and ghost (not in the catalog).
fn model_v1() -> CoModel {
    CoModel::new("v1", &[&["a", "b", "c", "x"], &["a", "d"], &["a", "ghost"], &["b", "e"]])
}

/// v2: a different opinion, so answers tell the versions apart.
fn model_v2() -> CoModel {
    CoModel::new("v2", &[&["a", "e"], &["a", "f"], &["d", "g"]])
}

/// A product and its stock, as the pipeline publishes them: the catalog row, and a stock row
/// from which the view layer derives the product's stock total.
fn product(id: &str, category: &str, stock: i64) -> [ViewUpdate; 2] {
    let row = product_row(id, category, "brand");
    let key = (Id::from(id), Id::from("wh"));
    let stock_row = (stock > 0).then(|| StockRow { product_id: Id::from(id), warehouse_id: Id::from("wh"), warehouse_name: None, quantity: stock });
    [ViewUpdate::Product { key: row.product_id.clone(), row: Some(row) }, ViewUpdate::Stock { key, row: stock_row }]
}

fn trending_row(id: &str, category: Option<&str>, score: i64) -> ViewUpdate {
    ViewUpdate::Trending {
        key: Id::from(id),
        row: Some(TrendingRow { product_id: Id::from(id), category_id: category.map(Id::from), score }),
    }
}

fn interaction(user: &str, product: &str, weight: i64) -> ViewUpdate {
    ViewUpdate::Interaction {
        key: (Id::from(user), Id::from(product)),
        row: Some(InteractionRow { user_id: Id::from(user), product_id: Id::from(product), weight }),
    }
}

fn purchase(user: &str, product: &str) -> ViewUpdate {
    ViewUpdate::Purchase {
        key: (Id::from(user), Id::from(product)),
        row: Some(PurchaseRow { user_id: Id::from(user), product_id: Id::from(product), quantity: 1 }),
    }
}

/// shoes: a b c d g; hats: e f h x (x out of stock); ghost is trending but not in the catalog;
/// d's trending row does not know its category yet. u1 clicked a (weight 3) and bought b.
fn fill(views: &Views) {
    let products = [
        product("a", "shoes", 5),
        product("b", "shoes", 5),
        product("c", "shoes", 5),
        product("d", "shoes", 5),
        product("g", "shoes", 5),
        product("e", "hats", 5),
        product("f", "hats", 5),
        product("h", "hats", 5),
        product("x", "hats", 0),
    ];
    let mut updates: Vec<ViewUpdate> = products.into_iter().flatten().collect();
    updates.extend([
        trending_row("e", Some("hats"), 50),
        trending_row("x", Some("hats"), 40),
        trending_row("b", Some("shoes"), 30),
        trending_row("h", Some("hats"), 20),
        trending_row("f", Some("hats"), 20),
        trending_row("g", Some("shoes"), 15),
        trending_row("d", None, 12),
        trending_row("ghost", Some("hats"), 10),
        trending_row("c", Some("shoes"), 5),
        trending_row("a", Some("shoes"), 0),
    ]);
    updates.extend([interaction("u1", "a", 3), purchase("u1", "b")]);
    views.apply(updates);
    report(views, &HashMap::new());
}

async fn get(app: &TestApp, path: &str) -> Result<(StatusCode, Value)> {
    let response = app.client.get(app.url(path)).send().await?;
    let status = response.status();
    ensure!(response.headers().contains_key("x-view-frontier"), "{path}: no lag headers");
    Ok((status, response.json().await?))
}

async fn ok(app: &TestApp, path: &str) -> Result<Value> {
    let (status, body) = get(app, path).await?;
    ensure!(status == StatusCode::OK, "{path}: {status} {body}");
    Ok(body)
}

fn ids(body: &Value) -> Vec<&str> {
    body["items"].as_array().map_or_else(Vec::new, |items| items.iter().filter_map(|i| i["product_id"].as_str()).collect())
}

fn scores(body: &Value) -> Vec<f64> {
    body["items"].as_array().map_or_else(Vec::new, |items| items.iter().filter_map(|i| i["score"].as_f64()).collect())
}

#[tokio::test]
async fn model_recommendations_leave_out_purchased_out_of_stock_and_unknown_products() -> Result<()> {
    // Both a model that honours `skip` and one that ignores it: the filter is serving's job.
    for model in [model_v1(), model_v1().sloppy()] {
        let slot = Arc::new(ModelSlot::new());
        slot.set(model.boxed());
        let app = spawn_app_with_models(slot).await;
        fill(&app.views);

        // a's basket mates: b (bought), c, d, x (out of stock), ghost (unknown), all tied at 3.
        let body = ok(&app, "/api/v1/recommend/user/u1?limit=2").await?;
        if model.honours_skip {
            ensure!(ids(&body) == ["c", "d"], "{body}");
            ensure!(scores(&body) == [3.0, 3.0], "weights reach the model as f64: {body}");
            ensure!(body["source"] == "model", "{body}");
        } else {
            // Its top 2 were b (dropped) and c; trending makes up the count.
            ensure!(ids(&body) == ["c", "e"] && body["source"] == "model+trending", "{body}");
        }
        ensure!(body["model_version"] == "v1" && body["user_id"] == "u1", "{body}");
        let item = &body["items"][0];
        ensure!(item["name"] == "product c" && item["category_id"] == "shoes", "{item}");
        ensure!(item["price"]["amount_minor"] == 1999 && item["price"]["currency"] == "EUR", "{item}");

        // Fewer than asked: trending fills, under the same rules and without repeats.
        let body = ok(&app, "/api/v1/recommend/user/u1").await?;
        ensure!(ids(&body) == ["c", "d", "e", "f", "h", "g"], "trending ties go by id: {body}");
        ensure!(scores(&body)[2..] == [50.0, 20.0, 20.0, 15.0], "{body}");
        ensure!(body["source"] == "model+trending" && body["model_version"] == "v1", "{body}");
        app.stop().await;
    }
    Ok(())
}

#[tokio::test]
async fn cold_start_users_and_a_missing_model_get_trending() -> Result<()> {
    let slot = Arc::new(ModelSlot::new());
    let app = spawn_app_with_models(slot.clone()).await;
    fill(&app.views);

    // No model promoted: trending, still without u1's purchase.
    let body = ok(&app, "/api/v1/recommend/user/u1").await?;
    ensure!(ids(&body) == ["e", "f", "h", "g", "d", "c"], "{body}");
    ensure!(body["source"] == "trending" && body["model_version"].is_null(), "{body}");

    // A model, but a user it knows nothing about.
    slot.set(model_v1().boxed());
    let body = ok(&app, "/api/v1/recommend/user/newcomer?limit=3").await?;
    ensure!(ids(&body) == ["e", "b", "f"], "{body}");
    ensure!(body["source"] == "trending" && body["model_version"].is_null(), "{body}");

    // Interactions the model does not know: it is asked, says nothing, trending answers.
    app.views.apply([interaction("stranger", "h", 2)]);
    let body = ok(&app, "/api/v1/recommend/user/stranger?limit=3").await?;
    ensure!(ids(&body) == ["e", "b", "f"], "{body}");
    ensure!(body["source"] == "trending" && body["model_version"] == "v1", "{body}");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_new_users_first_interaction_changes_the_answer_for_a_read_with_its_token() -> Result<()> {
    let slot = Arc::new(ModelSlot::new());
    slot.set(model_v2().boxed());
    let app = spawn_app_with_models(slot).await;
    fill(&app.views);
    let before = ok(&app, "/api/v1/recommend/user/u-new?limit=3").await?;
    ensure!(before["source"] == "trending" && ids(&before) == ["e", "b", "f"], "{before}");

    // The click was written at interactions:2:0; a read with that token waits until the
    // pipeline has folded it into the views.
    let mut waiting = app.state.waiting_reads();
    let read = tokio::spawn({
        let client = app.client.clone();
        let url = app.url("/api/v1/recommend/user/u-new?limit=3&consistency_token=interactions:2:0");
        async move { client.get(url).send().await }
    });
    waiting.wait_for(|n| *n == 1).await?;
    ensure!(!read.is_finished(), "answered before the interaction was in the view");
    app.views.apply([interaction("u-new", "d", 1)]);
    report(&app.views, &HashMap::from([(("interactions".to_owned(), 2), 1)]));

    let response = read.await??;
    ensure!(response.status() == StatusCode::OK, "{}", response.status());
    let after: Value = response.json().await?;
    // v2 puts d with g: the model now answers first, trending fills the rest.
    ensure!(ids(&after) == ["g", "e", "b"], "{after}");
    ensure!(after["source"] == "model+trending" && after["model_version"] == "v2", "{after}");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn similar_products_leave_out_the_product_itself_and_fall_back_to_its_category() -> Result<()> {
    for model in [model_v1(), model_v1().sloppy()] {
        let slot = Arc::new(ModelSlot::new());
        slot.set(model.boxed());
        let app = spawn_app_with_models(slot.clone()).await;
        fill(&app.views);

        // a's top match is a itself (4 baskets); then b, c, d; x is out of stock, ghost unknown.
        let body = ok(&app, "/api/v1/recommend/similar/a?limit=3").await?;
        if model.honours_skip {
            ensure!(ids(&body) == ["b", "c", "d"] && body["source"] == "model", "{body}");
        } else {
            // Its top 3 were a itself (dropped), b and c; trending shoes make up the count.
            ensure!(ids(&body) == ["b", "c", "g"] && body["source"] == "model+trending", "{body}");
        }
        ensure!(body["model_version"] == "v1" && body["product_id"] == "a", "{body}");
        // Filled from trending shoes (b, c, d are taken; d's category comes from the catalog).
        let body = ok(&app, "/api/v1/recommend/similar/a").await?;
        ensure!(ids(&body) == ["b", "c", "d", "g"] && body["source"] == "model+trending", "{body}");

        // An out-of-stock product still has neighbours.
        let body = ok(&app, "/api/v1/recommend/similar/x").await?;
        ensure!(ids(&body)[..3] == ["a", "b", "c"], "{body}");

        // Unknown to the model: trending in its category, without itself or x.
        let body = ok(&app, "/api/v1/recommend/similar/f").await?;
        ensure!(ids(&body) == ["e", "h"], "{body}");
        ensure!(body["source"] == "trending" && body["model_version"] == "v1", "{body}");

        // No model at all: the same fallback.
        slot.set(None);
        let body = ok(&app, "/api/v1/recommend/similar/a").await?;
        ensure!(ids(&body) == ["b", "g", "d", "c"], "{body}");
        ensure!(body["source"] == "trending" && body["model_version"].is_null(), "{body}");

        // Not in the catalog: 404, even though trending and the model know it.
        let (status, body) = get(&app, "/api/v1/recommend/similar/ghost").await?;
        ensure!(status == StatusCode::NOT_FOUND && body["error"]["code"] == "not_found", "{status} {body}");
        app.stop().await;
    }
    Ok(())
}

#[tokio::test]
async fn trending_is_ordered_by_score_per_category_without_out_of_stock() -> Result<()> {
    let app = spawn_app().await;
    fill(&app.views);
    let body = ok(&app, "/api/v1/recommend/trending").await?;
    ensure!(ids(&body) == ["e", "b", "f", "h", "g", "d", "c"], "{body}");
    ensure!(scores(&body) == [50.0, 30.0, 20.0, 20.0, 15.0, 12.0, 5.0], "{body}");
    ensure!(body["category"].is_null() && body["source"] == "trending", "{body}");

    let hats = ok(&app, "/api/v1/recommend/trending?category=hats").await?;
    ensure!(ids(&hats) == ["e", "f", "h"] && hats["category"] == "hats", "{hats}");
    let shoes = ok(&app, "/api/v1/recommend/trending?category=shoes&limit=3").await?;
    ensure!(ids(&shoes) == ["b", "g", "d"], "{shoes}");
    let none = ok(&app, "/api/v1/recommend/trending?category=socks").await?;
    ensure!(ids(&none).is_empty(), "{none}");

    // A change in the view shows on the next read: e sells out and f overtakes b.
    let [_, sold_out] = product("e", "hats", 0);
    app.views.apply([sold_out, trending_row("f", Some("hats"), 31)]);
    let body = ok(&app, "/api/v1/recommend/trending?limit=3").await?;
    ensure!(ids(&body) == ["f", "b", "h"], "{body}");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn bad_ids_limits_and_tokens_get_json_errors_with_lag_headers() -> Result<()> {
    let app = spawn_app().await;
    fill(&app.views);
    for (path, status, code) in [
        ("/api/v1/recommend/user/u1?limit=0", StatusCode::BAD_REQUEST, "invalid_query"),
        ("/api/v1/recommend/user/u1?limit=101", StatusCode::BAD_REQUEST, "invalid_query"),
        ("/api/v1/recommend/user/u1?limit=ten", StatusCode::BAD_REQUEST, "invalid_query"),
        ("/api/v1/recommend/user/u1?limit=-1", StatusCode::BAD_REQUEST, "invalid_query"),
        ("/api/v1/recommend/user/bad%20id", StatusCode::BAD_REQUEST, "invalid_id"),
        ("/api/v1/recommend/similar/bad%20id", StatusCode::BAD_REQUEST, "invalid_id"),
        ("/api/v1/recommend/similar/a?limit=1000", StatusCode::BAD_REQUEST, "invalid_query"),
        ("/api/v1/recommend/trending?category=bad%20id", StatusCode::BAD_REQUEST, "invalid_query"),
        ("/api/v1/recommend/trending?limit=0", StatusCode::BAD_REQUEST, "invalid_query"),
        ("/api/v1/recommend/trending?consistency_token=nope", StatusCode::BAD_REQUEST, "invalid_consistency_token"),
        ("/api/v1/recommend/similar/nothing", StatusCode::NOT_FOUND, "not_found"),
    ] {
        let (got, body) = get(&app, path).await?;
        ensure!(got == status && body["error"]["code"] == code, "{path}: {got} {body}");
        ensure!(body["error"]["message"].is_string(), "{path}: {body}");
    }
    let r = app.client.post(app.url("/api/v1/recommend/trending")).send().await?;
    ensure!(r.status() == StatusCode::METHOD_NOT_ALLOWED, "{}", r.status());
    app.stop().await;
    Ok(())
}

/// A model that panics; the answer degrades to trending instead of a 500.
struct Panicking;

impl Recommender for Panicking {
    fn version(&self) -> String {
        "broken".into()
    }
    fn recommend(&self, _: &[(Id, f64)], _: usize, _: &dyn Fn(&Id) -> bool) -> Vec<(Id, f64)> {
        panic!("corrupt factors")
    }
    fn similar(&self, _: &Id, _: usize, _: &dyn Fn(&Id) -> bool) -> Option<Vec<(Id, f64)>> {
        panic!("corrupt factors")
    }
}

#[tokio::test]
async fn a_panicking_model_degrades_to_trending_and_answers_are_counted_by_source() -> Result<()> {
    let slot = Arc::new(ModelSlot::new());
    slot.set(Some(Box::new(Panicking)));
    let app = spawn_app_with_models(slot.clone()).await;
    fill(&app.views);
    let body = ok(&app, "/api/v1/recommend/user/u1?limit=2").await?;
    ensure!(ids(&body) == ["e", "f"] && body["source"] == "trending", "{body}");
    let body = ok(&app, "/api/v1/recommend/similar/a?limit=1").await?;
    ensure!(ids(&body) == ["b"] && body["source"] == "trending", "{body}");

    slot.set(model_v1().boxed());
    ok(&app, "/api/v1/recommend/user/u1").await?;
    let metrics = app.client.get(app.url("/metrics")).send().await?.text().await?;
    for labels in [r#"endpoint="user",source="trending""#, r#"endpoint="user",source="model+trending""#, r#"endpoint="similar",source="trending""#] {
        ensure!(
            metrics.lines().any(|l| l.starts_with("recommendation_responses_total{") && l.contains(labels)),
            "no {labels} in\n{metrics}"
        );
    }
    app.stop().await;
    Ok(())
}

/// What the concurrent clients saw: per route (user, similar) and answer (v1, v2, no model),
/// how many responses, plus anything that was not a 200 with one of the expected bodies.
#[derive(Default)]
struct Observed {
    seen: [[usize; 3]; 2],
    failures: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_and_rollback_while_requests_are_in_flight_never_fail_a_request() -> Result<()> {
    const CLIENTS: usize = 6;
    const ROUNDS: usize = 25;
    const BURST: usize = 40;
    let routes = ["/api/v1/recommend/user/u1", "/api/v1/recommend/similar/a"];
    let (v1, v2) = (model_v1(), model_v2());
    let slot = Arc::new(ModelSlot::new());
    let app = spawn_app_with_models(slot.clone()).await;
    fill(&app.views);

    // The views stay still, so each (route, model) has exactly one right answer: a response
    // must be one of them in full, never a mix of two models.
    let mut expected = [[Value::Null, Value::Null, Value::Null], [Value::Null, Value::Null, Value::Null]];
    for (answer, model) in [v1.boxed(), v2.boxed(), None].into_iter().enumerate() {
        slot.set(model);
        for (route, path) in routes.iter().enumerate() {
            expected[route][answer] = ok(&app, path).await?;
        }
    }
    for route in &expected {
        ensure!(route[0] != route[1] && route[1] != route[2] && route[0] != route[2], "answers must differ: {route:?}");
    }
    let expected = Arc::new(expected);

    let observed = Arc::new(watch::channel(Observed::default()).0);
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(Mutex::new(0usize));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (http, base) = (app.client.clone(), app.url(""));
        let (expected, observed, stop, requests) = (expected.clone(), observed.clone(), stop.clone(), requests.clone());
        clients.push(tokio::spawn(async move {
            let mut i = client;
            while !stop.load(Ordering::Relaxed) {
                let route = i % 2;
                i += 1;
                let outcome: Result<usize> = async {
                    let response = http.get(format!("{base}{}", routes[route])).send().await?;
                    let status = response.status();
                    let body: Value = response.json().await?;
                    ensure!(status == StatusCode::OK, "{} answered {status}: {body}", routes[route]);
                    expected[route].iter().position(|e| e == &body).with_context(|| format!("unexpected body {body}"))
                }
                .await;
                *requests.lock() += 1;
                observed.send_modify(|o| match outcome {
                    Ok(answer) => o.seen[route][answer] += 1,
                    Err(e) => o.failures.push(format!("{e:#}")),
                });
            }
        }));
    }

    let swapping = async {
        let mut seen = observed.subscribe();
        for _ in 0..ROUNDS {
            // Back-to-back swaps land in the middle of requests, and drop old models while
            // requests may still hold them.
            for k in 0..BURST {
                slot.set(match k % 5 {
                    4 => None,
                    k if k % 2 == 0 => v1.boxed(),
                    _ => v2.boxed(),
                });
                tokio::task::yield_now().await;
            }
            // Then each state in turn until both routes have answered from it, so every state
            // is seen whatever the scheduling (a wait on the observations, not on time).
            for (answer, model) in [v1.boxed(), v2.boxed(), None].into_iter().enumerate() {
                let before = {
                    let now = seen.borrow();
                    [now.seen[0][answer], now.seen[1][answer]]
                };
                slot.set(model);
                seen.wait_for(|o| {
                    !o.failures.is_empty() || (o.seen[0][answer] > before[0] && o.seen[1][answer] > before[1])
                })
                .await?;
                if !seen.borrow().failures.is_empty() {
                    return anyhow::Ok(());
                }
            }
        }
        anyhow::Ok(())
    };
    let result = tokio::time::timeout(Duration::from_secs(120), swapping).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await?;
    }
    result.context("swapping did not finish")??;

    let observed = observed.borrow();
    ensure!(observed.failures.is_empty(), "{} failed requests, first: {}", observed.failures.len(), observed.failures[0]);
    for (route, seen) in routes.iter().zip(observed.seen) {
        ensure!(seen.iter().all(|n| *n >= ROUNDS), "{route}: answers per (v1, v2, none) {seen:?}");
    }
    let total = *requests.lock();
    eprintln!("{total} requests during {} swaps, answers per route {:?}", ROUNDS * (BURST + 3), observed.seen);
    drop(observed);
    app.stop().await;
    Ok(())
}
