//! Schemathesis against the real `shopflow` binary: the served OpenAPI document drives at
//! least `SHOPFLOW_FUZZ_MIN_REQUESTS` (default 1,000) generated requests, with every
//! credential the API knows, and the run must have no 5xx and no response that does not
//! conform to the document (status code documented, content type, body schema, headers).
//!
//! Schemathesis comes from `scripts/schemathesis.sh` (a venv cached under ~/.cache/shopflow;
//! the test command installs it first). The test is skipped, loudly, only without python3.
//!
//! Knobs: `SHOPFLOW_FUZZ_MAX_EXAMPLES` (per operation and credential), `SHOPFLOW_FUZZ_SEED`
//! (reproduce a run), `SHOPFLOW_FUZZ_MIN_REQUESTS`.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// The admin the fuzzed server creates at start (`up --admin-email`).
const ADMIN_EMAIL: &str = "fuzz-admin@example.com";
const ADMIN_PASSWORD: &str = "fuzz-admin-password-0001";
/// The customer the test registers.
const CUSTOMER_EMAIL: &str = "fuzz-customer@example.com";
const CUSTOMER_PASSWORD: &str = "fuzz-customer-password-0001";

/// One identity schemathesis runs as: its name in the output and its bearer token (`None`:
/// anonymous).
struct Credential {
    name: &'static str,
    bearer: Option<String>,
}

/// Every identity the fuzz run uses, acquired from the running server: the one place that
/// knows how to get a token. The admin signs in (created at start by `--admin-email`); the
/// customer registers, then signs in.
async fn credentials(base: &str) -> Vec<Credential> {
    let client = client();
    let response = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"email": CUSTOMER_EMAIL, "password": CUSTOMER_PASSWORD, "name": "Fuzz Customer"}))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status(), 201, "registering the customer: {}", response.text().await.unwrap_or_default());
    vec![
        Credential { name: "admin", bearer: Some(login(base, ADMIN_EMAIL, ADMIN_PASSWORD).await) },
        Credential { name: "customer", bearer: Some(login(base, CUSTOMER_EMAIL, CUSTOMER_PASSWORD).await) },
        // Secured routes must answer 401 as documented, and open ones work without a token.
        Credential { name: "anonymous", bearer: None },
    ]
}

/// An access token from `POST /api/v1/auth/login`.
async fn login(base: &str, email: &str, password: &str) -> String {
    let response = client()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "signing in as {email}: {body}");
    body["access_token"].as_str().expect("an access token").to_owned()
}

/// The fuzzed server's configuration (environment) beyond what every system test gets
/// (`tests/support`: the signing key, rate limits off). Relax here whatever else would get
/// in a fuzzer's way; the rest is the production default.
fn server_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SHOPFLOW_ADMIN_PASSWORD", ADMIN_PASSWORD),
        // Rate limits off (also set by tests/support): a fuzzer is one very busy client.
        ("SHOPFLOW_SERVING__GATEWAY__RATE_LIMITS", "false"),
        ("RUST_LOG", "warn"),
        // `POST /orders?wait=...` holds a request until the saga decides: a generated order
        // that is never decided (an unknown product) would hold each example for the
        // production bound.
        ("SHOPFLOW_SERVING__COMMERCE__ORDER_WAIT_MAX", "1s"),
    ]
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn python3_available() -> bool {
    Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// The `st` executable, installing schemathesis into its cached venv if needed.
fn schemathesis() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/schemathesis.sh");
    let output = Command::new(&script).arg("install").output().expect("scripts/schemathesis.sh runs");
    assert!(
        output.status.success(),
        "installing schemathesis failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim().lines().last().unwrap())
}

/// A little of everything, so reads find rows: a category, brand and supplier, a product
/// with a known id, a warehouse with stock of it, interactions. Returns a token the views
/// have passed (the fuzzer's consistency token: a generated one would name offsets no view
/// will ever reach, and wait for them until `503 consistency_timeout`).
async fn seed(base: &str, admin: &str) -> String {
    let client = client();
    let mut tokens = Vec::new();
    let write = |path: &'static str, body: Value| {
        let request = client.post(format!("{base}{path}")).bearer_auth(admin).json(&body);
        async move {
            let response = request.send().await.expect("the server answers");
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 202, "seeding {path}: {body}");
            body["consistency_token"].as_str().unwrap().to_owned()
        }
    };
    tokens.push(write("/api/v1/categories", json!({"id": "fuzz-cat", "name": "Fuzzing"})).await);
    tokens.push(write("/api/v1/brands", json!({"id": "fuzz-brand", "name": "Fuzzco"})).await);
    tokens.push(write("/api/v1/suppliers", json!({"id": "fuzz-sup", "name": "Fuzz Supply"})).await);
    tokens.push(
        write(
            "/api/v1/products",
            json!({"product_id": "fuzz-1", "name": "Fuzzer", "price": {"amount_minor": 999, "currency": "EUR"},
                   "category_id": "fuzz-cat", "brand_id": "fuzz-brand", "supplier_id": "fuzz-sup"}),
        )
        .await,
    );
    tokens.push(write("/api/v1/warehouses", json!({"warehouse_id": "fuzz-wh", "name": "Fuzz DC"})).await);
    tokens.push(
        write("/api/v1/stock/receipts", json!({"product_id": "fuzz-1", "warehouse_id": "fuzz-wh", "quantity": 5})).await,
    );
    for (kind, extra) in [
        ("product.viewed", json!({"product_id": "fuzz-1"})),
        ("recommendation.clicked", json!({"product_id": "fuzz-1", "source": "similar"})),
        ("search.performed", json!({"query": "fuzz", "results": 1})),
    ] {
        let mut body = json!({"type": kind, "user_id": "fuzz-user"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        tokens.push(write("/api/v1/interactions", body).await);
    }
    let token = merge_tokens(tokens.iter().map(String::as_str));
    let stock = get_consistent(base, "/api/v1/products/fuzz-1/stock", &token).await;
    assert_eq!(stock["total"], 5, "seeded stock is visible: {stock}");
    token
}

/// Waits until `/readyz` answers 200 (the views caught up with the demo catalog), so the
/// fuzzer never meets the documented start-up 503.
async fn wait_ready(base: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = client().get(format!("{base}/readyz")).send().await.map(|r| r.status().as_u16()).ok();
        if status == Some(200) {
            return;
        }
        assert!(Instant::now() < deadline, "not ready: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await; // probe interval
    }
}

/// Schemathesis configuration: fixed values for the consistency token (see [`seed`]), and
/// the seeded ids offered to path and query ids half of the time, so reads also hit rows.
fn config(dir: &Path, token: &str) -> PathBuf {
    let path = dir.join("schemathesis.toml");
    let text = format!(
        r#"
[dictionaries.ids]
values = ["fuzz-1", "fuzz-wh", "fuzz-cat", "fuzz-user"]

[parameters]
"query.consistency_token" = "{token}"
"header.x-consistency-token" = "{token}"
"path.id" = {{ dictionary = "ids", probability = 0.5 }}
"query.category" = {{ dictionary = "ids", probability = 0.5 }}
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// What one schemathesis run did, from its HAR (every request) and JUnit (every failure).
#[derive(Default)]
struct Outcome {
    requests: usize,
    by_status: BTreeMap<u16, usize>,
    server_errors: Vec<String>,
    failures: Vec<String>,
    /// Schemathesis' own crashes ("Runtime Error": e.g. a Hypothesis race between its worker
    /// threads), which say nothing about the API: printed, not failed on.
    tool_errors: Vec<String>,
}

fn har_outcome(har: &Path, outcome: &mut Outcome) {
    let har: Value = serde_json::from_slice(&std::fs::read(har).expect("HAR report")).expect("HAR is JSON");
    for entry in har["log"]["entries"].as_array().expect("HAR entries") {
        let status = entry["response"]["status"].as_u64().unwrap_or(0) as u16;
        outcome.requests += 1;
        *outcome.by_status.entry(status).or_default() += 1;
        if status >= 500 {
            let request = &entry["request"];
            outcome.server_errors.push(format!("{} {} -> {status}", request["method"], request["url"]));
        }
    }
}

/// Failure messages from the JUnit report: a `<failure>` per failed check, an `<error>` per
/// operation schemathesis could not test (an unusable schema is a failure of ours too,
/// unless the error is schemathesis crashing itself).
fn junit_failures(junit: &Path, outcome: &mut Outcome) {
    let xml = std::fs::read_to_string(junit).expect("JUnit report");
    for tag in ["failure", "error"] {
        let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
        let mut rest = xml.as_str();
        while let Some(start) = rest.find(&open) {
            let end = rest[start..].find(&close).map_or(rest.len(), |e| start + e);
            let text: String = rest[start..end].chars().take(2_000).collect();
            let body = text.split_once('>').map_or("", |(_, body)| body.trim_start());
            if tag == "error" && body.starts_with("Runtime Error") {
                outcome.tool_errors.push(text);
            } else {
                outcome.failures.push(text);
            }
            rest = &rest[end..];
        }
    }
}

fn run_schemathesis(st: &Path, base: &str, credential: &Credential, config: &Path, dir: &Path) -> Outcome {
    let reports = dir.join(credential.name);
    let max_examples = env_number("SHOPFLOW_FUZZ_MAX_EXAMPLES", 5);
    let seed = env_number("SHOPFLOW_FUZZ_SEED", 6);
    let mut command = Command::new(st);
    command
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(format!("{base}/api/v1/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            &max_examples.to_string(),
            "--seed",
            &seed.to_string(),
            "--workers",
            "2",
            "--continue-on-failure",
            "--request-timeout",
            "30",
            "--report",
            "junit,har",
        ])
        // Server-Sent Event streams never end by design: each example would hold the run for
        // the whole request timeout (they have their own tests in serving/tests/commerce_api.rs).
        .args(["--exclude-path-regex", "/(stream|events)$"])
        .arg("--report-har-path")
        .arg(reports.join("requests.har"))
        .arg("--report-junit-path")
        .arg(reports.join("junit.xml"))
        // Schemathesis keeps a cache in its working directory: the run's, not the repository.
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", "");
    if let Some(token) = &credential.bearer {
        command.args(["--header", &format!("Authorization: Bearer {token}")]);
        // Signing out would revoke the very token the rest of the run uses; the anonymous
        // run covers logout (401).
        command.args(["--exclude-path", "/api/v1/auth/logout"]);
    }
    let started = Instant::now();
    let output = command.output().expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!(
        "schemathesis as {} (seed {seed}, {max_examples} examples per operation, {:.1}s, exit {}):\n{}",
        credential.name,
        started.elapsed().as_secs_f64(),
        output.status,
        stdout.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    let mut outcome = Outcome::default();
    har_outcome(&reports.join("requests.har"), &mut outcome);
    junit_failures(&reports.join("junit.xml"), &mut outcome);
    // A non-zero exit is "failures or errors found" (counted above); one without any is
    // schemathesis failing to run at all.
    assert!(
        output.status.success() || !outcome.failures.is_empty() || !outcome.tool_errors.is_empty(),
        "schemathesis failed without reporting a failure: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    outcome
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_errors_and_no_nonconforming_responses() {
    if !python3_available() {
        eprintln!("SKIPPED: python3 is not installed, so schemathesis cannot run (install python3 to fuzz the API)");
        return;
    }
    let st = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut args = vec!["up".to_owned(), "--data-dir".into(), data.to_str().unwrap().into(), "--demo-products".into(), "20".into(), "--admin-email".into(), ADMIN_EMAIL.into()];
    // The shared test broker when the test command started one, else the embedded log.
    let broker = std::env::var("SHOPFLOW_TEST_KAFKA").is_ok_and(|v| !v.is_empty()).then(kafka_broker);
    if let Some(broker) = &broker {
        args.extend(["--kafka".into(), broker.addr().to_owned(), "--namespace".into(), unique_namespace()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = Shopflow::start_http_env(&args, &server_env(), dir.path()).await;
    wait_ready(&app.base).await;
    let credentials = credentials(&app.base).await;
    let admin = credentials[0].bearer.clone().expect("the admin signed in");
    let token = seed(&app.base, &admin).await;
    let config = config(dir.path(), &token);

    let mut total = Outcome::default();
    for credential in credentials {
        let base = app.base.clone();
        let (st, config, reports) = (st.clone(), config.clone(), dir.path().to_owned());
        let outcome =
            tokio::task::spawn_blocking(move || run_schemathesis(&st, &base, &credential, &config, &reports)).await.unwrap();
        total.requests += outcome.requests;
        for (status, n) in outcome.by_status {
            *total.by_status.entry(status).or_default() += n;
        }
        total.server_errors.extend(outcome.server_errors);
        total.failures.extend(outcome.failures);
        total.tool_errors.extend(outcome.tool_errors);
    }

    println!("schemathesis: {} requests generated; by status: {:?}", total.requests, total.by_status);
    println!("schemathesis: {} server errors, {} failed checks", total.server_errors.len(), total.failures.len());
    for error in &total.tool_errors {
        println!("schemathesis crashed on an operation (not an API failure):\n{error}");
    }
    let min_requests = env_number("SHOPFLOW_FUZZ_MIN_REQUESTS", 1_000) as usize;
    assert!(total.requests >= min_requests, "only {} requests (at least {min_requests} wanted)", total.requests);
    assert!(total.server_errors.is_empty(), "5xx answers:\n{}", total.server_errors.join("\n"));
    assert!(total.failures.is_empty(), "failed checks:\n{}", total.failures.join("\n\n"));
    // The server survived the run.
    assert_eq!(client().get(format!("{}/healthz", app.base)).send().await.unwrap().status(), 200);
    app.terminate();
}
