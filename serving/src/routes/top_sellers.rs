//! `GET /api/v1/top-sellers`: the top-sellers views ranked by units sold, of all time or of
//! the last hour or day, globally or within one category. The live ranking
//! (`/top-sellers/stream`, `routes/live.rs`) is the same [`ranking`].

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
    /// Units sold of all time (default), or in the last hour or day (event time).
    #[param(inline)]
    window: Option<Window>,
}

/// Which top-sellers view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    #[default]
    All,
    Hour,
    Day,
}

/// A validated ranking request: what `/top-sellers` and its live stream share.
pub(crate) struct RankingQuery {
    pub window: Window,
    pub category: Option<Id>,
    pub limit: usize,
}

impl TopSellersQuery {
    pub(crate) fn validate(self) -> Result<RankingQuery, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::InvalidQuery(format!("limit must be 1 to {MAX_LIMIT}")));
        }
        let category = query_id(self.category, "category")?;
        Ok(RankingQuery { window: self.window.unwrap_or_default(), category, limit: limit as usize })
    }
}

/// The ranking: most units first; ties by product id, so the order is stable between calls.
pub(crate) fn ranking(state: &AppState, query: &RankingQuery) -> Vec<TopSellerRow> {
    let table = match query.window {
        Window::All => &state.views.top_sellers,
        Window::Hour => &state.views.top_sellers_hour,
        Window::Day => &state.views.top_sellers_day,
    };
    table.top(
        query.limit,
        |row| query.category.as_ref().is_none_or(|c| row.category_id.as_ref() == Some(c)),
        |a, b| b.units.cmp(&a.units).then_with(|| a.product_id.cmp(&b.product_id)),
    )
}

#[derive(Serialize, ToSchema)]
pub struct TopSellers {
    pub items: Vec<TopSellerRow>,
}

/// Top sellers
///
/// Ranked by units sold, of all time or of the last hour or day, globally or within one
/// category.
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
    let query = query.validate()?;
    state.consistent(&read).await?;
    let items = ranking(&state, &query);
    Ok(Json(TopSellers { items }))
}
