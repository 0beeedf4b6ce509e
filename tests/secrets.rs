//! No password and no token anywhere: a real `shopflow up` (admin bootstrapped from the
//! environment) goes through registrations, failed and successful sign-ins, token use,
//! refresh, refresh reuse and logout at debug log level; then every log line it wrote and
//! every byte under its data directory (the embedded log's topics, the view changelogs, the
//! pipeline's snapshots) is searched for each password and token it saw.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::*;

async fn call(base: &str, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    // Not `support::client()`: that one signs every request as a minted admin.
    let mut request = reqwest::Client::new().request(method, format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn login(base: &str, email: &str, password: &str) -> (u16, Value) {
    call(base, reqwest::Method::POST, "/api/v1/auth/login", None, Some(json!({"email": email, "password": password}))).await
}

fn files_under(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
}

/// The logs without terminal colour codes, so field names and values read as written.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn no_password_or_token_reaches_a_log_line_topic_view_or_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin_password = "Adm1n-pa55word-for-the-secrets-test";
    let env = [
        ("RUST_LOG", "debug,rdkafka=warn,hyper=info,h2=info,reqwest=info"),
        ("SHOPFLOW_ADMIN_PASSWORD", admin_password),
        ("SHOPFLOW_PIPELINE__SNAPSHOT_INTERVAL_MS", "50"),
    ];
    let args = ["up", "--data-dir", data.to_str().unwrap(), "--demo-products", "3", "--admin-email", "root@example.com"];
    let app = Shopflow::start_http_env(&args, &env, dir.path()).await;
    let base = app.base.clone();
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;

    let mut secrets: Vec<String> = vec![admin_password.to_owned()];
    let password = "customer-pa55word-42";
    secrets.push(password.to_owned());
    let (status, body) = call(&base, post.clone(), "/api/v1/auth/register", None, Some(json!({"email": "cust@example.com", "password": password, "name": "Cust"}))).await;
    assert_eq!(status, 201, "{body}");
    let user = body["user"]["user_id"].as_str().unwrap().to_owned();

    for wrong in ["wrong-guess-one-111", "wrong-guess-two-222", "wrong-guess-three-333"] {
        secrets.push(wrong.to_owned());
        assert_eq!(login(&base, "cust@example.com", wrong).await.0, 401);
    }
    // The admin the binary bootstrapped can sign in (its registration went through the log).
    let admin = loop {
        let (status, body) = login(&base, "root@example.com", admin_password).await;
        if status == 200 {
            break body;
        }
        assert_eq!(status, 401, "{body}");
    };
    let (_, session) = login(&base, "cust@example.com", password).await;
    let (access, refresh) = (session["access_token"].as_str().unwrap().to_owned(), session["refresh_token"].as_str().unwrap().to_owned());
    let admin_access = admin["access_token"].as_str().unwrap().to_owned();
    secrets.extend([access.clone(), refresh.clone(), admin_access.clone(), admin["refresh_token"].as_str().unwrap().to_owned()]);

    assert_eq!(call(&base, get.clone(), "/api/v1/users/me", Some(&access), None).await.0, 200);
    let address = json!({"street": "2 Side St", "city": "Shelbyville", "country": "US"});
    assert_eq!(call(&base, post.clone(), &format!("/api/v1/users/{user}/addresses"), Some(&access), Some(address)).await.0, 202);
    let product = json!({"name": "Secret-free Kettle", "price": {"amount_minor": 1999, "currency": "EUR"}, "category_id": "c", "brand_id": "b", "supplier_id": "s"});
    let (status, created) = call(&base, post.clone(), "/api/v1/products", Some(&admin_access), Some(product)).await;
    assert_eq!(status, 202, "{created}");
    // A customer's token is not an admin's.
    assert_eq!(call(&base, post.clone(), "/api/v1/categories", Some(&access), Some(json!({"name": "x"}))).await.0, 403);

    let (status, rotated) = call(&base, post.clone(), "/api/v1/auth/refresh", None, Some(json!({"refresh_token": refresh}))).await;
    assert_eq!(status, 200, "{rotated}");
    secrets.extend([rotated["access_token"].as_str().unwrap().to_owned(), rotated["refresh_token"].as_str().unwrap().to_owned()]);
    // Reuse of the first refresh token: refused, and the session is revoked.
    assert_eq!(call(&base, post.clone(), "/api/v1/auth/refresh", None, Some(json!({"refresh_token": refresh}))).await.0, 401);
    let (_, again) = login(&base, "cust@example.com", password).await;
    let last_access = again["access_token"].as_str().unwrap().to_owned();
    secrets.extend([last_access.clone(), again["refresh_token"].as_str().unwrap().to_owned()]);
    assert_eq!(call(&base, post.clone(), "/api/v1/auth/logout", Some(&last_access), None).await.0, 204);
    assert_eq!(call(&base, get.clone(), "/api/v1/users/me", Some(&last_access), None).await.0, 401);
    // The product write has reached the views (and so the changelogs and the next snapshot).
    let token = created["consistency_token"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    get_consistent(&base, &format!("/api/v1/products/{id}"), token).await;
    let stderr = app.stderr.clone();
    app.terminate(); // SIGTERM: a final snapshot is written

    // Each token whole, and its most secret part alone (a JWT's signature, a refresh token's
    // random half), so that a token split or re-encoded on the way is still caught.
    let mut needles = secrets.clone();
    for secret in &secrets {
        if let Some(last) = secret.rsplit(['.']).next().filter(|p| p.len() >= 20 && p != secret) {
            needles.push(last.to_owned());
        }
    }
    let logs = strip_ansi(&std::fs::read_to_string(&stderr).unwrap());
    let mut files = Vec::new();
    files_under(&data, &mut files);

    // The search can see: what should be there is found.
    assert!(logs.contains("signed in") && logs.contains(&format!("user_id={user}")), "debug logs with user ids were captured: {logs}");
    assert!(files.iter().any(|(_, bytes)| contains(bytes, "cust@example.com")), "topic records are searchable");
    let refresh_digest: String = Sha256::digest(refresh.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert!(files.iter().any(|(_, bytes)| contains(bytes, &refresh_digest)), "a refresh token's digest is stored");
    assert!(files.iter().any(|(name, _)| name.contains("pipeline")), "snapshots were written: {:?}", files.iter().map(|f| &f.0).collect::<Vec<_>>());

    for needle in &needles {
        assert!(!logs.contains(needle.as_str()), "a secret is in the logs: {needle}");
        for (name, bytes) in &files {
            assert!(!contains(bytes, needle), "a secret is in {name}: {needle}");
        }
    }
    println!("searched {} log bytes and {} files ({} bytes) for {} secrets", logs.len(), files.len(), files.iter().map(|f| f.1.len()).sum::<usize>(), needles.len());
}
