//! `/api/v1/categories`, `/brands`, `/suppliers`: upserts of the small named entities the
//! catalog view joins. There is no read view of them yet; products carry their names.

use axum::extract::State;
use serde::Deserialize;
use shopflow_events::types::NamedEntityUpserted;
use shopflow_events::{Event, Id};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::write::Accepted;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsertNamed {
    /// Given: update (or create with) this id; absent: a new entity with a minted id.
    id: Option<Id>,
    name: String,
}

fn named(body: UpsertNamed) -> NamedEntityUpserted {
    NamedEntityUpserted { id: body.id.unwrap_or_else(Id::generate), name: body.name }
}

async fn upsert(state: AppState, event: fn(NamedEntityUpserted) -> Event, body: UpsertNamed) -> Result<Accepted, ApiError> {
    let entity = named(body);
    let id = entity.id.to_string();
    state.publish(event(entity), Some(id)).await
}

pub async fn upsert_category(State(state): State<AppState>, _: Admin, ApiJson(body): ApiJson<UpsertNamed>) -> Result<Accepted, ApiError> {
    upsert(state, Event::CategoryUpserted, body).await
}

pub async fn upsert_brand(State(state): State<AppState>, _: Admin, ApiJson(body): ApiJson<UpsertNamed>) -> Result<Accepted, ApiError> {
    upsert(state, Event::BrandUpserted, body).await
}

pub async fn upsert_supplier(State(state): State<AppState>, _: Admin, ApiJson(body): ApiJson<UpsertNamed>) -> Result<Accepted, ApiError> {
    upsert(state, Event::SupplierUpserted, body).await
}
