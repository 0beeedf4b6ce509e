//! `GET /api/v1/top-sellers`: the top-sellers view ranked by units sold, globally or within
//! one category.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use shopflow_views::TopSellerRow;

use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::routes::products::query_id;
use crate::state::AppState;
use crate::token::ReadConsistency;

pub const DEFAULT_LIMIT: u32 = 10;
pub const MAX_LIMIT: u32 = 100;

#[derive(Deserialize)]
pub struct TopSellersQuery {
    limit: Option<u32>,
    category: Option<String>,
}

#[derive(Serialize)]
pub struct TopSellers {
    pub items: Vec<TopSellerRow>,
}

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
