//! The write path shared by every mutating route: validate the event, wrap it in an envelope,
//! append it durably under its partition key, answer 202 with a consistency token.
//!
//! A write under an `Idempotency-Key` ([`Write::keyed`]) answers by the rules of
//! `idempotency.rs`: a known key gets the first answer (or 422), a new one is appended under
//! the key's event id and answered once the views say which record landed first.

use std::time::Instant;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shopflow_events::{Envelope, Event};
use shopflow_ingest::{OutRecord, Position};

use crate::error::ApiError;
use crate::idempotency::{self, Keyed, Known, Write};
use crate::state::AppState;
use crate::token::{ConsistencyToken, Unsettled, TOKEN_HEADER};

/// The answer to an accepted write: `202` with the entity id, the event id and the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The entity the write is about (product, warehouse, category...); for stock movements,
    /// which are not entities, the event id.
    pub id: String,
    pub event_id: String,
    /// Pass to a read (`X-Consistency-Token` or `?consistency_token=`) to see this write.
    #[schema(example = "catalog:3:1042")]
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
    /// (`None`: the event id). Not idempotent: every call is a new event.
    pub async fn publish(&self, event: Event, id: Option<String>) -> Result<Accepted, ApiError> {
        self.publish_as(event, uuid::Uuid::now_v7(), id).await
    }

    /// [`publish`](Self::publish) under a given event id: for an entity named after the event
    /// that creates it (a refund), whose id must be known before the event is built.
    pub(crate) async fn publish_as(&self, event: Event, event_id: uuid::Uuid, id: Option<String>) -> Result<Accepted, ApiError> {
        event.validate()?;
        let envelope = Envelope { id: event_id, ..Envelope::new(event) };
        let positions = self.append(&envelope).await?;
        let token = ConsistencyToken::new(positions);
        let event_id = envelope.id.to_string();
        tracing::info!(event_type = envelope.event.type_name(), event_id = %event_id, token = %token, idempotent = false, "event appended");
        Ok(Accepted { id: id.unwrap_or_else(|| event_id.clone()), event_id, consistency_token: token.to_string() })
    }

    /// The write of a mutating route: [`publish`](Self::publish) without an `Idempotency-Key`,
    /// the idempotent rules with one.
    pub async fn submit(&self, write: &Write, event: Event, id: Option<String>) -> Result<Accepted, ApiError> {
        match write.keyed() {
            None => self.publish(event, id).await,
            Some(keyed) => self.publish_keyed(keyed, event, id).await,
        }
    }

    async fn publish_keyed(&self, keyed: &Keyed, event: Event, id: Option<String>) -> Result<Accepted, ApiError> {
        event.validate()?;
        let started = Instant::now();
        let id = id.unwrap_or_else(|| keyed.event_id.to_string());
        match idempotency::known(self, keyed, &id) {
            Known::Answer(answer) => {
                tracing::debug!(event_id = %keyed.event_id, "keyed write repeated: the first answer again");
                return Ok(answer);
            }
            Known::Reused => return Err(ApiError::IdempotencyKeyReused),
            Known::Unknown => {}
        }
        let envelope = Envelope::idempotent(event, keyed.event_id, keyed.fingerprint.clone());
        let positions = self.append(&envelope).await?;
        tracing::info!(
            event_type = envelope.event.type_name(),
            event_id = %envelope.id,
            token = %ConsistencyToken::new(positions.clone()),
            idempotent = true,
            "event appended"
        );
        // Which record of this key landed first (maybe a concurrent repeat's, through another
        // replica) is known once the views have passed ours. One budget for the whole write.
        let remaining = self.config.write_timeout.saturating_sub(started.elapsed());
        // Counted with the strong reads: waiting writes are as much a load as waiting reads.
        // Either way the record is in the log already; a retry with the key gets the answer.
        match self.await_passed(&positions, remaining).await {
            Ok(()) => idempotency::settle(self, keyed, id, positions),
            Err(Unsettled::TooManyWaiters) => {
                tracing::warn!(event_id = %keyed.event_id, "keyed write appended; too many waiters to settle it now");
                Err(ApiError::IdempotencyPending)
            }
            Err(Unsettled::TimedOut) => {
                tracing::warn!(event_id = %keyed.event_id, waited_ms = remaining.as_millis() as u64, "keyed write appended but not settled in time");
                Err(ApiError::IdempotencyPending)
            }
        }
    }

    /// Appends `event` and waits (within `write_timeout`) until this replica's views have
    /// passed it, so the pipeline's decision on it (which registration of an e-mail won,
    /// whether a refresh rotated) can be read from them. Returns the event's id and position.
    /// Not in time: `503 decision_pending` (the event is in the log and will be decided).
    pub(crate) async fn publish_decided(&self, event: Event) -> Result<(uuid::Uuid, Vec<Position>), ApiError> {
        event.validate()?;
        let started = Instant::now();
        let envelope = Envelope::new(event);
        let positions = self.append(&envelope).await?;
        tracing::info!(event_type = envelope.event.type_name(), event_id = %envelope.id, "event appended");
        let remaining = self.config.write_timeout.saturating_sub(started.elapsed());
        match self.await_passed(&positions, remaining).await {
            Ok(()) => Ok((envelope.id, positions)),
            Err(Unsettled::TooManyWaiters | Unsettled::TimedOut) => {
                tracing::warn!(event_id = %envelope.id, "event appended but its decision did not reach the views in time");
                Err(ApiError::DecisionPending)
            }
        }
    }

    /// Appends one envelope under its partition key, within `write_timeout`.
    async fn append(&self, envelope: &Envelope) -> Result<Vec<Position>, ApiError> {
        let record = OutRecord::of(envelope);
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
        Ok(positions)
    }
}
