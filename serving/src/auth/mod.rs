//! Who the caller is and what they may do.
//!
//! - [`authenticate`] (middleware, every route) verifies a presented `Authorization: Bearer`
//!   access token: signature and `kid` ([`keys`]), expiry, issuer, and that its session is not
//!   revoked. The revocation check reads the sessions view in this process's memory, which
//!   every replica keeps current from the log: no database call per request, and a logout is
//!   refused everywhere as soon as the replica's views pass it (milliseconds). A request
//!   without the header goes on anonymous; one with a bad token is refused with 401.
//! - Handlers say what they need by taking an extractor: [`User`] (any signed-in caller),
//!   [`Admin`] (the admin role; 401 without a token, 403 for a customer), [`MaybeUser`].
//!   Extractors run before the body is read, so an unauthorised client learns nothing about
//!   body validation.
//! - Ownership: a customer reaches only their own resources; another user's are `404`
//!   ([`Caller::may_access`]), so ids cannot be probed. Admins reach every user's.
//!
//! Tokens and passwords never reach a log line: the `Authorization` header is marked
//! sensitive, bodies are never logged, configuration `Debug` redacts keys.

pub mod admin;
pub mod keys;
pub mod password;
pub mod refresh;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shopflow_events::types::Role;
use shopflow_events::Id;

use crate::config::duration;
use crate::error::ApiError;
use crate::state::AppState;
pub use keys::{Claims, KeyError, KeyRing, TokenError};
pub use password::Passwords;

/// Accounts and sessions.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The active HS256 signing key, at least 32 bytes (prefer `key_file`).
    pub key: Option<String>,
    /// A file holding the active signing key (whitespace around it is ignored).
    pub key_file: Option<PathBuf>,
    /// Retired keys: they no longer sign but still verify until their tokens have expired.
    pub previous_keys: Vec<String>,
    pub previous_key_files: Vec<PathBuf>,
    /// Lifetime of an access token.
    #[serde(with = "duration")]
    pub access_ttl: Duration,
    /// Lifetime of a refresh token (each rotation issues a new one with a full lifetime).
    #[serde(with = "duration")]
    pub refresh_ttl: Duration,
    /// The `iss` claim issued and required.
    pub issuer: String,
    /// Password hashes computed at once (each holds 19 MiB for tens of milliseconds).
    pub max_concurrent_hashes: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            key: None,
            key_file: None,
            previous_keys: Vec::new(),
            previous_key_files: Vec::new(),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            issuer: "shopflow".to_owned(),
            max_concurrent_hashes: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("key_file", &self.key_file)
            .field("previous_keys", &format_args!("<{} redacted>", self.previous_keys.len()))
            .field("previous_key_files", &self.previous_key_files)
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("issuer", &self.issuer)
            .field("max_concurrent_hashes", &self.max_concurrent_hashes)
            .finish()
    }
}

/// What the serving layer needs to authenticate: the keys and the password hasher.
pub struct Auth {
    pub keys: KeyRing,
    pub passwords: Passwords,
    pub refresh_ttl: Duration,
}

impl Auth {
    pub fn from_config(config: &AuthConfig) -> Result<Self, KeyError> {
        Ok(Self {
            keys: KeyRing::from_config(config)?,
            passwords: Passwords::new(config.max_concurrent_hashes),
            refresh_ttl: config.refresh_ttl,
        })
    }
}

/// A caller proven by a valid access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Id,
    pub role: Role,
    pub session_id: Id,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the caller may see and change `user`'s resources: their own, or any as admin.
    pub fn may_access(&self, user: &Id) -> bool {
        &self.user_id == user || self.is_admin()
    }
}

/// Middleware: verifies a presented access token and leaves the [`Caller`] in the request's
/// extensions for the extractors; records the user id on the request's span (the request
/// log), never the token.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if request.headers().contains_key(AUTHORIZATION) {
        match caller(&state, request.headers()) {
            Ok(caller) => {
                tracing::Span::current().record("user_id", tracing::field::display(&caller.user_id));
                request.extensions_mut().insert(caller);
            }
            Err(e) => return e.into_response(),
        }
    }
    next.run(request).await
}

fn caller(state: &AppState, headers: &axum::http::HeaderMap) -> Result<Caller, ApiError> {
    let token = bearer(headers)?;
    let claims = state.auth.keys.verify(token).map_err(|e| match e {
        TokenError::Expired => ApiError::TokenExpired,
        TokenError::Invalid => ApiError::InvalidToken,
    })?;
    let (user_id, session_id) = match (Id::new(claims.sub), Id::new(claims.sid)) {
        (Ok(user), Ok(session)) => (user, session),
        _ => return Err(ApiError::InvalidToken),
    };
    // A session this replica has not seen yet (a login a few ms ago through another one) is
    // fine: only a revoked one is refused.
    if let Some(session) = state.views.sessions.get(&session_id) {
        if session.revoked.is_some() || session.user_id != user_id {
            return Err(ApiError::TokenRevoked);
        }
    }
    Ok(Caller { user_id, role: claims.role, session_id })
}

fn bearer(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("missing Authorization: Bearer token"))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header"))?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::Unauthorized("malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized("expected a Bearer token"));
    }
    Ok(token.trim())
}

/// A signed-in caller, any role.
#[derive(Clone, Debug)]
pub struct User(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .map(User)
            .ok_or(ApiError::Unauthorized("missing Authorization: Bearer token"))
    }
}

/// The caller if signed in.
#[derive(Clone, Debug)]
pub struct MaybeUser(pub Option<Caller>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(MaybeUser(parts.extensions.get::<Caller>().cloned()))
    }
}

/// Proof that the caller has the admin role (catalog, stock and order-status writes).
#[derive(Clone, Debug)]
pub struct Admin(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let User(caller) = User::from_request_parts(parts, state).await?;
        if caller.is_admin() {
            Ok(Admin(caller))
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_headers() {
        let headers = |value: &str| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert(AUTHORIZATION, value.parse().unwrap());
            headers
        };
        assert_eq!(bearer(&headers("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer(&headers("bearer abc")).unwrap(), "abc");
        assert!(bearer(&headers("Basic abc")).is_err());
        assert!(bearer(&headers("Bearer ")).is_err());
        assert!(bearer(&headers("abc")).is_err());
    }

    #[test]
    fn customers_reach_their_own_resources_and_admins_everyones() {
        let customer = Caller { user_id: Id::from("a"), role: Role::Customer, session_id: Id::from("s") };
        assert!(customer.may_access(&Id::from("a")));
        assert!(!customer.may_access(&Id::from("b")));
        let admin = Caller { role: Role::Admin, ..customer };
        assert!(admin.may_access(&Id::from("b")));
    }

    #[test]
    fn debug_output_redacts_keys() {
        let config = AuthConfig { key: Some("top-secret-key".into()), previous_keys: vec!["older-secret".into()], ..AuthConfig::default() };
        let debug = format!("{config:?}");
        assert!(!debug.contains("top-secret") && !debug.contains("older-secret"), "{debug}");
    }
}
