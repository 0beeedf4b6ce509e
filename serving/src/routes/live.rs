//! Live views over Server-Sent Events: the top-sellers ranking and an order's status history.
//!
//! - `GET /api/v1/top-sellers/stream`: an `event: ranking` each time the requested ranking
//!   changes; its id is the rankings' version (`crate::live`). On connect the current ranking
//!   is sent, unless `Last-Event-ID` says the client has this version already.
//! - `GET /api/v1/orders/{id}/events`: an `event: status` per status-history entry; its id is
//!   the entry's index in the history. On connect every entry after `Last-Event-ID` is sent
//!   (all without it), then each new one. The first read accepts a consistency token.
//!
//! Both send keep-alive comments, count against `max_live_streams` (`503 too_many_streams`
//! beyond) and end when the client goes away or the server stops (a graceful shutdown waits
//! for requests to finish, and these never would).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use futures::stream::{self, Stream};
use serde::Serialize;
use shopflow_events::types::OrderStatus;
use shopflow_events::Id;
use shopflow_views::{StatusChange, TopSellerRow};
use tokio::sync::broadcast::error::RecvError;
use utoipa::ToSchema;

use super::orders::visible_order;
use super::top_sellers::{ranking, RankingQuery, TopSellersQuery, Window};
use crate::auth::User;
use crate::error::ApiError;
use crate::extract::{ApiQuery, IdPath};
use crate::live::StreamGuard;
use crate::openapi::{NotFound, ReadErrors, UserErrors};
use crate::state::AppState;
use crate::token::ReadConsistency;

/// The request header a reconnecting `EventSource` sends.
const LAST_EVENT_ID: &str = "last-event-id";

type Events = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;
type EventStream = Sse<KeepAliveStream<Events>>;

fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    headers
        .get(LAST_EVENT_ID)
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .ok_or_else(|| ApiError::InvalidQuery("Last-Event-ID must be a number from this stream".into()))
        })
        .transpose()
}

fn open(state: &AppState) -> Result<StreamGuard, ApiError> {
    state.live.open().ok_or(ApiError::TooManyStreams { limit: state.live.limit() })
}

fn sse(state: &AppState, events: Events) -> EventStream {
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(state.config.commerce.live_keep_alive))
}

/// One ranking as streamed.
#[derive(Serialize, ToSchema)]
pub struct RankingEvent {
    pub window: Window,
    pub category: Option<Id>,
    pub items: Vec<TopSellerRow>,
}

fn ranking_event(version: u64, query: &RankingQuery, items: &[TopSellerRow]) -> Event {
    let data = RankingEvent { window: query.window, category: query.category.clone(), items: items.to_vec() };
    Event::default().event("ranking").id(version.to_string()).data(serde_json::to_string(&data).expect("rankings serialize"))
}

/// Top sellers, live
///
/// Server-Sent Events: an `event: ranking` (data: `RankingEvent`, id: the ranking version)
/// now and each time this ranking changes. Reconnect with `Last-Event-ID` to skip the first
/// event if nothing changed since.
#[utoipa::path(
    get,
    path = "/api/v1/top-sellers/stream",
    operation_id = "top_sellers_stream",
    tag = "recommendations",
    params(TopSellersQuery, ("Last-Event-ID" = Option<u64>, Header, description = "The last event id received")),
    responses(
        (status = 200, description = "`text/event-stream` of `ranking` events (`RankingEvent`)", content_type = "text/event-stream", body = String),
        (status = 400, description = "`invalid_query`", body = crate::error::ErrorBody),
        (status = 503, description = "`too_many_streams`: retry later", body = crate::error::ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn top_sellers(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<TopSellersQuery>,
    headers: HeaderMap,
) -> Result<EventStream, ApiError> {
    let query = query.validate()?;
    let seen = last_event_id(&headers)?;
    let guard = open(&state)?;
    let mut versions = state.live.ranking_versions();
    let version = *versions.borrow_and_update();
    let current = ranking(&state, &query);
    // A client that has this version has this ranking (or a newer one from another replica).
    let first = seen.is_none_or(|seen| seen < version).then(|| ranking_event(version, &query, &current));
    let closed = Box::pin(state.live.closed());
    let context = (state.clone(), query, versions, current, guard, closed);
    let events = stream::unfold((first, context), |(mut pending, context)| async move {
        let (state, query, mut versions, mut sent, guard, mut closed) = context;
        loop {
            if let Some(event) = pending.take() {
                return Some((Ok(event), (None, (state, query, versions, sent, guard, closed))));
            }
            tokio::select! {
                changed = versions.changed() => changed.ok()?,
                () = &mut closed => return None,
            }
            let version = *versions.borrow_and_update();
            let items = ranking(&state, &query);
            if items != sent {
                pending = Some(ranking_event(version, &query, &items));
                sent = items;
            }
        }
    });
    Ok(sse(&state, Box::pin(events)))
}

/// One status-history entry of an order, as streamed.
#[derive(Serialize, ToSchema)]
pub struct OrderStatusEvent {
    pub order_id: Id,
    /// Position in the order's history (also the event id).
    pub index: usize,
    pub status: OrderStatus,
    pub at: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

struct OrderFollow {
    state: AppState,
    order_id: Id,
    /// Index of the next history entry to send.
    next: usize,
    pending: VecDeque<Event>,
    changes: tokio::sync::broadcast::Receiver<Arc<[Id]>>,
    /// Completes when the server stops.
    closed: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    _guard: StreamGuard,
}

impl OrderFollow {
    /// Queues the entries the view has beyond `next`.
    fn catch_up(&mut self) {
        let Some(row) = self.state.views.orders.get(&self.order_id) else { return };
        for (index, change) in row.history.into_iter().enumerate().skip(self.next) {
            self.pending.push_back(status_event(&self.order_id, index, change));
            self.next = index + 1;
        }
    }
}

fn status_event(order_id: &Id, index: usize, change: StatusChange) -> Event {
    let data = OrderStatusEvent { order_id: order_id.clone(), index, status: change.status, at: change.at, reason: change.reason };
    Event::default().event("status").id(index.to_string()).data(serde_json::to_string(&data).expect("statuses serialize"))
}

/// An order's status, live
///
/// Server-Sent Events: an `event: status` (data: `OrderStatusEvent`, id: its index in the
/// order's history) for every entry of the history after `Last-Event-ID` (all without it),
/// then for each new one. Owner or admin (another user's order is `404`).
#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/events",
    operation_id = "order_events",
    tag = "orders",
    params(
        ("id" = Id, Path, description = "Order id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "The last event id received"),
        ReadConsistency
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`text/event-stream` of `status` events (`OrderStatusEvent`)", content_type = "text/event-stream", body = String),
        ReadErrors,
        NotFound,
        UserErrors
    )
)]
pub async fn order_events(
    State(state): State<AppState>,
    User(caller): User,
    IdPath(order_id): IdPath,
    read: ReadConsistency,
    headers: HeaderMap,
) -> Result<EventStream, ApiError> {
    let seen = last_event_id(&headers)?;
    // Subscribed before the first read, so a change between the two is not missed.
    let changes = state.live.order_changes();
    state.consistent(&read).await?;
    visible_order(&state, &caller, &order_id)?;
    let guard = open(&state)?;
    let next = seen.map_or(0, |seen| seen as usize + 1);
    let closed = Box::pin(state.live.closed());
    let mut follow =
        OrderFollow { state: state.clone(), order_id, next, pending: VecDeque::new(), changes, closed, _guard: guard };
    follow.catch_up();
    let events = stream::unfold(follow, |mut follow| async move {
        loop {
            if let Some(event) = follow.pending.pop_front() {
                return Some((Ok(event), follow));
            }
            let changed = tokio::select! {
                changed = follow.changes.recv() => changed,
                () = &mut follow.closed => return None,
            };
            match changed {
                Ok(ids) if !ids.contains(&follow.order_id) => {}
                // Lagged: some notifications were dropped; the view has whatever they said.
                Ok(_) | Err(RecvError::Lagged(_)) => follow.catch_up(),
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(sse(&state, Box::pin(events)))
}
