//! Access tokens: HS256 JWTs signed with the active key and verified with any configured key,
//! found by `kid`. Rotation: make the new key active and move the old one to
//! `previous_keys`; tokens it signed stay valid until they expire (15 minutes by default),
//! then the old key can go.
//!
//! The `kid` is derived from the key (a digest prefix), so it cannot disagree with it and
//! configuration has nothing to keep in sync. Keys come from configuration or key files,
//! never from code.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shopflow_events::types::Role;
use shopflow_events::Id;

use super::AuthConfig;

/// Shortest key accepted: HS256 wants at least its output size of entropy.
pub const MIN_KEY_BYTES: usize = 32;
/// Clock skew tolerated between replicas when checking `exp` and `iat`.
const LEEWAY_SECS: u64 = 5;

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub role: Role,
    /// The session (refresh-token family): revoking it refuses this token everywhere.
    pub sid: String,
    pub iss: String,
    /// Seconds since the Unix epoch.
    pub iat: u64,
    pub exp: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no signing key configured: set serving.auth.key or serving.auth.key_file (SHOPFLOW_SERVING__AUTH__KEY_FILE)")]
    Missing,
    #[error("a signing key is shorter than {MIN_KEY_BYTES} bytes")]
    TooShort,
    #[error("cannot read key file {path}: {source}")]
    File { path: String, source: std::io::Error },
}

/// Why a presented token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid")]
    Invalid,
}

pub struct KeyRing {
    kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
    validation: Validation,
    issuer: String,
    access_ttl: Duration,
}

impl KeyRing {
    pub fn from_config(config: &AuthConfig) -> Result<Self, KeyError> {
        let active = match (&config.key, &config.key_file) {
            (Some(key), _) => key.as_bytes().to_vec(),
            (None, Some(path)) => read_key(path)?,
            (None, None) => return Err(KeyError::Missing),
        };
        let mut previous: Vec<Vec<u8>> = config.previous_keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        for path in &config.previous_key_files {
            previous.push(read_key(path)?);
        }
        if std::iter::once(&active).chain(&previous).any(|k| k.len() < MIN_KEY_BYTES) {
            return Err(KeyError::TooShort);
        }
        let verifying =
            std::iter::once(&active).chain(&previous).map(|k| (kid(k), DecodingKey::from_secret(k))).collect();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_issuer(&[&config.issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        Ok(Self {
            kid: kid(&active),
            signing: EncodingKey::from_secret(&active),
            verifying,
            validation,
            issuer: config.issuer.clone(),
            access_ttl: config.access_ttl,
        })
    }

    /// The `kid` of the key that signs.
    pub fn active_kid(&self) -> &str {
        &self.kid
    }

    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// A fresh access token for `user` in `session`, valid for the configured lifetime.
    pub fn issue(&self, user: &Id, role: Role, session: &Id) -> String {
        let iat = now_secs();
        self.sign(&Claims {
            sub: user.to_string(),
            role,
            sid: session.to_string(),
            iss: self.issuer.clone(),
            iat,
            exp: iat + self.access_ttl.as_secs(),
        })
    }

    /// Signs arbitrary claims with the active key (tests mint expired tokens with it).
    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signing).expect("HS256 signing cannot fail")
    }

    /// The claims of a token signed by one of our keys, unexpired, of our issuer. Tokens
    /// without a `kid`, with an unknown one, or of another algorithm (`none` included) are
    /// refused before any signature check.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Invalid);
        }
        let key = header.kid.as_deref().and_then(|kid| self.verifying.get(kid)).ok_or(TokenError::Invalid)?;
        match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => Err(TokenError::Expired),
            Err(_) => Err(TokenError::Invalid),
        }
    }
}

/// A key's id: the first 16 hex digits of its SHA-256. Public (it is in every token header)
/// and reveals nothing usable about the key.
pub fn kid(key: &[u8]) -> String {
    crate::hex::hex(&Sha256::digest(key)[..8])
}

fn read_key(path: &Path) -> Result<Vec<u8>, KeyError> {
    let text = std::fs::read(path).map_err(|source| KeyError::File { path: path.display().to_string(), source })?;
    Ok(text.trim_ascii().to_vec())
}

/// Seconds since the Unix epoch, as the token validation counts them.
pub use jsonwebtoken::get_current_timestamp as now_secs;

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    use super::*;

    fn ring(key: &str, previous: &[&str]) -> KeyRing {
        let config = AuthConfig {
            key: Some(key.into()),
            previous_keys: previous.iter().map(|k| (*k).to_owned()).collect(),
            ..AuthConfig::default()
        };
        KeyRing::from_config(&config).unwrap()
    }

    const A: &str = "key-a-key-a-key-a-key-a-key-a-key-a!";
    const B: &str = "key-b-key-b-key-b-key-b-key-b-key-b!";

    #[test]
    fn issued_tokens_verify_and_carry_their_claims() {
        let keys = ring(A, &[]);
        let token = keys.issue(&Id::from("u1"), Role::Admin, &Id::from("s1"));
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.role, claims.sid.as_str()), ("u1", Role::Admin, "s1"));
        assert_eq!(claims.exp - claims.iat, 15 * 60);
    }

    #[test]
    fn rotation_keeps_tokens_of_the_previous_key_valid() {
        let old = ring(A, &[]);
        let token = old.issue(&Id::from("u1"), Role::Customer, &Id::from("s1"));
        let rotated = ring(B, &[A]);
        assert!(rotated.verify(&token).is_ok());
        assert_ne!(old.active_kid(), rotated.active_kid());
        // Once the old key is dropped, its tokens are refused.
        assert_eq!(ring(B, &[]).verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn tampered_expired_foreign_and_unsigned_tokens_are_refused() {
        let keys = ring(A, &[]);
        let token = keys.issue(&Id::from("u1"), Role::Customer, &Id::from("s1"));

        // A customer promoting itself: the payload changes, the signature does not.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        parts[1] = URL_SAFE_NO_PAD.encode(payload.replace("customer", "admin"));
        assert_eq!(keys.verify(&parts.join(".")), Err(TokenError::Invalid));

        let now = now_secs();
        let expired = Claims { sub: "u1".into(), role: Role::Customer, sid: "s1".into(), iss: "shopflow".into(), iat: now - 3600, exp: now - 60 };
        assert_eq!(keys.verify(&keys.sign(&expired)), Err(TokenError::Expired));

        // Signed with a key we never had, under our kid or its own.
        let foreign = ring(B, &[]);
        assert_eq!(keys.verify(&foreign.issue(&Id::from("u1"), Role::Admin, &Id::from("s1"))), Err(TokenError::Invalid));

        // alg: none, no signature.
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#, keys.active_kid()));
        assert_eq!(keys.verify(&format!("{header}.{}.", parts[1])), Err(TokenError::Invalid));

        assert_eq!(keys.verify("not-a-token"), Err(TokenError::Invalid));
        assert_eq!(keys.verify(""), Err(TokenError::Invalid));
    }

    #[test]
    fn short_or_missing_keys_are_configuration_errors() {
        assert!(matches!(KeyRing::from_config(&AuthConfig::default()), Err(KeyError::Missing)));
        let short = AuthConfig { key: Some("short".into()), ..AuthConfig::default() };
        assert!(matches!(KeyRing::from_config(&short), Err(KeyError::TooShort)));
    }
}
