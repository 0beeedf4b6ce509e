//! `/api/v1/recommend/...`: recommendations from the promoted model, filled and backed by the
//! trending view.
//!
//! Every answer leaves out products that are not buyable right now (missing from the catalog
//! view, or total stock `<= 0`); personal answers also leave out what the user has already
//! bought, and similar-product answers the product itself. When there is no promoted model,
//! the model has nothing to say (a cold-start user, an unknown product) or it returns fewer
//! than `limit` items, the rest comes from trending under the same rules; `source` says which
//! (`model`, `trending`, `model+trending`). Model items come first; scores are comparable
//! within one source only (model scores vs. trending interaction counts).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use shopflow_views::{ProductRow, TrendingRow, Views};
use shopflow_events::{Id, Money};

use crate::error::ApiError;
use crate::extract::{ApiQuery, IdPath};
use crate::openapi::{NotFound, ReadErrors};
use crate::recommender::Recommender;
use crate::routes::products::query_id;
use crate::state::AppState;
use crate::token::ReadConsistency;

pub const DEFAULT_LIMIT: u32 = 10;
pub const MAX_LIMIT: u32 = 100;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// How many products.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrendingQuery {
    /// How many products.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Only products of this category.
    #[param(value_type = Option<Id>)]
    category: Option<String>,
}

fn checked_limit(limit: Option<u32>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    Ok(limit as usize)
}

/// Where the items of an answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub enum Source {
    #[serde(rename = "model")]
    Model,
    #[serde(rename = "trending")]
    Trending,
    #[serde(rename = "model+trending")]
    ModelAndTrending,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Model => "model",
            Source::Trending => "trending",
            Source::ModelAndTrending => "model+trending",
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Item {
    product_id: Id,
    score: f64,
    name: String,
    price: Money,
    category_id: Id,
}

#[derive(Serialize, ToSchema)]
pub struct UserRecommendations {
    user_id: Id,
    items: Vec<Item>,
    source: Source,
    /// The promoted model this request asked; `null` when none is promoted or it was not
    /// asked (a user without interactions).
    model_version: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SimilarProducts {
    product_id: Id,
    items: Vec<Item>,
    source: Source,
    model_version: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TrendingProducts {
    category: Option<Id>,
    items: Vec<Item>,
    source: Source,
}

/// The catalog as one request sees it: each product is looked up once, so the "is it
/// buyable" decision and the item's name and price agree even if the view changes meanwhile.
/// `RefCell` because the model calls `skip` through a shared `&dyn Fn`.
struct Catalog<'a> {
    views: &'a Views,
    /// `None`: not buyable (unknown or out of stock).
    seen: RefCell<HashMap<Id, Option<ProductRow>>>,
}

impl<'a> Catalog<'a> {
    fn new(views: &'a Views) -> Self {
        Self { views, seen: RefCell::new(HashMap::new()) }
    }

    fn with<R>(&self, id: &Id, f: impl FnOnce(Option<&ProductRow>) -> R) -> R {
        let mut seen = self.seen.borrow_mut();
        let row = seen
            .entry(id.clone())
            .or_insert_with(|| self.views.products.get(id).filter(|row| row.stock > 0));
        f(row.as_ref())
    }

    fn buyable(&self, id: &Id) -> bool {
        self.with(id, |row| row.is_some())
    }
}

/// Collects up to `limit` items, enforcing the skip rules on everything that is added.
struct Picker<'a> {
    catalog: Catalog<'a>,
    /// Never recommended in this answer: purchases, or the product asked about.
    excluded: HashSet<Id>,
    limit: usize,
    items: Vec<Item>,
    taken: HashSet<Id>,
}

impl<'a> Picker<'a> {
    fn new(views: &'a Views, limit: usize, excluded: HashSet<Id>) -> Self {
        Self { catalog: Catalog::new(views), excluded, limit, items: Vec::with_capacity(limit), taken: HashSet::new() }
    }

    /// The rule handed to the model, and re-applied to what it returns.
    fn skips(&self, id: &Id) -> bool {
        self.excluded.contains(id) || self.taken.contains(id) || !self.catalog.buyable(id)
    }

    fn full(&self) -> bool {
        self.items.len() >= self.limit
    }

    /// Adds `id` unless a rule rejects it; `false` when it was not added.
    fn push(&mut self, id: Id, score: f64, category: Option<&Id>) -> bool {
        // The model is a plug-in; filtering is this layer's promise, so its output is checked
        // again (and a non-finite score would serialize as `null`).
        if self.full() || !score.is_finite() || self.skips(&id) {
            return false;
        }
        let item = self.catalog.with(&id, |row| {
            let row = row?;
            if category.is_some_and(|c| c != &row.category_id) {
                return None;
            }
            Some(Item {
                product_id: row.product_id.clone(),
                score,
                name: row.name.clone(),
                price: row.price.clone(),
                category_id: row.category_id.clone(),
            })
        });
        let Some(item) = item else { return false };
        self.taken.insert(id);
        self.items.push(item);
        true
    }

    /// Fills the remaining places from trending (optionally one category); returns how many.
    fn fill_from_trending(&mut self, views: &Views, category: Option<&Id>) -> usize {
        // Ranking trending copies and sorts the whole table: not worth it for a full answer.
        if self.full() {
            return 0;
        }
        let mut added = 0;
        for row in ranked_trending(views, category) {
            if self.full() {
                break;
            }
            // The catalog's category decides (the trending row's may be unknown).
            if self.push(row.product_id, row.score as f64, category) {
                added += 1;
            }
        }
        added
    }
}

/// Trending rows by score, highest first, ties by product id (so the order is stable).
fn ranked_trending(views: &Views, category: Option<&Id>) -> Vec<TrendingRow> {
    let mut rows = views.trending.page(None, usize::MAX, |row| {
        // A row whose category is not known yet may still be in the category; the catalog
        // check in `push` settles it.
        row.score > 0 && category.is_none_or(|c| row.category_id.as_ref().is_none_or(|rc| rc == c))
    });
    rows.sort_unstable_by(|a, b| b.score.cmp(&a.score).then_with(|| a.product_id.cmp(&b.product_id)));
    rows
}

fn source_of(from_model: usize, from_trending: usize) -> Source {
    match (from_model, from_trending) {
        (0, _) => Source::Trending,
        (_, 0) => Source::Model,
        _ => Source::ModelAndTrending,
    }
}

fn count(endpoint: &'static str, source: Source) {
    metrics::counter!(crate::metrics::RECOMMENDATIONS_TOTAL, "endpoint" => endpoint, "source" => source.as_str())
        .increment(1);
}

/// Calls into the model; a panicking model degrades the answer to trending instead of failing
/// the request (a bad promotion must not take recommendations down; rollback fixes it).
fn ask_model<T>(model: &dyn Recommender, what: &'static str, call: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(answer) => Some(answer),
        Err(_) => {
            tracing::error!(model_version = %model.version(), call = what, "recommendation model panicked, answering from trending");
            None
        }
    }
}

/// Recommendations for a user
///
/// From the promoted model, filled from trending; leaves out what is not buyable and what
/// the user already bought. `source` says where the items came from.
#[utoipa::path(
    get,
    path = "/api/v1/recommend/user/{id}",
    tag = "recommendations",
    params(("id" = Id, Path, description = "User id"), LimitQuery, ReadConsistency),
    responses((status = 200, description = "Recommended products, best first", body = UserRecommendations), ReadErrors)
)]
pub async fn for_user(
    State(state): State<AppState>,
    IdPath(user_id): IdPath,
    ApiQuery(query): ApiQuery<LimitQuery>,
    read: ReadConsistency,
) -> Result<Json<UserRecommendations>, ApiError> {
    let limit = checked_limit(query.limit)?;
    state.consistent(&read).await?;
    let views = &state.views;

    // NMF is non-negative: a zero or negative weight carries no signal for the fold-in.
    let interactions: Vec<(Id, f64)> = views
        .user_interactions(&user_id)
        .into_iter()
        .filter(|row| row.weight > 0)
        .map(|row| (row.product_id, row.weight as f64))
        .collect();
    let purchased: HashSet<Id> =
        views.user_purchases(&user_id).into_iter().filter(|row| row.quantity > 0).map(|row| row.product_id).collect();
    let mut picker = Picker::new(views, limit, purchased);

    // One model for the whole request, however often it is swapped meanwhile. The fold-in
    // runs inline: it is well under a millisecond, less than a hop to the blocking pool.
    let model = state.models.get();
    let mut model_version = None;
    let mut from_model = 0;
    if let Some(model) = model.as_deref().filter(|_| !interactions.is_empty()) {
        model_version = Some(model.version());
        let answer = ask_model(model.as_ref(), "recommend", || {
            model.recommend(&interactions, limit, &|id: &Id| picker.skips(id))
        });
        for (id, score) in answer.unwrap_or_default() {
            from_model += usize::from(picker.push(id, score, None));
        }
    }
    let from_trending = picker.fill_from_trending(views, None);
    let source = source_of(from_model, from_trending);
    count("user", source);
    Ok(Json(UserRecommendations { user_id, items: picker.items, source, model_version }))
}

/// Products similar to a product
#[utoipa::path(
    get,
    path = "/api/v1/recommend/similar/{id}",
    tag = "recommendations",
    params(("id" = Id, Path, description = "Product id"), LimitQuery, ReadConsistency),
    responses((status = 200, description = "Similar products, most similar first", body = SimilarProducts), ReadErrors, NotFound)
)]
pub async fn similar(
    State(state): State<AppState>,
    IdPath(product_id): IdPath,
    ApiQuery(query): ApiQuery<LimitQuery>,
    read: ReadConsistency,
) -> Result<Json<SimilarProducts>, ApiError> {
    let limit = checked_limit(query.limit)?;
    state.consistent(&read).await?;
    let views = &state.views;

    // The product may be out of stock ("similar to this sold-out item" is a good question),
    // but it must exist.
    let product = views
        .products
        .get(&product_id)
        .ok_or_else(|| ApiError::NotFound { entity: "product", id: product_id.to_string() })?;
    let mut picker = Picker::new(views, limit, HashSet::from([product_id.clone()]));

    let model = state.models.get();
    let mut model_version = None;
    let mut from_model = 0;
    if let Some(model) = model.as_deref() {
        model_version = Some(model.version());
        let answer = ask_model(model.as_ref(), "similar", || {
            model.similar(&product_id, limit, &|id: &Id| picker.skips(id))
        });
        for (id, score) in answer.flatten().unwrap_or_default() {
            from_model += usize::from(picker.push(id, score, None));
        }
    }
    let from_trending = picker.fill_from_trending(views, Some(&product.category_id));
    let source = source_of(from_model, from_trending);
    count("similar", source);
    Ok(Json(SimilarProducts { product_id, items: picker.items, source, model_version }))
}

/// Trending products
///
/// By weighted interactions within the trending window, optionally within one category.
#[utoipa::path(
    get,
    path = "/api/v1/recommend/trending",
    tag = "recommendations",
    params(TrendingQuery, ReadConsistency),
    responses((status = 200, description = "Trending products, most interactions first", body = TrendingProducts), ReadErrors)
)]
pub async fn trending(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<TrendingQuery>,
    read: ReadConsistency,
) -> Result<Json<TrendingProducts>, ApiError> {
    let limit = checked_limit(query.limit)?;
    let category = query_id(query.category, "category")?;
    state.consistent(&read).await?;
    let mut picker = Picker::new(&state.views, limit, HashSet::new());
    picker.fill_from_trending(&state.views, category.as_ref());
    count("trending", Source::Trending);
    Ok(Json(TrendingProducts { category, items: picker.items, source: Source::Trending }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_one_to_a_hundred_are_rejected() {
        assert_eq!(checked_limit(None).unwrap(), 10);
        assert_eq!(checked_limit(Some(1)).unwrap(), 1);
        assert_eq!(checked_limit(Some(100)).unwrap(), 100);
        assert!(matches!(checked_limit(Some(0)), Err(ApiError::InvalidQuery(_))));
        assert!(matches!(checked_limit(Some(101)), Err(ApiError::InvalidQuery(_))));
    }

    #[test]
    fn source_names_what_contributed() {
        assert_eq!(source_of(0, 0), Source::Trending);
        assert_eq!(source_of(0, 3), Source::Trending);
        assert_eq!(source_of(3, 0), Source::Model);
        assert_eq!(source_of(2, 1), Source::ModelAndTrending);
        assert_eq!(serde_json::to_value(Source::ModelAndTrending).unwrap(), "model+trending");
    }
}
