//! Strong reads under load and readiness, over a real socket: the cap on reads waiting for a
//! consistency token, tokens no view could ever pass, and `/readyz` against a log with a
//! backlog at start.

mod support;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shopflow_views::Views;
use shopflow_events::types::NamedEntityUpserted;
use shopflow_events::{Envelope, Event, Id};
use shopflow_ingest::{EventLog, OutRecord};
use shopflow_serving::{AppState, Application, ServingConfig};
use support::*;

/// Bounds a step that must complete (instead of hanging a failing test for the read bound).
async fn soon<T>(what: &str, future: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(Duration::from_secs(10), future).await.with_context(|| format!("{what} did not happen"))
}

/// Asserts a JSON error with the given status and code; returns the error object.
async fn expect_error(response: reqwest::Response, status: StatusCode, code: &str) -> Result<Value> {
    let got = response.status();
    let body: Value = response.json().await?;
    ensure!(got == status, "expected {status} {code}, got {got}: {body}");
    ensure!(body["error"]["code"] == code, "expected code {code}: {body}");
    ensure!(body["error"]["message"].is_string(), "no message: {body}");
    Ok(body["error"].clone())
}

/// A read of the product list with a consistency token, started in the background.
fn strong_read(app: &TestApp, token: &str) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let request = app.client.get(app.url(&format!("/api/v1/products?consistency_token={token}")));
    tokio::spawn(request.send())
}

#[tokio::test]
async fn reads_beyond_max_consistency_waiters_get_503_while_the_waiting_ones_keep_waiting() -> Result<()> {
    let app = spawn_app_with(|c| {
        c.max_consistency_waiters = 2;
        c.read_wait_max = Duration::from_secs(30);
    })
    .await;
    let mut waiting = app.state.waiting_reads();
    let first = strong_read(&app, "catalog:0:999");
    let second = strong_read(&app, "catalog:1:999");
    soon("two waiting reads", waiting.wait_for(|n| *n == 2)).await??;

    let third = app.client.get(app.url("/api/v1/products/p-1")).header("x-consistency-token", "catalog:2:999").send().await?;
    ensure!(third.headers().get("retry-after").is_some_and(|v| v == "1"), "{:?}", third.headers());
    ensure!(third.headers().contains_key("x-view-frontier"), "a refused read is still a read: lag headers");
    let error = expect_error(third, StatusCode::SERVICE_UNAVAILABLE, "too_many_waiters").await?;
    ensure!(error["message"].as_str().unwrap_or("").contains('2'), "{error}");
    ensure!(!first.is_finished() && !second.is_finished(), "the waiting reads were cut off");
    ensure!(*waiting.borrow() == 2 && app.views.progress.registered_waiters() == 2);

    // At the cap, reads that need no wait are still answered: without a token, or with one
    // the views have passed (a report that wakes neither waiter: they need offset 999).
    let eventual = app.client.get(app.url("/api/v1/products")).send().await?;
    ensure!(eventual.status() == StatusCode::OK, "{}", eventual.status());
    report(&app.views, &HashMap::from([(("catalog".to_owned(), 0), 1)]));
    let passed = app.client.get(app.url("/api/v1/products?consistency_token=catalog:0:0")).send().await?;
    ensure!(passed.status() == StatusCode::OK, "{}", passed.status());
    ensure!(!first.is_finished() && !second.is_finished());

    // The views pass both tokens: both waiting reads answer, and the slots are free again.
    report(&app.views, &HashMap::from([(("catalog".to_owned(), 0), 1000), (("catalog".to_owned(), 1), 1000)]));
    for read in [first, second] {
        let response = soon("a released read", read).await???;
        ensure!(response.status() == StatusCode::OK, "{}", response.status());
    }
    soon("no waiting reads", waiting.wait_for(|n| *n == 0)).await??;
    ensure!(app.views.progress.registered_waiters() == 0, "nothing left registered");
    let again = strong_read(&app, "catalog:2:999");
    soon("a new waiting read", waiting.wait_for(|n| *n == 1)).await??;
    ensure!(!again.is_finished());
    again.abort();
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_client_that_gives_up_frees_its_waiting_slot() -> Result<()> {
    let app = spawn_app_with(|c| {
        c.max_consistency_waiters = 1;
        c.read_wait_max = Duration::from_secs(30);
    })
    .await;
    let mut waiting = app.state.waiting_reads();
    let read = strong_read(&app, "catalog:0:999");
    soon("one waiting read", waiting.wait_for(|n| *n == 1)).await??;
    // Dropping the request closes its connection; the server drops the handler with it.
    read.abort();
    soon("the slot freed", waiting.wait_for(|n| *n == 0)).await??;
    ensure!(app.views.progress.registered_waiters() == 0, "the progress registration went with it");
    let next = strong_read(&app, "catalog:0:999");
    soon("the slot reused", waiting.wait_for(|n| *n == 1)).await??;
    next.abort();
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn tokens_no_view_could_pass_are_refused_with_400_at_once() -> Result<()> {
    let app = spawn_app_with(|c| c.read_wait_max = Duration::from_secs(30)).await;
    for (token, needle) in [
        ("payments:0:1", "\"payments\""),
        ("catalog:0:1,decisions:0:1", "\"decisions\""),
        // The test log has PARTITIONS (4) partitions per topic: 0..=3.
        ("catalog:4:1", "no partition 4"),
        ("inventory:99:0", "no partition 99"),
    ] {
        let by_query = app.client.get(app.url(&format!("/api/v1/products?consistency_token={token}")));
        let by_header = app.client.get(app.url("/api/v1/warehouses")).header("x-consistency-token", token);
        for request in [by_query, by_header] {
            let response = soon(&format!("the answer to {token}"), request.send()).await??;
            let error = expect_error(response, StatusCode::BAD_REQUEST, "invalid_consistency_token").await?;
            let message = error["message"].as_str().unwrap_or("");
            ensure!(message.contains(needle), "{token}: {message}");
        }
    }
    ensure!(*app.state.waiting_reads().borrow() == 0 && app.views.progress.registered_waiters() == 0, "nothing waited");
    app.stop().await;
    Ok(())
}

/// A server over a log that already holds records when it starts, as after a restart.
struct Started {
    base: String,
    state: AppState,
    views: Arc<Views>,
    log: Arc<MemLog>,
    client: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl Started {
    async fn over(log: Arc<MemLog>, configure: impl FnOnce(&mut ServingConfig)) -> Result<Self> {
        let mut config = support::test_config();
        configure(&mut config);
        let views = Arc::new(Views::new());
        let app = Application::build(config, log.clone(), views.clone()).await?;
        let base = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .expect("server");
        });
        Ok(Self { base, state, views, log, client: reqwest::Client::new(), stop, server })
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response> {
        Ok(self.client.get(format!("{}{path}", self.base)).send().await?)
    }

    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        Ok(self.server.await?)
    }
}

/// Appends `count` category upserts to the catalog topic, as earlier runs would have.
async fn backlog(log: &MemLog, count: usize) -> Result<()> {
    for i in 0..count {
        let event = Event::CategoryUpserted(NamedEntityUpserted { id: Id::new(format!("cat-{i}"))?, name: format!("c{i}") });
        let envelope = Envelope::new(event);
        log.append(vec![OutRecord::keyed("catalog", envelope.key().as_str(), envelope.to_json())]).await?;
    }
    Ok(())
}

#[tokio::test]
async fn readyz_is_503_while_the_views_are_behind_the_log_at_start_and_200_once_caught_up() -> Result<()> {
    let (log, mut appended) = MemLog::new();
    backlog(&log, 6).await?;
    let records: Vec<Appended> = std::iter::from_fn(|| appended.try_recv().ok()).collect();
    ensure!(records.len() == 6);
    let app = Started::over(log, |_| {}).await?;
    let mut ready = app.state.ready();
    ensure!(!*ready.borrow());
    let waiter = tokio::spawn({
        let state = app.state.clone();
        async move { state.wait_ready().await }
    });

    let health = app.get("/healthz").await?;
    ensure!(health.status() == StatusCode::OK, "healthz is liveness: {}", health.status());
    let response = app.get("/readyz").await?;
    ensure!(response.headers().get("retry-after").is_some_and(|v| v == "1"));
    let error = expect_error(response, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await?;
    ensure!(error["behind"] == json!({"records": 6, "topics": {"catalog": 6, "carts": 0, "interactions": 0, "inventory": 0, "orders": 0, "users": 0}}), "{error}");
    ensure!(error["message"].as_str().unwrap_or("").contains("not reported progress"), "{error}");

    // The pipeline works through half the backlog.
    let mut covered = HashMap::new();
    for record in &records[..3] {
        apply_like_pipeline(&app.views, record, &mut covered);
    }
    let error = expect_error(app.get("/readyz").await?, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await?;
    ensure!(error["behind"]["records"] == 3 && error["behind"]["topics"]["catalog"] == 3, "{error}");
    ensure!(error["message"].as_str().unwrap_or("").contains("catching up"), "{error}");
    ensure!(!*ready.borrow() && !waiter.is_finished());

    // A write after the start is not part of what readiness waits for.
    let late = app
        .client
        .post(format!("{}/api/v1/categories", app.base))
        .bearer_auth(support::admin_token(&support::test_config()))
        .json(&json!({"name": "late"}))
        .send()
        .await?;
    ensure!(late.status() == StatusCode::ACCEPTED, "{}", late.status());
    let late = appended.recv().await.context("the late write")?;

    for record in &records[3..] {
        apply_like_pipeline(&app.views, record, &mut covered);
    }
    soon("ready", ready.wait_for(|r| *r)).await??;
    soon("wait_ready", waiter).await??;
    let response = app.get("/readyz").await?;
    ensure!(response.status() == StatusCode::OK, "{}", response.status());
    let body: Value = response.json().await?;
    ensure!(body["status"] == "ready", "{body}");

    // Ready latches: the late write is still unapplied (the views lag), /readyz stays 200.
    let read = app.get("/api/v1/products").await?;
    ensure!(read.headers()["x-view-lag-records"] == "1", "{:?}", read.headers());
    ensure!(app.get("/readyz").await?.status() == StatusCode::OK);
    apply_like_pipeline(&app.views, &late, &mut covered);
    app.stop().await
}

#[tokio::test]
async fn an_empty_log_is_ready_once_the_views_report_progress() -> Result<()> {
    let app = spawn_app().await;
    let error = expect_error(app.client.get(app.url("/readyz")).send().await?, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await?;
    ensure!(error["behind"]["records"] == 0, "{error}");
    let waiter = tokio::spawn({
        let state = app.state.clone();
        async move { state.wait_ready().await }
    });
    ensure!(!waiter.is_finished());
    report(&app.views, &HashMap::new());
    soon("wait_ready", waiter).await??;
    ensure!(*app.state.ready().borrow());
    ensure!(app.client.get(app.url("/readyz")).send().await?.status() == StatusCode::OK);
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn readiness_waits_for_the_log_when_it_is_away_at_start() -> Result<()> {
    let (log, _appended) = MemLog::new();
    backlog(&log, 2).await?;
    log.set_available(false);
    let app = Started::over(log, |c| c.end_offset_poll = Duration::from_millis(20)).await?;
    // Progress alone cannot make it ready: what "caught up" means is not known yet.
    report(&app.views, &HashMap::new());
    let error = expect_error(app.get("/readyz").await?, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await?;
    ensure!(error.get("behind").is_none(), "unknown, not zero: {error}");
    ensure!(error["message"].as_str().unwrap_or("").contains("end offsets"), "{error}");

    // The log comes back: the next poll sets the target (2 catalog records), the views
    // cover them, and readiness follows without anyone asking /readyz.
    app.log.set_available(true);
    let mut polled = app.state.end_offsets.subscribe();
    soon("an end offset poll", polled.changed()).await??;
    ensure!(!*app.state.ready().borrow(), "the backlog is not applied yet");
    let ends = app.log.end_offsets("catalog").await?;
    let covered: HashMap<(String, u32), u64> =
        ends.iter().enumerate().map(|(p, end)| (("catalog".to_owned(), p as u32), *end)).collect();
    report(&app.views, &covered);
    soon("ready", app.state.ready().wait_for(|r| *r)).await??;
    ensure!(app.get("/readyz").await?.status() == StatusCode::OK);
    app.stop().await
}
