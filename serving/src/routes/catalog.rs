//! `/api/v1/categories`, `/brands`, `/suppliers`: upserts of the small named entities the
//! catalog view joins. There is no read view of them yet; products carry their names.

use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;
use shopflow_events::types::NamedEntityUpserted;
use shopflow_events::{Event, Id};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::WriteJson;
use crate::idempotency::Write;
use crate::openapi::{AdminErrors, WriteErrors};
use crate::state::AppState;
use crate::write::Accepted;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertNamed {
    /// Given: update (or create with) this id; absent: a new entity with a minted id (under an
    /// `Idempotency-Key`, derived from the key, so every repeat names the same entity).
    id: Option<Id>,
    /// Not blank.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    name: String,
}

fn named(body: UpsertNamed, write: &Write) -> NamedEntityUpserted {
    NamedEntityUpserted { id: body.id.unwrap_or_else(|| write.mint_id()), name: body.name }
}

async fn upsert(state: AppState, event: fn(NamedEntityUpserted) -> Event, request: WriteJson<UpsertNamed>) -> Result<Accepted, ApiError> {
    let WriteJson { body, write } = request;
    let entity = named(body, &write);
    let id = entity.id.to_string();
    state.submit(&write, event(entity), Some(id)).await
}

/// Create or update a category
///
/// Admin only. Without an `id` a new category is created.
#[utoipa::path(
    post,
    path = "/api/v1/categories",
    tag = "catalog",
    params(Write),
    request_body = UpsertNamed,
    security(("bearer" = [])),
    responses(Accepted, WriteErrors, AdminErrors)
)]
pub async fn upsert_category(State(state): State<AppState>, _: Admin, request: WriteJson<UpsertNamed>) -> Result<Accepted, ApiError> {
    upsert(state, Event::CategoryUpserted, request).await
}

/// Create or update a brand
///
/// Admin only. Without an `id` a new brand is created.
#[utoipa::path(
    post,
    path = "/api/v1/brands",
    tag = "catalog",
    params(Write),
    request_body = UpsertNamed,
    security(("bearer" = [])),
    responses(Accepted, WriteErrors, AdminErrors)
)]
pub async fn upsert_brand(State(state): State<AppState>, _: Admin, request: WriteJson<UpsertNamed>) -> Result<Accepted, ApiError> {
    upsert(state, Event::BrandUpserted, request).await
}

/// Create or update a supplier
///
/// Admin only. Without an `id` a new supplier is created.
#[utoipa::path(
    post,
    path = "/api/v1/suppliers",
    tag = "catalog",
    params(Write),
    request_body = UpsertNamed,
    security(("bearer" = [])),
    responses(Accepted, WriteErrors, AdminErrors)
)]
pub async fn upsert_supplier(State(state): State<AppState>, _: Admin, request: WriteJson<UpsertNamed>) -> Result<Accepted, ApiError> {
    upsert(state, Event::SupplierUpserted, request).await
}
