//! Consistency tokens: the log positions a write was made durable at, handed to the client so
//! that a later read can wait until the views have passed them (read-your-writes, also across
//! replicas, because positions are the log's and not this process's).
//!
//! Format: comma-separated `topic:partition:offset`, e.g. `catalog:3:1042` or
//! `catalog:3:1042,inventory:0:17`. Simple on purpose: it is readable in a curl session and in
//! logs, and holds nothing a client could abuse (at worst it makes its own read wait).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::Deserialize;
use shopflow_events::Topic;
use shopflow_ingest::Position;

use crate::error::ApiError;
use crate::state::AppState;

/// Header carrying a token, on write responses and on reads.
pub const TOKEN_HEADER: &str = "x-consistency-token";
/// Header with the longest a client is willing to wait for its token, in milliseconds.
pub const WAIT_HEADER: &str = "x-consistency-wait-ms";

/// More positions than any single request writes; bounds the work of parsing a hostile token.
const MAX_POSITIONS: usize = 64;
const MAX_TOKEN_LEN: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyToken {
    positions: Vec<Position>,
}

impl ConsistencyToken {
    pub fn new(mut positions: Vec<Position>) -> Self {
        // Only the highest offset per partition matters for "has the view passed it".
        positions.sort();
        positions.dedup_by(|later, earlier| {
            later.topic == earlier.topic && later.partition == earlier.partition && {
                earlier.offset = earlier.offset.max(later.offset);
                true
            }
        });
        Self { positions }
    }

    pub fn positions(&self) -> &[Position] {
        &self.positions
    }

    fn merge(self, other: ConsistencyToken) -> Self {
        let mut positions = self.positions;
        positions.extend(other.positions);
        Self::new(positions)
    }
}

impl fmt::Display for ConsistencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.positions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{}:{}", p.topic, p.partition, p.offset)?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct TokenError(String);

impl FromStr for ConsistencyToken {
    type Err = TokenError;

    fn from_str(text: &str) -> Result<Self, TokenError> {
        if text.is_empty() {
            return Err(TokenError("empty token".into()));
        }
        if text.len() > MAX_TOKEN_LEN {
            return Err(TokenError(format!("longer than {MAX_TOKEN_LEN} characters")));
        }
        let parts: Vec<&str> = text.split(',').collect();
        if parts.len() > MAX_POSITIONS {
            return Err(TokenError(format!("more than {MAX_POSITIONS} positions")));
        }
        let positions = parts
            .into_iter()
            .map(|part| {
                let mut fields = part.split(':');
                let (Some(topic), Some(partition), Some(offset), None) =
                    (fields.next(), fields.next(), fields.next(), fields.next())
                else {
                    return Err(TokenError(format!("{part:?} is not topic:partition:offset")));
                };
                let topic = Topic::from_name(topic)
                    .ok_or_else(|| TokenError(format!("unknown topic {topic:?}")))?;
                let partition = partition
                    .parse::<u32>()
                    .map_err(|_| TokenError(format!("bad partition in {part:?}")))?;
                let offset =
                    offset.parse::<u64>().map_err(|_| TokenError(format!("bad offset in {part:?}")))?;
                Ok(Position::new(topic.name(), partition, offset))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(positions))
    }
}

/// What a read asked for: the token to wait for (header `X-Consistency-Token` or query
/// `consistency_token`, merged if both) and how long it may wait (header
/// `X-Consistency-Wait-Ms` or query `wait_ms`, capped at `read_wait_max`).
#[derive(Clone, Debug, Default)]
pub struct ReadConsistency {
    pub token: Option<ConsistencyToken>,
    pub wait: Option<Duration>,
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    consistency_token: Option<String>,
    wait_ms: Option<String>,
}

fn parse_token(text: &str) -> Result<ConsistencyToken, ApiError> {
    text.parse().map_err(|e: TokenError| ApiError::InvalidConsistencyToken(e.0))
}

fn parse_wait(text: &str) -> Result<Duration, ApiError> {
    text.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| ApiError::InvalidQuery(format!("wait must be a number of milliseconds, got {text:?}")))
}

impl FromRequestParts<AppState> for ReadConsistency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, ApiError> {
        // Other query parameters belong to the route; only ours are read (and not denied).
        let query = Query::<ConsistencyQuery>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::InvalidQuery(e.body_text()))?
            .0;
        let header = |name: &str| -> Result<Option<&str>, ApiError> {
            parts
                .headers
                .get(name)
                .map(|v| v.to_str().map_err(|_| ApiError::InvalidConsistencyToken("not ASCII".into())))
                .transpose()
        };
        let mut token = header(TOKEN_HEADER)?.map(parse_token).transpose()?;
        if let Some(text) = &query.consistency_token {
            let from_query = parse_token(text)?;
            token = Some(match token {
                Some(t) => t.merge(from_query),
                None => from_query,
            });
        }
        let wait = match (header(WAIT_HEADER)?, &query.wait_ms) {
            (Some(h), _) => Some(parse_wait(h)?),
            (None, Some(q)) => Some(parse_wait(q)?),
            (None, None) => None,
        };
        Ok(Self { token, wait })
    }
}

impl AppState {
    /// Waits until the views have passed the read's token, at most
    /// `min(requested wait, read_wait_max)`. Reads without a token return at once (eventual).
    ///
    /// A token no view could ever pass (a topic outside `source_topics`, a partition the topic
    /// does not have) is `400 invalid_consistency_token` at once. A read that would have to
    /// wait while `max_consistency_waiters` reads wait already is `503 too_many_waiters`.
    pub async fn consistent(&self, read: &ReadConsistency) -> Result<(), ApiError> {
        let Some(token) = &read.token else { return Ok(()) };
        self.check_token(token)?;
        let bound = read.wait.map_or(self.config.read_wait_max, |w| w.min(self.config.read_wait_max));
        self.await_passed(token.positions(), bound).await.map_err(|unsettled| match unsettled {
            Unsettled::TooManyWaiters => {
                tracing::debug!(token = %token, "consistency wait refused: too many waiting reads");
                ApiError::TooManyWaiters { limit: self.config.max_consistency_waiters }
            }
            Unsettled::TimedOut => {
                tracing::debug!(token = %token, waited_ms = bound.as_millis() as u64, "consistency wait timed out");
                ApiError::ConsistencyTimeout { waited: bound }
            }
        })
    }

    /// Waits until the views have passed `positions`, at most `bound`, as one of at most
    /// `max_consistency_waiters` waits (strong reads and keyed writes alike).
    pub(crate) async fn await_passed(&self, positions: &[Position], bound: Duration) -> Result<(), Unsettled> {
        if self.views.progress.has_passed(positions) {
            return Ok(());
        }
        let Some(_waiting) = self.wait_guard() else {
            metrics::counter!(WAITS_REFUSED).increment(1);
            return Err(Unsettled::TooManyWaiters);
        };
        self.views.progress.wait_for(positions, bound).await.map_err(|_| Unsettled::TimedOut)
    }

    /// `find` in this replica's views; on a miss, again once the views have caught up with
    /// `topic`. What a client made a moment ago through another replica (signed up, signed in,
    /// rotated a token) may not have reached ours yet: it is only missing once they caught up.
    pub(crate) async fn find_caught_up<T>(&self, topic: Topic, find: impl Fn() -> Option<T>) -> Result<Option<T>, ApiError> {
        if let Some(found) = find() {
            return Ok(Some(found));
        }
        self.catch_up(topic).await?;
        Ok(find())
    }

    /// Waits until the views have passed everything `topic` holds now, within `write_timeout`.
    /// Not in time: `503 decision_pending`, never a wrong "no".
    async fn catch_up(&self, topic: Topic) -> Result<(), ApiError> {
        let ends = tokio::time::timeout(self.config.write_timeout, self.log.end_offsets(topic.name()))
            .await
            .map_err(|_| ApiError::LogUnavailable)??;
        let last: Vec<Position> = ends
            .iter()
            .enumerate()
            .filter(|(_, end)| **end > 0)
            .map(|(partition, end)| Position::new(topic.name(), partition as u32, end - 1))
            .collect();
        self.await_passed(&last, self.config.write_timeout).await.map_err(|_| {
            tracing::warn!(topic = topic.name(), "views did not catch up with the log in time");
            ApiError::DecisionPending
        })
    }

    /// Refuses positions no view will ever pass, so such a read does not wait its full bound.
    fn check_token(&self, token: &ConsistencyToken) -> Result<(), ApiError> {
        let topics = &self.config.source_topics;
        for position in token.positions() {
            if !topics.contains(&position.topic) {
                return Err(ApiError::InvalidConsistencyToken(format!(
                    "no view reads topic {:?} (a token may name {})",
                    position.topic,
                    topics.join(", ")
                )));
            }
            // Known from the end offset poll; unknown before the first one (or if a poll saw
            // no partitions at all), then not checked.
            if let Some(partitions) = self.end_offsets.partitions(&position.topic) {
                if partitions > 0 && position.partition >= partitions {
                    return Err(ApiError::InvalidConsistencyToken(format!(
                        "topic {:?} has no partition {} (it has {partitions})",
                        position.topic, position.partition
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Reads refused a consistency wait because `max_consistency_waiters` were waiting.
/// Why [`AppState::await_passed`] returned before the views passed its positions.
pub(crate) enum Unsettled {
    /// `max_consistency_waiters` waits were waiting already.
    TooManyWaiters,
    TimedOut,
}

const WAITS_REFUSED: &str = "serving_consistency_waits_refused_total";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_the_highest_offset_per_partition() {
        let token = ConsistencyToken::new(vec![
            Position::new("inventory", 0, 17),
            Position::new("catalog", 3, 1042),
            Position::new("catalog", 3, 1000),
        ]);
        assert_eq!(token.to_string(), "catalog:3:1042,inventory:0:17");
        assert_eq!(token.to_string().parse::<ConsistencyToken>().unwrap(), token);
    }

    #[test]
    fn rejects_malformed_tokens() {
        for bad in [
            "",
            "catalog",
            "catalog:1",
            "catalog:1:2:3",
            "nope:1:2",
            "catalog:-1:2",
            "catalog:1:x",
            "catalog:1:2,",
            "catalog:1:99999999999999999999999",
        ] {
            assert!(bad.parse::<ConsistencyToken>().is_err(), "{bad:?} parsed");
        }
        let long = vec!["catalog:0:1"; MAX_POSITIONS + 1].join(",");
        assert!(long.parse::<ConsistencyToken>().is_err());
    }
}
