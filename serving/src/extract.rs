//! Extractor wrappers whose rejections are [`ApiError`]s, so that a bad body, path or query
//! gets the same JSON error shape as every other failure instead of axum's plain text.

use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use shopflow_events::Id;

use crate::error::ApiError;
use crate::idempotency::{KeyedRequest, Write};
use crate::state::AppState;

/// `axum::Json` with JSON errors. Request types deny unknown fields, so a typo is a 422.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection, state.config.max_body_bytes)),
        }
    }
}

/// The JSON body of a write and what makes the write idempotent ([`Write`]). Without an
/// `Idempotency-Key` header it is exactly [`ApiJson`]; with one, a bad key is a 400 before the
/// body is read, and the body is read once, parsed into `T` with the same checks and errors
/// as `ApiJson`, and fingerprinted in its canonical JSON form.
pub struct WriteJson<T> {
    pub body: T,
    pub write: Write,
}

impl<T: DeserializeOwned> FromRequest<AppState> for WriteJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let Some(keyed) = KeyedRequest::from_parts(&mut parts, state).await? else {
            let ApiJson(body) = ApiJson::from_request(Request::from_parts(parts, body), state).await?;
            return Ok(Self { body, write: Write::default() });
        };
        // Buffered under the router's body limit (an extension, hence the copied extensions).
        let limit = state.config.max_body_bytes;
        let mut buffered = Request::new(body);
        *buffered.extensions_mut() = parts.extensions.clone();
        let bytes = Bytes::from_request(buffered, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::MalformedJson(rejection.body_text())
            }
        })?;
        let ApiJson(body) = ApiJson::from_request(Request::from_parts(parts, Body::from(bytes.clone())), state).await?;
        // It parsed as `T`, so it is JSON.
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        Ok(Self { body, write: keyed.finish(Some(&value)) })
    }
}

fn json_rejection(rejection: JsonRejection, limit: usize) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::InvalidBody(e.body_text()),
        JsonRejection::JsonSyntaxError(e) => ApiError::MalformedJson(e.body_text()),
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
        // Body read failures: the body limit is the one a client can cause on purpose.
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge { limit }
        }
        other => ApiError::MalformedJson(other.body_text()),
    }
}

/// One entity id from the path (`/products/{id}`), checked with the schema's id rules.
pub struct IdPath(pub Id);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e: PathRejection| ApiError::InvalidPath(e.body_text()))?;
        Id::new(raw).map(IdPath).map_err(|e| ApiError::InvalidId(e.message))
    }
}

/// `axum::extract::Query` with JSON errors.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|e: QueryRejection| ApiError::InvalidQuery(e.body_text()))
    }
}
