//! The one error type of the HTTP layer and the one place it becomes a status code.
//!
//! Every error body has the shape `{"error":{"code":"snake_case_code","message":"...",
//! "field":"..."}}` (`field` only when one input field is to blame; `not_ready` adds
//! `"behind":{"records":N,"topics":{"catalog":N,...}}`).

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shopflow_events::ValidationError;
use shopflow_ingest::LogError;

use crate::lag::{Behind, NotReady};

/// Seconds a client is told to wait before retrying a 503.
const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON (syntax error).
    #[error("{0}")]
    MalformedJson(String),
    /// The body is JSON but not of the expected shape: missing, unknown or mistyped fields.
    #[error("{0}")]
    InvalidBody(String),
    #[error("expected a request with `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The request is well-formed but breaks a rule of the event schema.
    #[error("{field} {message}")]
    Validation { field: String, message: String },
    #[error("invalid id in path: {0}")]
    InvalidId(String),
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("invalid cursor")]
    InvalidCursor,
    #[error("invalid consistency token: {0}")]
    InvalidConsistencyToken(String),
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("this operation needs the admin role")]
    Forbidden,
    #[error("the access token is not valid")]
    InvalidToken,
    #[error("the access token has expired; refresh it")]
    TokenExpired,
    #[error("the access token's session was revoked")]
    TokenRevoked,
    #[error("wrong e-mail or password")]
    InvalidCredentials,
    #[error("{0}")]
    InvalidRefreshToken(&'static str),
    /// A refresh token that was already rotated away was presented: the session is revoked.
    #[error("this refresh token was already used; the session is revoked, sign in again")]
    RefreshTokenReused,
    #[error("an account with this e-mail already exists")]
    EmailTaken,
    #[error("too many requests; retry after {}s", retry_after_secs(*retry_after))]
    RateLimited { retry_after: Duration },
    #[error("too many failed sign-ins; retry after {}s", retry_after_secs(*retry_after))]
    TooManyFailedLogins { retry_after: Duration },
    #[error("the request took too long")]
    RequestTimeout,
    /// The event is in the log but the pipeline's decision on it (unique e-mail, refresh
    /// rotation) did not reach this replica's views in time.
    #[error("the request is recorded but not decided yet; retry shortly")]
    DecisionPending,
    #[error("the views did not reach the consistency token within {}ms", waited.as_millis())]
    ConsistencyTimeout { waited: Duration },
    /// As many reads as `max_consistency_waiters` are already waiting for their tokens.
    #[error("too many reads are waiting for consistency tokens (at most {limit}), retry later")]
    TooManyWaiters { limit: usize },
    /// `/readyz` before the views have caught up with the log.
    #[error("{0}")]
    NotReady(NotReady),
    #[error("the event log is unavailable, retry later")]
    LogUnavailable,
    /// The `Idempotency-Key` header is not 1 to 255 visible ASCII characters (or is repeated).
    #[error("invalid Idempotency-Key: {0}")]
    InvalidIdempotencyKey(&'static str),
    /// The caller already used this `Idempotency-Key` for a different request.
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    /// A keyed write is in the log but the views have not settled which record came first:
    /// the same request with the same key, retried, gets the answer.
    #[error("the write is recorded but not settled yet; retry with the same Idempotency-Key")]
    IdempotencyPending,
    /// `POST /orders` names its order by its key, so it needs one.
    #[error("this write needs an Idempotency-Key header (the order id is derived from it)")]
    IdempotencyKeyRequired,
    /// The order is past the point where this can be done (shipped, delivered, decided).
    #[error("order {order_id} is {status} and can no longer be {action}")]
    OrderState { order_id: String, status: &'static str, action: OrderAction },
    /// No card vault is configured in this process.
    #[error("payment methods cannot be added right now")]
    PaymentsUnavailable,
    /// The vault refused the card (declined, invalid); the message never holds the number.
    #[error("the card was refused: {0}")]
    CardRefused(String),
    /// As many live streams as `max_live_streams` are open already.
    #[error("too many live streams are open (at most {limit}), retry later")]
    TooManyStreams { limit: usize },
    #[error("internal error")]
    Internal,
}

/// What was asked of an order that its status refuses (`409`, see [`ApiError::OrderState`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderAction {
    Cancelled,
    Paid,
    Refunded,
    /// An admin's status change (`shipped`, `delivered`).
    Moved(&'static str),
}

impl OrderAction {
    fn refusal_code(self) -> &'static str {
        match self {
            OrderAction::Cancelled => "not_cancellable",
            OrderAction::Paid => "not_payable",
            OrderAction::Refunded => "not_refundable",
            OrderAction::Moved(_) => "invalid_status_transition",
        }
    }
}

impl std::fmt::Display for OrderAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrderAction::Cancelled => f.write_str("cancelled"),
            OrderAction::Paid => f.write_str("paid"),
            OrderAction::Refunded => f.write_str("refunded"),
            OrderAction::Moved(status) => write!(f, "marked {status}"),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            MalformedJson(_) | InvalidId(_) | InvalidPath(_) | InvalidQuery(_) | InvalidCursor
            | InvalidConsistencyToken(_) => StatusCode::BAD_REQUEST,
            InvalidBody(_) | Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            NotFound { .. } | RouteNotFound(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Forbidden => StatusCode::FORBIDDEN,
            InvalidToken | TokenExpired | TokenRevoked | InvalidCredentials | InvalidRefreshToken(_)
            | RefreshTokenReused => StatusCode::UNAUTHORIZED,
            EmailTaken => StatusCode::CONFLICT,
            RateLimited { .. } | TooManyFailedLogins { .. } => StatusCode::TOO_MANY_REQUESTS,
            RequestTimeout | DecisionPending => StatusCode::SERVICE_UNAVAILABLE,
            // 503 rather than 504: nothing upstream timed out, the view is behind; the same
            // request is likely to succeed shortly, which is what 503 + Retry-After says.
            ConsistencyTimeout { .. } | LogUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            // Load shedding and start-up: both pass, so 503 + Retry-After as well.
            TooManyWaiters { .. } | NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            InvalidIdempotencyKey(_) => StatusCode::BAD_REQUEST,
            IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            IdempotencyPending => StatusCode::SERVICE_UNAVAILABLE,
            IdempotencyKeyRequired => StatusCode::BAD_REQUEST,
            OrderState { .. } => StatusCode::CONFLICT,
            CardRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            PaymentsUnavailable | TooManyStreams { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code clients switch on.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            MalformedJson(_) => "malformed_json",
            InvalidBody(_) => "invalid_body",
            UnsupportedMediaType => "unsupported_media_type",
            PayloadTooLarge { .. } => "payload_too_large",
            Validation { .. } => "validation_failed",
            InvalidId(_) => "invalid_id",
            InvalidPath(_) => "invalid_path",
            InvalidQuery(_) => "invalid_query",
            InvalidCursor => "invalid_cursor",
            InvalidConsistencyToken(_) => "invalid_consistency_token",
            NotFound { .. } => "not_found",
            RouteNotFound(_) => "route_not_found",
            MethodNotAllowed => "method_not_allowed",
            Unauthorized(_) => "unauthorized",
            Forbidden => "forbidden",
            InvalidToken => "invalid_token",
            TokenExpired => "token_expired",
            TokenRevoked => "token_revoked",
            InvalidCredentials => "invalid_credentials",
            InvalidRefreshToken(_) => "invalid_refresh_token",
            RefreshTokenReused => "refresh_token_reused",
            EmailTaken => "email_taken",
            RateLimited { .. } => "rate_limited",
            TooManyFailedLogins { .. } => "too_many_failed_logins",
            RequestTimeout => "request_timeout",
            DecisionPending => "decision_pending",
            ConsistencyTimeout { .. } => "consistency_timeout",
            TooManyWaiters { .. } => "too_many_waiters",
            NotReady(_) => "not_ready",
            LogUnavailable => "log_unavailable",
            InvalidIdempotencyKey(_) => "invalid_idempotency_key",
            IdempotencyKeyReused => "idempotency_key_reused",
            IdempotencyPending => "idempotency_pending",
            IdempotencyKeyRequired => "idempotency_key_required",
            OrderState { action, .. } => action.refusal_code(),
            PaymentsUnavailable => "payments_unavailable",
            CardRefused(_) => "card_refused",
            TooManyStreams { .. } => "too_many_streams",
            Internal => "internal_error",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::Validation { field, .. } if !field.is_empty() => Some(field),
            _ => None,
        }
    }

    fn behind(&self) -> Option<&Behind> {
        match self {
            ApiError::NotReady(not_ready) => not_ready.behind.as_ref(),
            _ => None,
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::Validation { field, message } if field.is_empty() => message.clone(),
            other => other.to_string(),
        }
    }
}

/// The body of every error response (and the `ErrorBody` schema of the OpenAPI document:
/// the type that is serialized is the one documented, so they cannot drift).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail<'a> {
    /// Stable, machine-readable: what clients switch on (`not_found`, `validation_failed`...).
    #[schema(example = "validation_failed")]
    code: &'a str,
    /// For humans; may change between releases.
    message: String,
    /// The input field to blame, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    /// `not_ready` only: how far behind the log as of start the views are.
    #[serde(skip_serializing_if = "Option::is_none")]
    behind: Option<&'a Behind>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(code = self.code(), error = %self, "request failed");
        } else {
            tracing::debug!(code = self.code(), error = %self, "request rejected");
        }
        let body = ErrorBody {
            error: ErrorDetail { code: self.code(), message: self.message(), field: self.field(), behind: self.behind() },
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::ConsistencyTimeout { .. }
            | ApiError::PaymentsUnavailable
            | ApiError::TooManyStreams { .. }
            | ApiError::LogUnavailable
            | ApiError::TooManyWaiters { .. }
            | ApiError::NotReady(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::InvalidToken | ApiError::TokenExpired | ApiError::TokenRevoked => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
            }
            ApiError::RateLimited { retry_after } | ApiError::TooManyFailedLogins { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(retry_after)));
            }
            ApiError::IdempotencyPending | ApiError::RequestTimeout | ApiError::DecisionPending => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            _ => {}
        }
        response
    }
}

/// Whole seconds for `Retry-After`, rounded up (and at least 1: "0" invites a retry storm).
fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1_000).max(1) as u64
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::Validation { field: e.field, message: e.message }
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        match e {
            // A topic that does not exist yet or a broker that is away: the write may succeed
            // later, so the client gets 503 and Retry-After. The detail stays in our logs.
            LogError::Unavailable(_) | LogError::Storage(_) | LogError::UnknownTopic(_)
            | LogError::UnknownPartition { .. } => {
                tracing::warn!(error = %e, "event log append failed");
                ApiError::LogUnavailable
            }
            LogError::Invalid(_) => {
                tracing::error!(error = %e, "event log refused a record we built");
                ApiError::Internal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, serde_json::Value, axum::http::HeaderMap) {
        let response = error.into_response();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap(), headers)
    }

    #[tokio::test]
    async fn validation_errors_name_the_field() {
        let (status, body, _) =
            body_of(ValidationError::new("price", "must not be negative").into()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"]["code"], "validation_failed");
        assert_eq!(body["error"]["field"], "price");
        assert_eq!(body["error"]["message"], "price must not be negative");
    }

    #[tokio::test]
    async fn retryable_errors_carry_retry_after() {
        let (status, body, headers) =
            body_of(ApiError::ConsistencyTimeout { waited: Duration::from_millis(300) }).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "consistency_timeout");
        assert!(body["error"].get("field").is_none());
        assert_eq!(headers[header::RETRY_AFTER], "1");

        let (status, _, headers) = body_of(LogError::Unavailable("broker down".into()).into()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn load_shedding_and_not_ready_are_503_with_retry_after() {
        let (status, body, headers) = body_of(ApiError::TooManyWaiters { limit: 2 }).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "too_many_waiters");
        assert_eq!(headers[header::RETRY_AFTER], "1");

        let behind = Behind { records: 7, topics: [("catalog".to_owned(), 7), ("inventory".to_owned(), 0)].into() };
        let not_ready =
            NotReady { reason: crate::lag::NotReadyReason::CatchingUp, behind: Some(behind) };
        let (status, body, headers) = body_of(ApiError::NotReady(not_ready)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "not_ready");
        assert_eq!(body["error"]["behind"], serde_json::json!({"records": 7, "topics": {"catalog": 7, "inventory": 0}}));
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("7 records behind") && message.contains("catalog 7"), "{message}");
        assert_eq!(headers[header::RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn log_details_do_not_leak_to_clients() {
        let (_, body, _) = body_of(LogError::Storage("/var/data/secret-path: EIO".into()).into()).await;
        assert!(!body.to_string().contains("secret-path"));
    }
}
