//! `/api/v1/auth`: register, login, refresh, logout (seed 004's User Service).
//!
//! Each of these writes an event and then reads the pipeline's decision on it from this
//! replica's views (`publish_decided`): which registration of an e-mail won, whether a
//! refresh rotated the token or revealed reuse. Nothing is decided here, so two replicas
//! answering at the same moment cannot both win.
//!
//! They take no `Idempotency-Key`: a retried registration gets `409 email_taken` (the
//! account exists: sign in), a retried login or refresh opens or rotates a session, and
//! the answers carry fresh secrets that must not be stored for replay.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use shopflow_events::types::{Role, SessionRefreshed, SessionRevoked, SessionStarted, UserRegistered};
use shopflow_events::{Event, Id, Topic};
use shopflow_views::AccountRow;

use crate::auth::password::{MAX_LEN, MIN_LEN};
use crate::auth::refresh::{digest, RefreshToken};
use crate::auth::User;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::gateway::ClientIp;
use crate::openapi::{UserErrors, WriteErrors};
use crate::state::AppState;
use crate::token::{ConsistencyToken, TOKEN_HEADER};

/// An account as the API shows it: never the password hash.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UserView {
    pub user_id: Id,
    pub email: String,
    pub name: String,
    pub phone: String,
    pub role: Role,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<AccountRow> for UserView {
    fn from(row: AccountRow) -> Self {
        Self {
            user_id: row.user_id,
            email: row.email,
            name: row.name,
            phone: row.phone,
            role: row.role,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// No `Debug`: it holds a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Register {
    email: String,
    password: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    phone: String,
}

#[derive(Serialize, ToSchema)]
pub struct Registered {
    pub user: UserView,
    pub consistency_token: String,
}

/// Register
///
/// Creates a customer account. The e-mail is unique: a second registration is `409`.
#[utoipa::path(
    post,
    path = "/api/v1/auth/register",
    tag = "accounts",
    request_body = Register,
    responses(
        (status = 201, description = "The account", body = Registered,
            headers(("x-consistency-token" = String, description = "Pass to a read to see the account"))),
        (status = 409, description = "`email_taken`", body = ErrorBody),
        WriteErrors,
    )
)]
pub async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<Register>,
) -> Result<Response, ApiError> {
    state.limiters.admit_credentials(ip)?;
    check_password(&body.password)?;
    let user_id = shopflow_events::user_id_for_email(&body.email);
    let mut event = UserRegistered {
        user_id: user_id.clone(),
        email: shopflow_events::normalize_email(&body.email),
        name: body.name,
        phone: body.phone,
        // Validated with a stand-in first: a bad e-mail costs no hash.
        password_hash: "$argon2id$".to_owned(),
        role: Role::Customer,
    };
    Event::UserRegistered(event.clone()).validate()?;
    if state.views.accounts.get(&user_id).is_some() {
        return Err(ApiError::EmailTaken);
    }
    event.password_hash = state.auth.passwords.hash(body.password).await?;
    let (event_id, positions) = state.publish_decided(Event::UserRegistered(event)).await?;
    // Every registration of this e-mail is in one partition; the pipeline kept the first.
    match state.views.accounts.get(&user_id) {
        Some(row) if row.registered_event == event_id => {
            tracing::info!(user_id = %user_id, "account registered");
            let token = ConsistencyToken::new(positions).to_string();
            let mut response =
                (StatusCode::CREATED, Json(Registered { user: row.into(), consistency_token: token.clone() })).into_response();
            response.headers_mut().insert(TOKEN_HEADER, HeaderValue::from_str(&token).expect("tokens are ASCII"));
            Ok(response)
        }
        _ => Err(ApiError::EmailTaken),
    }
}

fn check_password(password: &str) -> Result<(), ApiError> {
    let length = password.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&length) {
        return Err(ApiError::Validation {
            field: "password".into(),
            message: format!("must be {MIN_LEN} to {MAX_LEN} characters long"),
        });
    }
    Ok(())
}

/// No `Debug`: it holds a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    email: String,
    password: String,
}

/// A signed-in session: a short-lived access token and the refresh token that renews it.
#[derive(Serialize, ToSchema)]
pub struct SessionTokens {
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
    pub session_id: Id,
    pub user: UserView,
}

/// Sign in
///
/// A short-lived access token (JWT) and a refresh token.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "accounts",
    request_body = Login,
    responses(
        (status = 200, description = "A new session", body = SessionTokens),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        WriteErrors,
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<Login>,
) -> Result<Json<SessionTokens>, ApiError> {
    state.limiters.admit_credentials(ip)?;
    let account_key = shopflow_events::normalize_email(&body.email);
    state.limiters.logins.check(&account_key, ip)?;
    let user_id = shopflow_events::user_id_for_email(&body.email);
    let account = state.find_caught_up(Topic::Users, || state.views.accounts.get(&user_id)).await?;
    let verified = state.auth.passwords.verify(body.password, account.as_ref().map(|a| a.password_hash.clone())).await?;
    let Some(account) = account.filter(|_| verified) else {
        state.limiters.logins.failed(&account_key, ip);
        tracing::info!(client_ip = %ip, "sign-in refused: wrong e-mail or password");
        return Err(ApiError::InvalidCredentials);
    };

    let session_id = Id::generate();
    let refresh = RefreshToken::issue(&session_id);
    let now = now_ms();
    let refresh_ttl = state.auth.refresh_ttl;
    let event = Event::SessionStarted(SessionStarted {
        user_id: account.user_id.clone(),
        session_id: session_id.clone(),
        refresh_hash: digest(refresh.as_str()),
        issued_at: now,
        expires_at: now + refresh_ttl.as_millis() as i64,
        client_ip: ip.to_string(),
    });
    // Waiting for the session to reach the views means a refresh right after works on
    // every replica (theirs follow within milliseconds).
    state.publish_decided(event).await?;
    tracing::info!(user_id = %account.user_id, session_id = %session_id, client_ip = %ip, "signed in");
    Ok(Json(tokens(&state, account, session_id, refresh)))
}

fn tokens(state: &AppState, account: AccountRow, session_id: Id, refresh: RefreshToken) -> SessionTokens {
    SessionTokens {
        access_token: state.auth.keys.issue(&account.user_id, account.role, &session_id),
        token_type: "Bearer",
        expires_in: state.auth.keys.access_ttl().as_secs(),
        refresh_token: refresh.into_string(),
        refresh_expires_in: state.auth.refresh_ttl.as_secs(),
        session_id,
        user: account.into(),
    }
}

/// No `Debug`: it holds a token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    refresh_token: String,
}

/// Refresh a session
///
/// Rotates the refresh token; presenting a rotated one revokes the whole session.
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    tag = "accounts",
    request_body = Refresh,
    responses(
        (status = 200, description = "The session with new tokens", body = SessionTokens),
        (status = 401, description = "`invalid_refresh_token` or `refresh_token_reused`", body = ErrorBody),
        WriteErrors,
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<Refresh>,
) -> Result<Json<SessionTokens>, ApiError> {
    state.limiters.admit_credentials(ip)?;
    const UNKNOWN: ApiError = ApiError::InvalidRefreshToken("unknown or expired refresh token");
    let session_id = RefreshToken::session_of(&body.refresh_token).ok_or(UNKNOWN)?;
    let session = state.find_caught_up(Topic::Users, || state.views.sessions.get(&session_id)).await?.ok_or(UNKNOWN)?;
    if session.revoked.is_some() {
        return Err(ApiError::InvalidRefreshToken("the session is revoked; sign in again"));
    }
    if session.expires_at < now_ms() {
        return Err(UNKNOWN);
    }
    // Sent even when this replica's view says the token is not current: whether it is a
    // rotated-away one (reuse: the session is revoked) is the pipeline's call, in log order.
    let next = RefreshToken::issue(&session_id);
    let now = now_ms();
    let event = Event::SessionRefreshed(SessionRefreshed {
        user_id: session.user_id.clone(),
        session_id: session_id.clone(),
        presented_hash: digest(&body.refresh_token),
        refresh_hash: digest(next.as_str()),
        issued_at: now,
        expires_at: now + state.auth.refresh_ttl.as_millis() as i64,
        client_ip: ip.to_string(),
    });
    state.publish_decided(event).await?;
    let after = state.views.sessions.get(&session_id).ok_or(UNKNOWN)?;
    if after.refresh_hash == digest(next.as_str()) {
        let account = state.views.accounts.get(&after.user_id).ok_or(UNKNOWN)?;
        tracing::info!(user_id = %after.user_id, session_id = %session_id, "refresh token rotated");
        return Ok(Json(tokens(&state, account, session_id, next)));
    }
    if after.revoked.as_deref() == Some("refresh_reuse") {
        tracing::warn!(user_id = %after.user_id, session_id = %session_id, client_ip = %ip, "refresh token reused: session revoked");
        return Err(ApiError::RefreshTokenReused);
    }
    Err(UNKNOWN)
}

/// Sign out
///
/// Ends the caller's session: its refresh token stops working, and so does every access
/// token of it, on every replica, as soon as their views pass the revocation.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 503, description = "`log_unavailable` or `decision_pending`: retry", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before retrying"))),
        UserErrors,
    )
)]
pub async fn logout(State(state): State<AppState>, User(caller): User) -> Result<StatusCode, ApiError> {
    let event = Event::SessionRevoked(SessionRevoked {
        user_id: caller.user_id.clone(),
        session_id: caller.session_id.clone(),
        reason: "logout".into(),
    });
    state.publish_decided(event).await?;
    tracing::info!(user_id = %caller.user_id, session_id = %caller.session_id, "signed out");
    Ok(StatusCode::NO_CONTENT)
}

fn now_ms() -> i64 {
    crate::lag::now_ms() as i64
}
