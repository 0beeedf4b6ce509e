//! Accounts and sessions over HTTP on real ports, against the real pipeline on the embedded
//! log: two servers, one reading the pipeline's views in process and one a replica tailing
//! the changelogs, as two `serve` replicas would.

mod support;

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shopflow_events::types::Role;
use shopflow_serving::auth::keys::{now_secs, Claims};
use shopflow_serving::auth::KeyRing;
use shopflow_serving::ServingConfig;
use support::shop::{RealPipeline, Server};

/// Two servers: `servers[0]` answers from the pipeline's views, `servers[1]` from a replica's.
/// Fields drop in order: the servers are told to stop before the pipeline is joined.
struct Shop {
    servers: Vec<Server>,
    real: RealPipeline,
    client: reqwest::Client,
    config: ServingConfig,
}

impl Shop {
    async fn start(configure: impl FnOnce(&mut ServingConfig)) -> Shop {
        let real = RealPipeline::start().await;
        let mut config = RealPipeline::serving_config();
        // Every test signs in from 127.0.0.1 more often than a person would.
        config.gateway.credentials_per_ip = shopflow_serving::gateway::RateConfig::new(1_000, Duration::from_millis(1));
        configure(&mut config);
        let servers = vec![
            Server::start(config.clone(), real.log.clone(), real.views.clone()).await,
            Server::start(config.clone(), real.log.clone(), real.replica_views.clone()).await,
        ];
        Shop { servers, real, client: reqwest::Client::new(), config }
    }

    fn url(&self, server: usize, path: &str) -> String {
        format!("{}{path}", self.servers[server].base)
    }

    async fn call(&self, server: usize, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> Result<(StatusCode, Value)> {
        let mut request = self.client.request(method, self.url(server, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn post(&self, server: usize, path: &str, token: Option<&str>, body: Value) -> Result<(StatusCode, Value)> {
        self.call(server, reqwest::Method::POST, path, token, Some(body)).await
    }

    async fn get(&self, server: usize, path: &str, token: &str) -> Result<(StatusCode, Value)> {
        self.call(server, reqwest::Method::GET, path, Some(token), None).await
    }

    async fn register(&self, server: usize, email: &str, password: &str) -> Result<(StatusCode, Value)> {
        self.post(server, "/api/v1/auth/register", None, json!({"email": email, "password": password, "name": "Test"})).await
    }

    async fn login(&self, server: usize, email: &str, password: &str) -> Result<(StatusCode, Value)> {
        self.post(server, "/api/v1/auth/login", None, json!({"email": email, "password": password})).await
    }

    /// Registers and signs in; (access token, refresh token, user id).
    async fn customer(&self, email: &str) -> Result<(String, String, String)> {
        let (status, body) = self.register(0, email, "correct horse battery").await?;
        ensure!(status == StatusCode::CREATED, "register {email}: {status} {body}");
        let (status, body) = self.login(0, email, "correct horse battery").await?;
        ensure!(status == StatusCode::OK, "login {email}: {status} {body}");
        Ok((text(&body, "access_token")?, text(&body, "refresh_token")?, body["user"]["user_id"].as_str().context("user id")?.to_owned()))
    }

    async fn stop(mut self) {
        for server in self.servers.drain(..) {
            server.stop().await;
        }
        drop(self.real);
    }
}

fn text(body: &Value, field: &str) -> Result<String> {
    Ok(body[field].as_str().with_context(|| format!("{field} in {body}"))?.to_owned())
}

/// Polls `check` until it holds (each try is one HTTP round trip), within `within`.
async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let started = Instant::now();
    loop {
        if check().await? {
            return Ok(started.elapsed());
        }
        ensure!(started.elapsed() < within, "{what} did not happen within {within:?}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn register_login_me_refresh_logout_then_the_old_tokens_are_refused_everywhere() -> Result<()> {
    let shop = Shop::start(|_| {}).await;
    let (status, registered) = shop.register(0, " Ann@Example.com", "correct horse battery").await?;
    ensure!(status == StatusCode::CREATED, "{status} {registered}");
    ensure!(registered["user"]["email"] == "ann@example.com" && registered["user"]["role"] == "customer", "{registered}");
    ensure!(registered["user"].get("password_hash").is_none(), "the hash is never returned: {registered}");

    let (status, body) = shop.login(1, "ann@example.com", "wrong password!").await?;
    ensure!(status == StatusCode::UNAUTHORIZED && body["error"]["code"] == "invalid_credentials", "{status} {body}");
    let (status, body) = shop.login(1, "nobody@example.com", "correct horse battery").await?;
    ensure!(status == StatusCode::UNAUTHORIZED && body["error"]["code"] == "invalid_credentials", "same answer for unknown accounts: {body}");

    // Sign in through the replica: its views learned the account from the changelogs.
    let started = Instant::now();
    let session = loop {
        let (status, body) = shop.login(1, "ann@example.com", "correct horse battery").await?;
        if status == StatusCode::OK {
            break body;
        }
        ensure!(status == StatusCode::UNAUTHORIZED && started.elapsed() < Duration::from_secs(10), "{status} {body}");
    };
    ensure!(session["token_type"] == "Bearer" && session["expires_in"] == 900, "{session}");
    let access = text(&session, "access_token")?;
    let refresh = text(&session, "refresh_token")?;
    let user_id = text(&session["user"], "user_id")?;

    for server in [0, 1] {
        let (status, me) = shop.get(server, "/api/v1/users/me", &access).await?;
        ensure!(status == StatusCode::OK && me["user_id"] == user_id.as_str(), "server {server}: {status} {me}");
    }

    let (status, rotated) = shop.post(0, "/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await?;
    ensure!(status == StatusCode::OK, "{status} {rotated}");
    let access2 = text(&rotated, "access_token")?;
    let refresh2 = text(&rotated, "refresh_token")?;
    ensure!(refresh2 != refresh && rotated["session_id"] == session["session_id"], "{rotated}");
    ensure!(shop.get(1, "/api/v1/users/me", &access2).await?.0 == StatusCode::OK);

    let (status, _) = shop.post(1, "/api/v1/auth/logout", Some(&access2), json!({})).await?;
    ensure!(status == StatusCode::NO_CONTENT, "{status}");
    // The replica that logged out refuses at once; the other one as soon as its views pass
    // the revocation (measured; the benchmark reports the figure under load).
    let (status, body) = shop.get(1, "/api/v1/users/me", &access2).await?;
    ensure!(status == StatusCode::UNAUTHORIZED && body["error"]["code"] == "token_revoked", "{status} {body}");
    let delay = eventually("the other replica refuses the revoked token", Duration::from_secs(30), || async {
        Ok(shop.get(0, "/api/v1/users/me", &access).await?.0 == StatusCode::UNAUTHORIZED)
    })
    .await?;
    println!("revocation reached the other replica after {} ms", delay.as_millis());
    for token in [&access, &access2] {
        for server in [0, 1] {
            let (status, body) = shop.get(server, "/api/v1/users/me", token).await?;
            ensure!(status == StatusCode::UNAUTHORIZED && body["error"]["code"] == "token_revoked", "{status} {body}");
        }
    }
    for old in [&refresh, &refresh2] {
        let (status, body) = shop.post(0, "/api/v1/auth/refresh", None, json!({"refresh_token": old})).await?;
        ensure!(status == StatusCode::UNAUTHORIZED && body["error"]["code"] == "invalid_refresh_token", "{status} {body}");
    }
    shop.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tampered_expired_foreign_and_unsigned_tokens_are_refused() -> Result<()> {
    let shop = Shop::start(|_| {}).await;
    let (access, _, user_id) = shop.customer("bob@example.com").await?;
    let keys = KeyRing::from_config(&shop.config.auth)?;

    // Tampered: the customer makes itself admin; the signature no longer matches.
    let parts: Vec<&str> = access.split('.').collect();
    let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1])?)?.replace("\"customer\"", "\"admin\"");
    let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims), parts[2]);
    // Expired, though correctly signed.
    let now = now_secs();
    let expired = keys.sign(&Claims { sub: user_id.clone(), role: Role::Customer, sid: "s-1".into(), iss: "shopflow".into(), iat: now - 3_600, exp: now - 600 });
    // Signed with a key this deployment never had.
    let foreign_config = shopflow_serving::AuthConfig { key: Some("another-deployments-key-0123456789abcdef".into()), ..Default::default() };
    let foreign = KeyRing::from_config(&foreign_config)?.issue(&shopflow_events::Id::from(user_id.as_str()), Role::Admin, &shopflow_events::Id::from("s-1"));
    // alg: none with our kid and no signature.
    let none_header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#, keys.active_kid()));
    let unsigned = format!("{none_header}.{}.", parts[1]);

    for (name, token, code) in [
        ("tampered", tampered, "invalid_token"),
        ("expired", expired, "token_expired"),
        ("wrong key", foreign, "invalid_token"),
        ("alg none", unsigned, "invalid_token"),
        ("garbage", "not.a.jwt".to_owned(), "invalid_token"),
    ] {
        let (status, body) = shop.get(0, "/api/v1/users/me", &token).await?;
        ensure!(status == StatusCode::UNAUTHORIZED && body["error"]["code"] == code, "{name}: {status} {body}");
        let (status, _) = shop.post(0, "/api/v1/categories", Some(&token), json!({"name": "x"})).await?;
        ensure!(status == StatusCode::UNAUTHORIZED, "{name} writes: {status}");
    }
    // The genuine one still works.
    ensure!(shop.get(0, "/api/v1/users/me", &access).await?.0 == StatusCode::OK);
    shop.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reusing_a_rotated_refresh_token_revokes_the_whole_session() -> Result<()> {
    let shop = Shop::start(|_| {}).await;
    let (access, refresh, _) = shop.customer("carol@example.com").await?;
    let (status, rotated) = shop.post(0, "/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await?;
    ensure!(status == StatusCode::OK, "{status} {rotated}");
    let current = text(&rotated, "refresh_token")?;
    let current_access = text(&rotated, "access_token")?;

    // The thief (or a confused client) presents the old one: reuse.
    let (status, body) = shop.post(1, "/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await?;
    let code = body["error"]["code"].as_str().unwrap_or_default().to_owned();
    ensure!(status == StatusCode::UNAUTHORIZED && (code == "refresh_token_reused" || code == "invalid_refresh_token"), "{status} {body}");
    // Either way the family is gone: the legitimate current token and every access token of
    // the session stop working, on both replicas.
    eventually("the session is revoked on both replicas", Duration::from_secs(30), || async {
        let mut refused = true;
        for server in [0, 1] {
            refused &= shop.get(server, "/api/v1/users/me", &current_access).await?.0 == StatusCode::UNAUTHORIZED;
            refused &= shop.get(server, "/api/v1/users/me", &access).await?.0 == StatusCode::UNAUTHORIZED;
        }
        Ok(refused)
    })
    .await?;
    let (status, body) = shop.post(0, "/api/v1/auth/refresh", None, json!({"refresh_token": current})).await?;
    ensure!(status == StatusCode::UNAUTHORIZED && body["error"]["code"] == "invalid_refresh_token", "{status} {body}");
    // Signing in again opens a new session.
    ensure!(shop.login(0, "carol@example.com", "correct horse battery").await?.0 == StatusCode::OK);
    shop.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_account_or_session_made_through_one_replica_works_at_once_through_the_other() -> Result<()> {
    let shop = Shop::start(|_| {}).await;
    // Sign in through the server on the pipeline's views, refresh right away through the
    // replica, whose views follow a changelog hop behind: the replica must not call the
    // fresh session unknown (that would sign the customer out), nor miss a reuse after it.
    for i in 0..20 {
        let email = format!("dave{i}@example.com");
        let (_, refresh, _) = shop.customer(&email).await?;
        // Registered through one, signed in through the other at once.
        let (status, body) = shop.register(0, &format!("erin{i}@example.com"), "correct horse battery").await?;
        ensure!(status == StatusCode::CREATED, "{status} {body}");
        let (status, body) = shop.login(1, &format!("erin{i}@example.com"), "correct horse battery").await?;
        ensure!(status == StatusCode::OK, "customer {i}: sign-in through the replica right after registering: {status} {body}");
        let (status, rotated) = shop.post(1, "/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await?;
        ensure!(status == StatusCode::OK, "customer {i}: refresh through the replica: {status} {rotated}");
        let (status, body) = shop.post(0, "/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await?;
        ensure!(status == StatusCode::UNAUTHORIZED, "customer {i}: the rotated-away token again: {status} {body}");
    }
    shop.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_email_registered_concurrently_through_two_replicas_makes_exactly_one_account() -> Result<()> {
    let shop = Shop::start(|_| {}).await;
    for round in 0..8 {
        let email = format!("race-{round}@example.com");
        // Different passwords, so the winner is identifiable by which one signs in.
        let answers = join_all([0usize, 1].map(|server| {
            let (shop, email) = (&shop, email.clone());
            async move { shop.register(server, &email, &format!("password-of-server-{server}")).await }
        }))
        .await;
        let statuses: Vec<StatusCode> = answers.iter().map(|a| a.as_ref().map(|(s, _)| *s).unwrap_or(StatusCode::IM_A_TEAPOT)).collect();
        let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
        let conflicts = statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count();
        ensure!(created == 1 && conflicts == 1, "round {round}: {answers:?}");
        let winner = statuses.iter().position(|s| *s == StatusCode::CREATED).unwrap();
        let (status, _) = shop.login(0, &email, &format!("password-of-server-{winner}")).await?;
        ensure!(status == StatusCode::OK, "the winner's password signs in");
        let (status, _) = shop.login(0, &email, &format!("password-of-server-{}", 1 - winner)).await?;
        ensure!(status == StatusCode::UNAUTHORIZED, "the loser's password does not");
    }
    shop.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customers_reach_only_their_own_profile_and_addresses_and_never_the_catalog() -> Result<()> {
    let shop = Shop::start(|_| {}).await;
    let (a_token, _, a) = shop.customer("a@example.com").await?;
    let (b_token, _, b) = shop.customer("b@example.com").await?;

    let address = json!({"street": "1 Main St", "city": "Springfield", "country": "US", "zip": "12345", "is_default": true});
    let (status, added) = shop.post(0, &format!("/api/v1/users/{a}/addresses"), Some(&a_token), address.clone()).await?;
    ensure!(status == StatusCode::ACCEPTED, "{status} {added}");
    let token = text(&added, "consistency_token")?;
    // A strong read with the write's token, through the replica.
    let response = shop
        .client
        .get(shop.url(1, &format!("/api/v1/users/{a}/addresses")))
        .bearer_auth(&a_token)
        .header("x-consistency-token", &token)
        .send()
        .await?;
    ensure!(response.status() == StatusCode::OK);
    let list: Value = response.json().await?;
    ensure!(list["items"].as_array().map(Vec::len) == Some(1) && list["items"][0]["zip"] == "12345", "{list}");

    let (status, updated) =
        shop.call(0, reqwest::Method::PUT, &format!("/api/v1/users/{a}"), Some(&a_token), Some(json!({"name": "Ann A."}))).await?;
    ensure!(status == StatusCode::ACCEPTED, "{status} {updated}");

    // B probing A: every route answers 404, as for an id that does not exist.
    for (method, path, body) in [
        (reqwest::Method::GET, format!("/api/v1/users/{a}"), None),
        (reqwest::Method::PUT, format!("/api/v1/users/{a}"), Some(json!({"name": "pwned"}))),
        (reqwest::Method::GET, format!("/api/v1/users/{a}/addresses"), None),
        (reqwest::Method::POST, format!("/api/v1/users/{a}/addresses"), Some(address.clone())),
        (reqwest::Method::GET, "/api/v1/users/no-such-user".to_owned(), None),
    ] {
        let (status, body) = shop.call(0, method.clone(), &path, Some(&b_token), body).await?;
        ensure!(status == StatusCode::NOT_FOUND && body["error"]["code"] == "not_found", "{method} {path}: {status} {body}");
    }
    // Nothing of B's probing changed A.
    let (_, profile) = shop.get(0, &format!("/api/v1/users/{a}"), &a_token).await?;
    ensure!(profile["name"] != "pwned", "{profile}");
    // B's own profile is B's.
    let (status, own) = shop.get(0, &format!("/api/v1/users/{b}"), &b_token).await?;
    ensure!(status == StatusCode::OK && own["user_id"] == b.as_str());

    // Customers never write the catalog or stock.
    for (path, body) in [
        ("/api/v1/products", json!({"name": "x", "price": {"amount_minor": 1, "currency": "EUR"}, "category_id": "c", "brand_id": "b", "supplier_id": "s"})),
        ("/api/v1/categories", json!({"name": "x"})),
        ("/api/v1/stock/receipts", json!({"product_id": "p", "warehouse_id": "w", "quantity": 1})),
    ] {
        let (status, body) = shop.post(0, path, Some(&a_token), body).await?;
        ensure!(status == StatusCode::FORBIDDEN && body["error"]["code"] == "forbidden", "{path}: {status} {body}");
    }
    // Without a token, the user routes want one.
    let response = shop.client.get(shop.url(0, "/api/v1/users/me")).send().await?;
    ensure!(response.status() == StatusCode::UNAUTHORIZED);
    shop.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_answer_429_with_retry_after() -> Result<()> {
    let shop = Shop::start(|config| {
        config.gateway.login_failures_per_account = shopflow_serving::gateway::RateConfig::new(3, Duration::from_secs(60));
        config.gateway.per_user = shopflow_serving::gateway::RateConfig::new(5, Duration::from_secs(60));
    })
    .await;
    let (token, _, _) = shop.customer("dave@example.com").await?;

    // Failed sign-ins: three are answered, then the account is throttled, right password or not.
    for attempt in 0..4 {
        let (status, body) = shop.login(0, "dave@example.com", "not the password").await?;
        ensure!(status == StatusCode::UNAUTHORIZED, "attempt {attempt}: {status} {body}");
    }
    let response = shop.client.post(shop.url(0, "/api/v1/auth/login")).json(&json!({"email": "dave@example.com", "password": "correct horse battery"})).send().await?;
    ensure!(response.status() == StatusCode::TOO_MANY_REQUESTS, "{}", response.status());
    let retry_after: u64 = response.headers()["retry-after"].to_str()?.parse()?;
    ensure!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await?;
    ensure!(body["error"]["code"] == "too_many_failed_logins", "{body}");

    // Per user: a burst of 5, then 429 with Retry-After.
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let response = shop.client.get(shop.url(0, "/api/v1/users/me")).bearer_auth(&token).send().await?;
        statuses.push((response.status(), response.headers().get("retry-after").cloned()));
    }
    let limited: Vec<_> = statuses.iter().filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS).collect();
    ensure!(!limited.is_empty() && limited.iter().all(|(_, retry)| retry.is_some()), "{statuses:?}");
    // Another user is not affected.
    let (other, _, _) = shop.customer("erin@example.com").await?;
    ensure!(shop.get(0, "/api/v1/users/me", &other).await?.0 == StatusCode::OK);
    shop.stop().await;
    Ok(())
}
