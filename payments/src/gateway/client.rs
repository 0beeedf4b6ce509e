//! A small typed client of the gateway (reqwest), with a timeout per request.

use std::time::Duration;

use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::api::{Charge, ChargeRequest, ErrorBody, Refund, RefundRequest, Token, TokenizeRequest};
use super::ledger::LedgerListing;
use super::GatewayStats;

/// Why a gateway call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// A final answer: a decline (`402`, e.g. `card_declined`) or a refused request (`4xx`,
    /// e.g. `invalid_token`, `amount_too_large`). Retrying with the same key gives it again.
    #[error("gateway refused ({status}): {code}")]
    Refused { status: u16, code: String, message: String },
    /// No answer, or "try again" (`503`, `5xx`, timeout, connection refused). Retrying with the
    /// same idempotency key is safe: the charge is made at most once.
    #[error("gateway unavailable: {0}")]
    Unavailable(String),
}

impl GatewayError {
    pub fn is_transient(&self) -> bool {
        matches!(self, GatewayError::Unavailable(_))
    }

    /// The gateway's code of a final answer.
    pub fn code(&self) -> Option<&str> {
        match self {
            GatewayError::Refused { code, .. } => Some(code),
            GatewayError::Unavailable(_) => None,
        }
    }
}

/// Talks to one gateway. Cheap to clone (one connection pool).
#[derive(Clone, Debug)]
pub struct GatewayClient {
    base: String,
    http: reqwest::Client,
}

impl GatewayClient {
    /// A client of the gateway at `base_url` (`http://host:port`); every request is bounded by
    /// `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, GatewayError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| GatewayError::Unavailable(format!("building the http client: {e}")))?;
        Ok(Self { base: base_url.trim_end_matches('/').to_owned(), http })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Tokenizes a card: the number goes to the gateway, a token comes back.
    pub async fn tokenize(&self, card: &TokenizeRequest) -> Result<Token, GatewayError> {
        self.post("/v1/tokens", card).await
    }

    /// Charges a token once per `idempotency_key`.
    pub async fn charge(&self, request: &ChargeRequest) -> Result<Charge, GatewayError> {
        self.post("/v1/charges", request).await
    }

    /// Refunds (part of) a payment once per `idempotency_key`.
    pub async fn refund(&self, request: &RefundRequest) -> Result<Refund, GatewayError> {
        self.post("/v1/refunds", request).await
    }

    /// Every charge and refund the gateway has recorded.
    pub async fn ledger(&self) -> Result<LedgerListing, GatewayError> {
        self.get("/v1/ledger").await
    }

    pub async fn stats(&self) -> Result<GatewayStats, GatewayError> {
        self.get("/v1/stats").await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, GatewayError> {
        // The error text of reqwest names the URL, never the body.
        let response = self.http.post(format!("{}{path}", self.base)).json(body).send().await.map_err(transport)?;
        answer(response).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, GatewayError> {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.map_err(transport)?;
        answer(response).await
    }
}

fn transport(e: reqwest::Error) -> GatewayError {
    GatewayError::Unavailable(e.to_string())
}

async fn answer<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, GatewayError> {
    let status = response.status();
    let bytes = response.bytes().await.map_err(transport)?;
    if status.is_success() {
        // A 2xx we cannot read: the outcome is unknown, so it is retried (same key, no harm).
        return serde_json::from_slice(&bytes).map_err(|e| GatewayError::Unavailable(format!("unreadable answer ({status}): {e}")));
    }
    let body: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT {
        let code = body.map(|b| b.error.code).unwrap_or_default();
        return Err(GatewayError::Unavailable(format!("{status} {code}").trim_end().to_owned()));
    }
    let (code, message) = match body {
        Some(b) => (b.error.code, b.error.message),
        None => (format!("http_{}", status.as_u16()), String::new()),
    };
    Err(GatewayError::Refused { status: status.as_u16(), code, message })
}
