//! `GET /api/v1/top-sellers`: the top-sellers view ranked by units sold, globally or within
//! one category.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use shopflow_events::Id;
use utoipa::{IntoParams, ToSchema};
use shopflow_views::TopSellerRow;

use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::routes::products::query_id;
use crate::openapi::ReadErrors;
use crate::state::AppState;
use crate::token::ReadConsistency;

pub const DEFAULT_LIMIT: u32 = 10;
pub const MAX_LIMIT: u32 = 100;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopSellersQuery {
    /// How many products.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Only products of this category.
    #[param(value_type = Option<Id>)]
    category: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TopSellers {
    pub items: Vec<TopSellerRow>,
}

/// Top sellers
///
/// Ranked by units sold, globally or within one category.
#[utoipa::path(
    get,
    path = "/api/v1/top-sellers",
    operation_id = "top_sellers",
    tag = "recommendations",
    params(TopSellersQuery, ReadConsistency),
    responses((status = 200, description = "The best sellers, most units first", body = TopSellers), ReadErrors)
)]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<TopSellersQuery>,
    read: ReadConsistency,
) -> Result<Json<TopSellers>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let category = query_id(query.category, "category")?;
    state.consistent(&read).await?;
    let mut items: Vec<TopSellerRow> = state
        .views
        .top_sellers
        .snapshot()
        .into_iter()
        .map(|(_, row)| row)
        .filter(|row| category.as_ref().is_none_or(|c| row.category_id.as_ref() == Some(c)))
        .collect();
    // Most units first; ties by product id, so the order is stable between calls.
    items.sort_by(|a, b| b.units.cmp(&a.units).then_with(|| a.product_id.cmp(&b.product_id)));
    items.truncate(limit as usize);
    Ok(Json(TopSellers { items }))
}
