//! `/api/v1/users`: profiles and addresses (seed 004's User Service). A customer reaches only
//! their own; another user's are `404`, exactly as an id that does not exist, so ids cannot be
//! probed. Admins reach everyone's.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use shopflow_events::types::{AddressAdded, ProfileUpdated};
use shopflow_events::{Event, Id};
use shopflow_views::AddressRow;

use super::auth::UserView;
use crate::auth::{Caller, User};
use crate::error::ApiError;
use crate::idempotency::Write;
use crate::openapi::{NotFound, ReadErrors, UserErrors, WriteErrors};
use crate::extract::{IdPath, WriteJson};
use crate::state::AppState;
use crate::token::ReadConsistency;
use crate::write::Accepted;

/// The caller's account
#[utoipa::path(
    get,
    path = "/api/v1/users/me",
    tag = "accounts",
    params(ReadConsistency),
    security(("bearer" = [])),
    responses((status = 200, description = "The account", body = UserView), ReadErrors, NotFound, UserErrors)
)]
pub async fn me(State(state): State<AppState>, User(caller): User, read: ReadConsistency) -> Result<Json<UserView>, ApiError> {
    state.consistent(&read).await?;
    account(&state, &caller, &caller.user_id)
}

/// An account
///
/// A customer's own only (another's is `404`, as an unknown id); admins see every account.
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}",
    tag = "accounts",
    operation_id = "get_user",
    params(("id" = Id, Path, description = "User id"), ReadConsistency),
    security(("bearer" = [])),
    responses((status = 200, description = "The account", body = UserView), ReadErrors, NotFound, UserErrors)
)]
pub async fn get(
    State(state): State<AppState>,
    User(caller): User,
    IdPath(id): IdPath,
    read: ReadConsistency,
) -> Result<Json<UserView>, ApiError> {
    state.consistent(&read).await?;
    account(&state, &caller, &id)
}

fn account(state: &AppState, caller: &Caller, id: &Id) -> Result<Json<UserView>, ApiError> {
    let row = caller.may_access(id).then(|| state.views.accounts.get(id)).flatten().ok_or_else(|| not_found(id))?;
    Ok(Json(row.into()))
}

fn not_found(id: &Id) -> ApiError {
    ApiError::NotFound { entity: "user", id: id.to_string() }
}

/// Refuses (404) what the caller may not reach, and ids without an account.
fn owned(state: &AppState, caller: &Caller, id: &Id) -> Result<(), ApiError> {
    if caller.may_access(id) && state.views.accounts.get(id).is_some() {
        Ok(())
    } else {
        Err(not_found(id))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfile {
    name: Option<String>,
    phone: Option<String>,
}

/// Update a profile
///
/// The caller's own (or any, for admins); at least one of `name`, `phone`.
#[utoipa::path(
    put,
    path = "/api/v1/users/{id}",
    tag = "accounts",
    operation_id = "update_user",
    params(("id" = Id, Path, description = "User id"), Write),
    request_body = UpdateProfile,
    security(("bearer" = [])),
    responses(Accepted, WriteErrors, NotFound, UserErrors)
)]
pub async fn update(
    State(state): State<AppState>,
    User(caller): User,
    IdPath(id): IdPath,
    WriteJson { body, write }: WriteJson<UpdateProfile>,
) -> Result<Accepted, ApiError> {
    owned(&state, &caller, &id)?;
    if body.name.is_none() && body.phone.is_none() {
        return Err(ApiError::Validation { field: String::new(), message: "give at least one of name, phone".into() });
    }
    let event = Event::ProfileUpdated(ProfileUpdated { user_id: id.clone(), name: body.name, phone: body.phone });
    state.submit(&write, event, Some(id.to_string())).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAddress {
    street: String,
    city: String,
    #[serde(default)]
    state: String,
    country: String,
    #[serde(default)]
    zip: String,
    #[serde(default)]
    is_default: bool,
}

/// Add an address
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/addresses",
    tag = "accounts",
    params(("id" = Id, Path, description = "User id"), Write),
    request_body = NewAddress,
    security(("bearer" = [])),
    responses(Accepted, WriteErrors, NotFound, UserErrors)
)]
pub async fn add_address(
    State(state): State<AppState>,
    User(caller): User,
    IdPath(id): IdPath,
    WriteJson { body, write }: WriteJson<NewAddress>,
) -> Result<Accepted, ApiError> {
    owned(&state, &caller, &id)?;
    let address_id = write.mint_id();
    let event = Event::AddressAdded(AddressAdded {
        address_id: address_id.clone(),
        user_id: id,
        street: body.street,
        city: body.city,
        state: body.state,
        country: body.country,
        zip: body.zip,
        is_default: body.is_default,
    });
    state.submit(&write, event, Some(address_id.to_string())).await
}

#[derive(Serialize, ToSchema)]
pub struct AddressList {
    pub items: Vec<AddressView>,
}

#[derive(Serialize, ToSchema)]
pub struct AddressView {
    pub address_id: Id,
    pub street: String,
    pub city: String,
    pub state: String,
    pub country: String,
    pub zip: String,
    pub is_default: bool,
    pub created_at: i64,
}

impl From<AddressRow> for AddressView {
    fn from(row: AddressRow) -> Self {
        Self {
            address_id: row.address_id,
            street: row.street,
            city: row.city,
            state: row.state,
            country: row.country,
            zip: row.zip,
            is_default: row.is_default,
            created_at: row.created_at,
        }
    }
}

/// A user's addresses
///
/// Oldest first (a handful each, so no pagination).
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/addresses",
    tag = "accounts",
    params(("id" = Id, Path, description = "User id"), ReadConsistency),
    security(("bearer" = [])),
    responses((status = 200, description = "The addresses", body = AddressList), ReadErrors, NotFound, UserErrors)
)]
pub async fn addresses(
    State(state): State<AppState>,
    User(caller): User,
    IdPath(id): IdPath,
    read: ReadConsistency,
) -> Result<Json<AddressList>, ApiError> {
    state.consistent(&read).await?;
    owned(&state, &caller, &id)?;
    // Keys are (user, address): this user's rows are one contiguous range.
    // '~' sorts after every character an id may hold.
    let mut rows = state.views.addresses.range((id.clone(), Id::default())..=(id.clone(), Id::from("~")));
    rows.sort_by(|a, b| (a.created_at, &a.address_id).cmp(&(b.created_at, &b.address_id)));
    Ok(Json(AddressList { items: rows.into_iter().map(AddressView::from).collect() }))
}
