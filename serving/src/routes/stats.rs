//! `GET /api/v1/stats/revenue`: net revenue (paid orders' lines minus refunds) from the
//! revenue view, per UTC day or per category, in a range of days.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use shopflow_events::{Id, Money};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::openapi::{AdminErrors, ReadErrors};
use crate::state::AppState;
use crate::token::ReadConsistency;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    #[default]
    Day,
    Category,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevenueQuery {
    /// First day (UTC, `YYYY-MM-DD`), included; absent: from the first.
    #[param(pattern = r"^\d{4}-\d{2}-\d{2}$", example = "2026-12-01")]
    from: Option<String>,
    /// Last day (UTC, `YYYY-MM-DD`), included; absent: up to the last.
    #[param(pattern = r"^\d{4}-\d{2}-\d{2}$", example = "2026-12-31")]
    to: Option<String>,
    /// One entry per day (default) or per category, each per currency.
    #[param(inline)]
    by: Option<GroupBy>,
}

#[derive(Serialize, ToSchema)]
pub struct RevenueEntry {
    /// With `by=day`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<Id>,
    /// With `by=category`; `null` for products no longer in the catalog.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category_id: Option<Option<Id>>,
    pub revenue: Money,
}

#[derive(Serialize, ToSchema)]
pub struct Revenue {
    pub items: Vec<RevenueEntry>,
    /// Over the whole range, per currency.
    pub totals: Vec<Money>,
}

/// A `YYYY-MM-DD` day; compared as text, which orders days like dates.
fn day(value: Option<String>, name: &str) -> Result<Option<String>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    let b = value.as_bytes();
    let shaped = b.len() == 10 && b[4] == b'-' && b[7] == b'-' && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    let (month, day) = if shaped { (value[5..7].parse::<u8>().unwrap_or(0), value[8..10].parse::<u8>().unwrap_or(0)) } else { (0, 0) };
    if !shaped || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(ApiError::InvalidQuery(format!("{name} must be a date YYYY-MM-DD")));
    }
    Ok(Some(value))
}

/// Revenue
///
/// Admin only. Net revenue of paid orders (refunds subtracted on the refund's day) per UTC
/// day or per category, each per currency, from `from` to `to` (both included).
#[utoipa::path(
    get,
    path = "/api/v1/stats/revenue",
    tag = "stats",
    params(RevenueQuery, ReadConsistency),
    security(("bearer" = [])),
    responses((status = 200, description = "Revenue per day or category", body = Revenue), ReadErrors, AdminErrors)
)]
pub async fn revenue(
    State(state): State<AppState>,
    _: Admin,
    ApiQuery(query): ApiQuery<RevenueQuery>,
    read: ReadConsistency,
) -> Result<Json<Revenue>, ApiError> {
    let from = day(query.from, "from")?;
    let to = day(query.to, "to")?;
    if let (Some(from), Some(to)) = (&from, &to) {
        if from > to {
            return Err(ApiError::InvalidQuery("from must not be after to".into()));
        }
    }
    let by = query.by.unwrap_or_default();
    state.consistent(&read).await?;
    let mut groups: BTreeMap<(Option<Id>, String), i64> = BTreeMap::new();
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for (_, row) in state.views.revenue.snapshot() {
        let day = row.day.as_str();
        if from.as_deref().is_some_and(|from| day < from) || to.as_deref().is_some_and(|to| day > to) {
            continue;
        }
        let group = match by {
            GroupBy::Day => Some(row.day.clone()),
            GroupBy::Category => row.category_id.clone(),
        };
        *groups.entry((group, row.currency.clone())).or_default() += row.amount_minor;
        *totals.entry(row.currency).or_default() += row.amount_minor;
    }
    let items = groups
        .into_iter()
        .map(|((group, currency), amount)| {
            let revenue = Money::new(amount, &currency);
            match by {
                GroupBy::Day => RevenueEntry { day: group, category_id: None, revenue },
                GroupBy::Category => RevenueEntry { day: None, category_id: Some(group), revenue },
            }
        })
        .collect();
    let totals = totals.into_iter().map(|(currency, amount)| Money::new(amount, &currency)).collect();
    Ok(Json(Revenue { items, totals }))
}
