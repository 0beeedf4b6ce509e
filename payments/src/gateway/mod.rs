//! A simulated card processor in test mode, over HTTP, modelled on Stripe's test mode.
//!
//! | route | answers |
//! |---|---|
//! | `POST /v1/tokens` {number, exp_month, exp_year, cvc?} | `200` [`api::Token`]; `402` card errors (`invalid_number`, `expired_card`, ...) |
//! | `POST /v1/charges` [`api::ChargeRequest`] | `200` [`api::Charge`]; `402` declines; `503` transient; `409` key reused with other parameters |
//! | `POST /v1/refunds` [`api::RefundRequest`] | `200` [`api::Refund`]; `400 amount_too_large`; `404 no_such_payment` |
//! | `GET /v1/ledger` | [`ledger::LedgerListing`]: every charge and refund |
//! | `GET /v1/stats` | [`GatewayStats`] (this run) |
//! | `GET /healthz` | `200` |
//!
//! Charges and refunds are idempotent by key, across restarts: the first outcome is written to
//! the ledger (fsynced, one fsync for the writes of many concurrent requests) before it is
//! answered, and a repeat gets it back (header `Idempotent-Replayed: true`) without charging
//! again. Errors are `{"error":{"code":"...","message":"..."}}`. A card number is checked and dropped: it is
//! never logged, stored or echoed (not even in a parse error).

pub mod api;
pub mod cards;
pub mod client;
pub mod ledger;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::{GatewayConfig, PaymentsError};
use api::{Charge, ChargeRequest, ErrorBody, ErrorDetail, Refund, RefundRequest, Token, TokenizeRequest, REPLAYED_HEADER};
use cards::{check_card, fixed_token, today_utc, Behaviour};
use ledger::{ChargeEntry, ChargeOutcome, Entry, Ledger, LedgerListing, RefundEntry, TokenEntry};

/// Longest idempotency key accepted.
const MAX_KEY_LEN: usize = 255;
/// How long a stopping gateway waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the gateway did in this run (not persisted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStats {
    /// Charges decided and recorded (successes and declines).
    pub charges: u64,
    pub refunds: u64,
    pub tokens: u64,
    /// Requests answered from the ledger (a repeated key).
    pub replays: u64,
    /// Transient failures served.
    pub transient_failures: u64,
    /// fsyncs of the ledger: fewer than the writes when concurrent requests shared them.
    pub ledger_syncs: u64,
}

/// An error answer.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
    replayed: bool,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), replayed: false }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

/// Decline codes are open-ended strings in the ledger; answers need `&'static str` codes, so
/// the known ones map back and anything else reads `card_declined`.
fn decline_code(code: &str) -> &'static str {
    match code {
        "insufficient_funds" => "insufficient_funds",
        "expired_card" => "expired_card",
        _ => "card_declined",
    }
}

/// The gateway's state: the ledger and what is kept in memory only.
struct Core {
    ledger: Ledger,
    /// Transient failures served per charge key (memory only: a restarted gateway fails a
    /// `tok_transient` charge twice again, which is what a flaky processor does too).
    transient: HashMap<String, u32>,
    stats: GatewayStats,
}

impl Core {
    fn tokenize(&mut self, request: TokenizeRequest) -> Result<Token, Failure> {
        let card = check_card(&request.number, request.exp_month, request.exp_year, request.cvc.as_deref(), today_utc())
            .map_err(|e| Failure::new(StatusCode::PAYMENT_REQUIRED, e.code(), e.message()))?;
        let token = format!("tok_{}", uuid::Uuid::new_v4().simple());
        let entry = TokenEntry { token: token.clone(), card: card.clone(), at: crate::now_ms() };
        self.ledger.append(Entry::Token(entry)).map_err(unavailable)?;
        self.stats.tokens += 1;
        Ok(Token { token, last4: card.last4, brand: card.brand, exp_month: card.exp_month, exp_year: card.exp_year })
    }

    fn charge(&mut self, request: ChargeRequest) -> Result<(Charge, bool), Failure> {
        check_key(&request.idempotency_key)?;
        if request.amount_minor < 0 {
            return Err(Failure::invalid("amount_minor must not be negative"));
        }
        check_currency(&request.currency)?;
        if let Some(first) = self.ledger.charges.get(&request.idempotency_key) {
            if first.token != request.token || first.amount_minor != request.amount_minor || first.currency != request.currency {
                return Err(Failure::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_reused",
                    "this idempotency key was used for a charge with other parameters",
                ));
            }
            self.stats.replays += 1;
            return charge_answer(first).map(|c| (c, true)).map_err(|f| Failure { replayed: true, ..f });
        }
        let card = self
            .ledger
            .tokens
            .get(&request.token)
            .cloned()
            .or_else(|| fixed_token(&request.token))
            .ok_or_else(|| Failure::new(StatusCode::BAD_REQUEST, "invalid_token", "no such token"))?;
        let outcome = match card.behaviour {
            Behaviour::Succeeds => succeeded(),
            Behaviour::Declines(code) => ChargeOutcome::Declined { code },
            Behaviour::FailsTransiently(failures) => {
                let served = self.transient.entry(request.idempotency_key.clone()).or_default();
                if *served < failures {
                    *served += 1;
                    self.stats.transient_failures += 1;
                    return Err(Failure::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "processing_error",
                        "the card network did not answer; retry with the same idempotency key",
                    ));
                }
                succeeded()
            }
        };
        let entry = ChargeEntry {
            idempotency_key: request.idempotency_key,
            token: request.token,
            amount_minor: request.amount_minor,
            currency: request.currency,
            outcome,
            at: crate::now_ms(),
        };
        self.ledger.append(Entry::Charge(entry.clone())).map_err(unavailable)?;
        self.transient.remove(&entry.idempotency_key);
        self.stats.charges += 1;
        charge_answer(&entry).map(|c| (c, false))
    }

    fn refund(&mut self, request: RefundRequest) -> Result<(Refund, bool), Failure> {
        check_key(&request.idempotency_key)?;
        if request.amount_minor <= 0 {
            return Err(Failure::invalid("amount_minor must be greater than zero"));
        }
        if let Some(first) = self.ledger.refunds.get(&request.idempotency_key) {
            if first.payment_id != request.payment_id || first.amount_minor != request.amount_minor {
                return Err(Failure::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_reused",
                    "this idempotency key was used for a refund with other parameters",
                ));
            }
            self.stats.replays += 1;
            return Ok((refund_answer(first), true));
        }
        let charge = self
            .ledger
            .payments
            .get(&request.payment_id)
            .and_then(|key| self.ledger.charges.get(key))
            .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, "no_such_payment", "no succeeded charge has this payment id"))?;
        let refunded = self.ledger.refunded.get(&request.payment_id).copied().unwrap_or(0);
        let left = charge.amount_minor - refunded;
        if request.amount_minor > left {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "amount_too_large",
                format!("a refund of {} exceeds the {left} left to refund of {} captured", request.amount_minor, charge.amount_minor),
            ));
        }
        let entry = RefundEntry {
            idempotency_key: request.idempotency_key,
            refund_id: format!("re_{}", uuid::Uuid::new_v4().simple()),
            payment_id: request.payment_id,
            amount_minor: request.amount_minor,
            currency: charge.currency.clone(),
            at: crate::now_ms(),
        };
        self.ledger.append(Entry::Refund(entry.clone())).map_err(unavailable)?;
        self.stats.refunds += 1;
        Ok((refund_answer(&entry), false))
    }
}

fn succeeded() -> ChargeOutcome {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    let authorization_code = (0..6).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    ChargeOutcome::Succeeded { payment_id: format!("ch_{}", uuid::Uuid::new_v4().simple()), authorization_code }
}

fn charge_answer(entry: &ChargeEntry) -> Result<Charge, Failure> {
    match &entry.outcome {
        ChargeOutcome::Succeeded { payment_id, authorization_code } => Ok(Charge {
            payment_id: payment_id.clone(),
            status: "succeeded".into(),
            authorization_code: authorization_code.clone(),
            amount_minor: entry.amount_minor,
            currency: entry.currency.clone(),
        }),
        ChargeOutcome::Declined { code } => {
            Err(Failure::new(StatusCode::PAYMENT_REQUIRED, decline_code(code), "the card was declined"))
        }
    }
}

fn refund_answer(entry: &RefundEntry) -> Refund {
    Refund {
        refund_id: entry.refund_id.clone(),
        payment_id: entry.payment_id.clone(),
        status: "succeeded".into(),
        amount_minor: entry.amount_minor,
        currency: entry.currency.clone(),
    }
}

fn unavailable(e: PaymentsError) -> Failure {
    tracing::error!(error = %e, "gateway ledger write failed");
    Failure::new(StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable", "the gateway could not record the outcome; retry")
}

fn check_key(key: &str) -> Result<(), Failure> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Failure::invalid(format!("idempotency_key must be 1 to {MAX_KEY_LEN} characters")));
    }
    Ok(())
}

fn check_currency(currency: &str) -> Result<(), Failure> {
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Failure::invalid("currency must be a three-letter upper-case ISO 4217 code"));
    }
    Ok(())
}

struct Shared {
    core: Mutex<Core>,
    /// Syncs the ledger outside `core`'s lock, so concurrent charges share fsyncs.
    syncer: Arc<crate::jsonl::Syncer>,
    latency: Duration,
}

impl Shared {
    /// Runs one operation as a processor would: half the latency, the decision (recorded and
    /// fsynced on a blocking thread, which finishes even if the client hangs up), the other
    /// half. A client that dies in the second half has been charged without hearing of it.
    async fn process<T: Send + 'static>(
        self: &Arc<Self>,
        op: impl FnOnce(&mut Core) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, Failure> {
        let before = self.latency / 2;
        if !before.is_zero() {
            tokio::time::sleep(before).await;
        }
        let shared = self.clone();
        let out = tokio::task::spawn_blocking(move || shared.decide(op)).await.expect("gateway operations do not panic");
        let after = self.latency - before;
        if !after.is_zero() {
            tokio::time::sleep(after).await;
        }
        out
    }

    /// Decides under the lock, then waits (outside it) until the ledger is durable up to
    /// everything written by then: the answer may rest on this decision or on an earlier one
    /// still being synced (a repeated key answered from the ledger).
    fn decide<T>(&self, op: impl FnOnce(&mut Core) -> Result<T, Failure>) -> Result<T, Failure> {
        let (out, written) = {
            let mut core = self.core.lock();
            let out = op(&mut core);
            (out, core.ledger.written())
        };
        self.syncer.sync_to(written).map_err(unavailable)?;
        out
    }

    fn stats(&self) -> GatewayStats {
        GatewayStats { ledger_syncs: self.syncer.syncs(), ..self.core.lock().stats.clone() }
    }
}

/// Starts gateways. See the module docs for the routes.
pub struct Gateway;

impl Gateway {
    /// Loads the ledger under `config.data_dir`, binds `config.listen` and serves in the
    /// background until [`RunningGateway::stop`].
    pub async fn start(config: GatewayConfig) -> Result<RunningGateway, PaymentsError> {
        let dir = config.data_dir.clone();
        let ledger = tokio::task::spawn_blocking(move || Ledger::open(&dir))
            .await
            .map_err(|e| PaymentsError::Stopped(format!("loading the ledger: {e}")))??;
        let shared = Arc::new(Shared {
            syncer: ledger.syncer(),
            core: Mutex::new(Core { ledger, transient: HashMap::new(), stats: GatewayStats::default() }),
            latency: Duration::from_millis(config.latency_ms),
        });
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| PaymentsError::Bind { addr: config.listen, source })?;
        let addr = listener.local_addr().map_err(|source| PaymentsError::Bind { addr: config.listen, source })?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        tracing::info!(%addr, latency_ms = config.latency_ms, data_dir = %config.data_dir.display(), "payment gateway (test mode) listening");
        Ok(RunningGateway { addr, shared, stop: Some(stop), task })
    }
}

/// A gateway serving in the background.
pub struct RunningGateway {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningGateway {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`, the base URL of [`client::GatewayClient`].
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every charge and refund in the ledger.
    pub fn listing(&self) -> LedgerListing {
        self.shared.core.lock().ledger.listing().clone()
    }

    pub fn stats(&self) -> GatewayStats {
        self.shared.stats()
    }

    /// Stops accepting, lets requests in flight finish (bounded), and returns.
    pub async fn stop(mut self) -> Result<(), PaymentsError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(DRAIN_TIMEOUT, &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(PaymentsError::Serve(e)),
            Ok(Err(e)) => return Err(PaymentsError::Stopped(format!("gateway task: {e}"))),
            Err(_) => {
                tracing::warn!("gateway requests still in flight after the drain timeout; stopping anyway");
                self.task.abort();
            }
        }
        tracing::info!(addr = %self.addr, "payment gateway stopped");
        Ok(())
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/tokens", post(tokenize))
        .route("/v1/charges", post(charge))
        .route("/v1/refunds", post(refund))
        .route("/v1/ledger", get(ledger_listing))
        .route("/v1/stats", get(stats))
        .with_state(shared)
}

/// Parses a request body; `echo` says whether the parse error may be shown (never for a body
/// that holds a card number: serde quotes the values it trips on).
fn parse<T: DeserializeOwned>(body: &[u8], echo: bool) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|e| match echo {
        true => Failure::invalid(format!("invalid request body: {e}")),
        false => Failure::invalid("invalid request body: expected {number, exp_month, exp_year, cvc?}"),
    })
}

async fn tokenize(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: TokenizeRequest = match parse(&body, false) {
        Ok(r) => r,
        Err(f) => return f.into_response(),
    };
    // No latency: tokenizing is the customer waiting at checkout, not the saga.
    let shared2 = shared.clone();
    let answer = tokio::task::spawn_blocking(move || shared2.decide(|core| core.tokenize(request))).await.expect("no panic");
    match answer {
        Ok(token) => {
            tracing::info!(brand = %token.brand, last4 = %token.last4, "card tokenized");
            Json(token).into_response()
        }
        Err(f) => f.into_response(),
    }
}

async fn charge(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: ChargeRequest = match parse(&body, true) {
        Ok(r) => r,
        Err(f) => return f.into_response(),
    };
    let key = request.idempotency_key.clone();
    let amount = request.amount_minor;
    match shared.process(move |core| core.charge(request)).await {
        Ok((charge, replayed)) => {
            tracing::debug!(key = %key, amount, payment_id = %charge.payment_id, replayed, "charge succeeded");
            replay_header(Json(charge).into_response(), replayed)
        }
        Err(f) => {
            tracing::debug!(key = %key, amount, code = f.code, replayed = f.replayed, "charge not made");
            f.into_response()
        }
    }
}

async fn refund(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: RefundRequest = match parse(&body, true) {
        Ok(r) => r,
        Err(f) => return f.into_response(),
    };
    let key = request.idempotency_key.clone();
    match shared.process(move |core| core.refund(request)).await {
        Ok((refund, replayed)) => {
            tracing::debug!(key = %key, amount = refund.amount_minor, replayed, "refund made");
            replay_header(Json(refund).into_response(), replayed)
        }
        Err(f) => {
            tracing::debug!(key = %key, code = f.code, "refund refused");
            f.into_response()
        }
    }
}

async fn ledger_listing(State(shared): State<Arc<Shared>>) -> Json<LedgerListing> {
    Json(shared.core.lock().ledger.listing().clone())
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<GatewayStats> {
    Json(shared.stats())
}

fn replay_header(mut response: Response, replayed: bool) -> Response {
    if replayed {
        response.headers_mut().insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message } };
        replay_header((self.status, Json(body)).into_response(), self.replayed)
    }
}

#[cfg(test)]
mod tests;
