//! `POST /api/v1/interactions`: what shoppers do that is not a purchase (a product viewed, a
//! search, a recommendation clicked). These feed the interaction matrix and trending, so a
//! new shopper's first clicks reach their recommendations once the views pass the token.

use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;
use shopflow_events::types::{ProductViewed, RecommendationClicked, SearchPerformed};
use shopflow_events::{Event, Id};

use crate::error::ApiError;
use crate::extract::WriteJson;
use crate::idempotency::Write;
use crate::openapi::WriteErrors;
use crate::state::AppState;
use crate::write::Accepted;

#[derive(Deserialize, ToSchema)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Interaction {
    #[serde(rename = "product.viewed")]
    Viewed { user_id: Id, product_id: Id },
    #[serde(rename = "recommendation.clicked")]
    Clicked {
        user_id: Id,
        product_id: Id,
        #[serde(default)]
        source: String,
    },
    #[serde(rename = "search.performed")]
    Searched {
        user_id: Id,
        /// Not blank.
        #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
        query: String,
        #[serde(default)]
        results: u32,
    },
}

/// Record an interaction
///
/// A product viewed, a recommendation clicked or a search performed. Open to every caller.
#[utoipa::path(
    post,
    path = "/api/v1/interactions",
    tag = "interactions",
    params(Write),
    request_body = Interaction,
    responses(Accepted, WriteErrors)
)]
pub async fn record(State(state): State<AppState>, WriteJson { body, write }: WriteJson<Interaction>) -> Result<Accepted, ApiError> {
    let event = match body {
        Interaction::Viewed { user_id, product_id } => Event::ProductViewed(ProductViewed { user_id, product_id }),
        Interaction::Clicked { user_id, product_id, source } => {
            Event::RecommendationClicked(RecommendationClicked { user_id, product_id, source })
        }
        Interaction::Searched { user_id, query, results } => Event::SearchPerformed(SearchPerformed { user_id, query, results }),
    };
    state.submit(&write, event, None).await
}
