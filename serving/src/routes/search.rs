//! Product search over this server's own index (`shopflow-search`):
//! `GET /api/v1/products/search`, `GET /api/v1/products/suggest`. A consistency token is
//! waited for twice: the views pass it, then the index has applied it, so a search after a
//! write sees the write. Every search with text is published as a `search.performed`
//! interaction (with its hit count), so trending and zero-result searches can be analysed.

use std::time::Instant;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use shopflow_events::types::{SearchPerformed, SynonymsSet};
use shopflow_events::{Event, Id};
use shopflow_search::{Filters, SearchError, SearchRequest, SearchResults, Suggestion};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::metrics::SEARCH_DURATION;
use crate::openapi::{AdminErrors, ReadErrors, WriteErrors};
use crate::extract::{ApiQuery, WriteJson};
use crate::idempotency::Write;
use crate::write::Accepted;
use crate::state::AppState;
use crate::token::ReadConsistency;

pub const DEFAULT_LIMIT: usize = 20;
pub const DEFAULT_SUGGESTIONS: usize = 8;
/// Who a search is recorded for when the caller does not say.
const ANONYMOUS: &str = "anonymous";
/// The longest query text an interaction event carries (the event schema's limit).
const EVENT_QUERY_CHARS: usize = 500;

/// Query parameters; `consistency_token` and `wait_ms` are read by [`ReadConsistency`].
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// What the shopper typed; the last word is a prefix unless the text ends with a space.
    #[serde(default)]
    q: String,
    /// A category path: `Kitchen` or `Kitchen/Appliances` (and everything below it).
    category: Option<String>,
    /// Brand ids, comma-separated: any of them.
    brand: Option<String>,
    /// Inclusive, in minor units.
    price_min: Option<i64>,
    price_max: Option<i64>,
    #[serde(default)]
    in_stock: bool,
    /// Products whose mean review rating is at least this; products without reviews are left out.
    #[param(minimum = 0, maximum = 5)]
    min_rating: Option<f64>,
    /// `relevance` (default), `price_asc`, `price_desc`, `popularity` (top sellers first),
    /// `newest` (most recently created first).
    sort: Option<String>,
    /// Count the matches per category and brand (`facets` in the answer); off by default, as
    /// counting reads every match.
    #[serde(default)]
    facets: bool,
    /// Hits per page.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page (of the same sort).
    cursor: Option<String>,
    /// Whose search this is, for the interaction event (`anonymous` without one).
    user_id: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuggestQuery {
    /// What has been typed so far.
    #[serde(default)]
    q: String,
    #[param(minimum = 1, maximum = 20)]
    limit: Option<usize>,
}

/// Search products
///
/// BM25 over name, brand, category and description (boosted in that order), English
/// stemming, typos by word length, prefix on the last word, admins' synonyms; filters
/// (category, brand, price, in stock, minimum rating), facet counts when asked, sorts
/// (relevance, price, popularity, newest) and cursor pagination. With a consistency token it
/// sees that write.
#[utoipa::path(
    get,
    path = "/api/v1/products/search",
    operation_id = "search_products",
    tag = "search",
    params(SearchQuery, ReadConsistency),
    responses((status = 200, description = "One page of hits, the total and (with `facets=true`) facet counts", body = SearchResults), ReadErrors)
)]
pub async fn search(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SearchQuery>,
    read: ReadConsistency,
) -> Result<Json<SearchResults>, ApiError> {
    let user = match query.user_id {
        Some(id) => Id::new(id).map_err(|e| ApiError::InvalidQuery(format!("user_id: {}", e.message)))?,
        None => Id::from(ANONYMOUS),
    };
    let brands = query
        .brand
        .map(|b| b.split(',').map(str::trim).filter(|b| !b.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let request = SearchRequest {
        text: query.q,
        filters: Filters {
            category: query.category,
            brands,
            price_min: query.price_min,
            price_max: query.price_max,
            in_stock: query.in_stock,
            min_rating: query.min_rating,
        },
        sort: query.sort.as_deref().map(str::parse).transpose().map_err(search_error)?.unwrap_or_default(),
        limit: query.limit.unwrap_or(DEFAULT_LIMIT),
        cursor: query.cursor,
        facets: query.facets,
    };
    state.search_consistent(&read).await?;
    let index = state.search.clone();
    let handed = Instant::now();
    let (request, results, queued, searched) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let results = index.search(&request);
        (request, results, started - handed, started.elapsed())
    })
    .await
    .map_err(|_| ApiError::Internal)?;
    metrics::histogram!(SEARCH_DURATION, "phase" => "queued").record(queued.as_secs_f64());
    metrics::histogram!(SEARCH_DURATION, "phase" => "searched").record(searched.as_secs_f64());
    let results = results.map_err(search_error)?;
    if !request.text.trim().is_empty() {
        record(&state, user, &request.text, results.total);
    }
    Ok(Json(results))
}

/// Suggest products as the shopper types
#[utoipa::path(
    get,
    path = "/api/v1/products/suggest",
    operation_id = "suggest_products",
    tag = "search",
    params(SuggestQuery, ReadConsistency),
    responses((status = 200, description = "Products whose name matches what is typed", body = Vec<Suggestion>), ReadErrors)
)]
pub async fn suggest(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SuggestQuery>,
    read: ReadConsistency,
) -> Result<Json<Vec<Suggestion>>, ApiError> {
    state.search_consistent(&read).await?;
    let index = state.search.clone();
    let limit = query.limit.unwrap_or(DEFAULT_SUGGESTIONS);
    let suggestions = tokio::task::spawn_blocking(move || index.suggest(&query.q, limit)).await.map_err(|_| ApiError::Internal)?;
    Ok(Json(suggestions.map_err(search_error)?))
}

/// The whole synonym set; it replaces the previous one.
#[derive(Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SynonymGroups {
    groups: Vec<Vec<String>>,
}

/// `PUT /api/v1/search/synonyms` (admin): an event on the log, so every replica's index gets
/// the same set from the `synonyms` view; a search with the answer's token uses it.
#[utoipa::path(
    put,
    path = "/api/v1/search/synonyms",
    operation_id = "put_synonyms",
    tag = "search",
    params(Write),
    request_body = SynonymGroups,
    security(("bearer" = [])),
    responses(Accepted, WriteErrors, AdminErrors)
)]
pub async fn put_synonyms(
    State(state): State<AppState>,
    _: Admin,
    WriteJson { body, write }: WriteJson<SynonymGroups>,
) -> Result<Accepted, ApiError> {
    let set_id = Id::from(shopflow_search::synonyms::DEFAULT_SET);
    let event = Event::SynonymsSet(SynonymsSet { set_id: set_id.clone(), groups: body.groups });
    state.submit(&write, event, Some(set_id.to_string())).await
}

/// `GET /api/v1/search/synonyms`: the set as the views have it.
#[utoipa::path(
    get,
    path = "/api/v1/search/synonyms",
    operation_id = "get_synonyms",
    tag = "search",
    params(ReadConsistency),
    responses((status = 200, description = "The synonym set search uses", body = SynonymGroups), ReadErrors)
)]
pub async fn get_synonyms(State(state): State<AppState>, read: ReadConsistency) -> Result<Json<SynonymGroups>, ApiError> {
    state.consistent(&read).await?;
    let set_id = Id::from(shopflow_search::synonyms::DEFAULT_SET);
    let groups = state.views.synonyms.get(&set_id).map(|row| row.groups).unwrap_or_default();
    Ok(Json(SynonymGroups { groups }))
}

/// Records the search as an interaction, off the request path (batched by
/// [`crate::recorder`]): a search never waits for (or fails with) the log.
fn record(state: &AppState, user: Id, text: &str, hits: usize) {
    let query: String = text.trim().chars().take(EVENT_QUERY_CHARS).collect();
    state.recorder.record(Event::SearchPerformed(SearchPerformed { user_id: user, query, results: u32::try_from(hits).unwrap_or(u32::MAX) }));
}

fn search_error(e: SearchError) -> ApiError {
    match e {
        SearchError::BadRequest { field, message } => ApiError::InvalidQuery(format!("{field} {message}")),
        other => {
            tracing::error!(error = %other, "search failed");
            ApiError::Internal
        }
    }
}

impl AppState {
    /// [`AppState::consistent`] for the search index: the views pass the token, then the
    /// index has applied what the views had then, within one bound.
    pub async fn search_consistent(&self, read: &ReadConsistency) -> Result<(), ApiError> {
        let Some(token) = &read.token else { return Ok(()) };
        let started = Instant::now();
        self.consistent(read).await?;
        if self.search.applied().has_passed(token.positions()) {
            return Ok(());
        }
        let bound = read.wait.map_or(self.config.read_wait_max, |w| w.min(self.config.read_wait_max));
        let Some(_waiting) = self.wait_guard() else {
            return Err(ApiError::TooManyWaiters { limit: self.config.max_consistency_waiters });
        };
        self.search
            .applied()
            .wait_for(token.positions(), bound.saturating_sub(started.elapsed()))
            .await
            .map_err(|_| ApiError::ConsistencyTimeout { waited: bound })
    }
}
