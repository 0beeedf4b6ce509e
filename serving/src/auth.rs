//! Who may do what. For now one role, admin, proven by a static bearer token from the
//! configuration; JWT users replace this module's internals later, and handlers keep asking
//! for the same extractor.
//!
//! The token is compared in constant time and never logged.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::state::AppState;

/// Proof that the request may perform admin writes (catalog and stock). Taking it as a
/// handler argument is the route's access rule; it runs before the body is read, so an
/// unauthorised client learns nothing about body validation.
#[derive(Clone, Copy, Debug)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = state.config.admin_token.as_deref() else {
            // No token configured: development mode, writes are open (warned at startup).
            return Ok(Admin);
        };
        let presented = bearer(parts)?;
        if constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
            Ok(Admin)
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("missing Authorization: Bearer token"))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(ApiError::Unauthorized("malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized("expected a Bearer token"));
    }
    Ok(token.trim())
}

/// Equal-length inputs take the same time whatever their content, so response timing does
/// not reveal how much of a guessed token was right. (Length itself is not secret enough to
/// hide here.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_tokens_exactly() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn parses_bearer_headers() {
        let parts = |value: &str| {
            let (parts, ()) =
                axum::http::Request::builder().header(AUTHORIZATION, value).body(()).unwrap().into_parts();
            parts
        };
        assert_eq!(bearer(&parts("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer(&parts("bearer abc")).unwrap(), "abc");
        assert!(bearer(&parts("Basic abc")).is_err());
        assert!(bearer(&parts("Bearer ")).is_err());
        assert!(bearer(&parts("abc")).is_err());
    }
}
