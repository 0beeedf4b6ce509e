//! Refresh tokens: opaque to clients, `<session id>.<256 random bits, base64url>`. The session
//! id in front finds the session row without an index; the random part is what proves
//! possession. Only the SHA-256 of the whole token is ever stored (in events and views):
//! a leaked log or view does not leak a usable token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use shopflow_events::Id;

pub struct RefreshToken(String);

impl RefreshToken {
    /// A new token for `session`.
    pub fn issue(session: &Id) -> Self {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Self(format!("{session}.{}", URL_SAFE_NO_PAD.encode(secret)))
    }

    /// The session a presented token claims to belong to; `None` if it is not of our shape.
    pub fn session_of(presented: &str) -> Option<Id> {
        let (session, secret) = presented.split_once('.')?;
        let decoded = URL_SAFE_NO_PAD.decode(secret).ok()?;
        if decoded.len() != 32 {
            return None;
        }
        Id::new(session).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Hex SHA-256 of a token: what events and views hold instead of it. A plain hash suffices
/// (no salt, no slow hash): the token is 256 random bits, not a guessable password.
pub fn digest(token: &str) -> String {
    crate::hex::hex(&Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_session_and_are_unique() {
        let session = Id::from("0193-abc");
        let a = RefreshToken::issue(&session);
        let b = RefreshToken::issue(&session);
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(RefreshToken::session_of(a.as_str()), Some(session));
        assert_eq!(digest(a.as_str()).len(), 64);
        assert_ne!(digest(a.as_str()), digest(b.as_str()));
    }

    #[test]
    fn foreign_shapes_name_no_session() {
        for bad in ["", "abc", "s.", ".xyz", "s.c2hvcnQ", "bad id!.AAAA", "s.not base64 at all"] {
            assert_eq!(RefreshToken::session_of(bad), None, "{bad}");
        }
    }
}
