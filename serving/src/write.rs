//! The write path shared by every mutating route: validate the event, wrap it in an envelope,
//! append it durably under its partition key, answer 202 with a consistency token.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shopflow_events::{Envelope, Event};
use shopflow_ingest::OutRecord;

use crate::error::ApiError;
use crate::state::AppState;
use crate::token::{ConsistencyToken, TOKEN_HEADER};

/// The answer to an accepted write: `202` with the entity id, the event id and the token.
#[derive(Debug, Serialize)]
pub struct Accepted {
    /// The entity the write is about (product, warehouse, category...); for stock movements,
    /// which are not entities, the event id.
    pub id: String,
    pub event_id: String,
    pub consistency_token: String,
}

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        let token = HeaderValue::from_str(&self.consistency_token)
            .expect("tokens are ASCII topic names and digits");
        let mut response = (StatusCode::ACCEPTED, axum::Json(self)).into_response();
        response.headers_mut().insert(TOKEN_HEADER, token);
        response
    }
}

impl AppState {
    /// Validates and appends one event; `id` is what the client is told it created or changed
    /// (`None`: the event id).
    pub async fn publish(&self, event: Event, id: Option<String>) -> Result<Accepted, ApiError> {
        event.validate()?;
        let envelope = Envelope::new(event);
        let record = OutRecord::keyed(envelope.topic().name(), envelope.key().as_str(), envelope.to_json());
        let positions = tokio::time::timeout(self.config.write_timeout, self.log.append(vec![record]))
            .await
            .map_err(|_| {
                tracing::warn!(timeout_ms = self.config.write_timeout.as_millis() as u64, "event log append timed out");
                ApiError::LogUnavailable
            })??;
        if positions.is_empty() {
            // The trait promises one position per record; without it there is no token.
            tracing::error!("event log returned no position for an appended record");
            return Err(ApiError::Internal);
        }
        self.end_offsets.observe(&positions);
        let token = ConsistencyToken::new(positions);
        let event_id = envelope.id.to_string();
        tracing::info!(event_type = envelope.event.type_name(), event_id = %event_id, token = %token, "event appended");
        Ok(Accepted { id: id.unwrap_or_else(|| event_id.clone()), event_id, consistency_token: token.to_string() })
    }
}
