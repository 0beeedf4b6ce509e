//! Secrets never reach the logs: the admin token, right or wrong, is absent from everything
//! the server traces, even at TRACE level.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::{ensure, Result};
use reqwest::StatusCode;
use support::*;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

// current_thread: the server runs on this thread, so the thread-local subscriber sees it all.
#[tokio::test(flavor = "current_thread")]
async fn access_tokens_are_never_logged() -> Result<()> {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("shopflow_serving=trace,tower_http=trace")
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let app = spawn_app_with(|_| {}).await;
    let token = app.admin_token.clone().expect("admin token");
    let r = app.client.post(app.url("/api/v1/products")).bearer_auth(&token).json(&product_body()).send().await?;
    ensure!(r.status() == StatusCode::ACCEPTED);
    let r = app.client.post(app.url("/api/v1/products")).bearer_auth("a-wrong-guess-token").json(&product_body()).send().await?;
    ensure!(r.status() == StatusCode::UNAUTHORIZED);
    app.stop().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone())?;
    ensure!(logs.contains("event appended"), "the capture works: {logs}");
    ensure!(logs.contains("http request"), "request spans are traced: {logs}");
    ensure!(logs.contains("user_id=admin-1"), "request logs carry the user id: {logs}");
    // Any third of the token (header, claims, signature) would be a leak.
    for part in token.split('.') {
        ensure!(!logs.contains(part), "token leaked: {logs}");
    }
    ensure!(!logs.contains("a-wrong-guess-token"), "presented token leaked: {logs}");
    Ok(())
}
