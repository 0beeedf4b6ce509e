//! Password hashing: argon2id with OWASP's parameters (m = 19 MiB, t = 2, p = 1), always on
//! the blocking pool (one hash is tens of milliseconds of CPU, far past what an async thread
//! may block), and at most `max_concurrent_hashes` at once, so a flood of logins queues
//! instead of taking every core and 19 MiB per request.
//!
//! A password is taken by value and dropped inside the blocking task; it is never logged,
//! stored or put in an event. Only the PHC string of the hash leaves this module.

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// OWASP Password Storage Cheat Sheet, argon2id, first option.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

/// Shortest and longest password accepted (NIST SP 800-63B: at least 8, allow long ones; the
/// upper bound only keeps request bodies sane).
pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 256;

pub struct Passwords {
    permits: Arc<Semaphore>,
    /// A hash of a password nobody knows: verified against when the account does not exist,
    /// so "no such account" takes as long as "wrong password" and timing tells nothing.
    decoy: String,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).expect("OWASP parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

impl Passwords {
    pub fn new(max_concurrent: usize) -> Self {
        let decoy = hash_now(uuid::Uuid::new_v4().to_string().as_bytes()).expect("hashing a random password");
        Self { permits: Arc::new(Semaphore::new(max_concurrent.max(1))), decoy }
    }

    /// The PHC string of a fresh argon2id hash of `password` (random salt).
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.blocking(move || hash_now(password.as_bytes())).await?.ok_or(ApiError::Internal)
    }

    /// Whether `password` matches `phc`; `None` for "no such account" runs the same work
    /// against the decoy and is always false.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, ApiError> {
        let (phc, real) = match phc {
            Some(phc) => (phc, true),
            None => (self.decoy.clone(), false),
        };
        let matches = self.blocking(move || argon2().verify_password(password.as_bytes(), phc.as_str()).is_ok()).await?;
        Ok(real && matches)
    }

    async fn blocking<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let _permit = self.permits.acquire().await.map_err(|_| ApiError::Internal)?;
        tokio::task::spawn_blocking(work).await.map_err(|_| ApiError::Internal)
    }
}

fn hash_now(password: &[u8]) -> Option<String> {
    argon2().hash_password(password).ok().map(|h| h.to_string())
}

/// The hash, computed on the calling thread: for the CLI (`shopflow admin create`), which has
/// no async runtime to protect.
pub fn hash_blocking(password: &str) -> Option<String> {
    hash_now(password.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let passwords = Passwords::new(2);
        let phc = passwords.hash("correct horse".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert!(passwords.verify("correct horse".into(), Some(phc.clone())).await.unwrap());
        assert!(!passwords.verify("correct horsE".into(), Some(phc.clone())).await.unwrap());
        // Same password, another salt: another hash.
        assert_ne!(passwords.hash("correct horse".into()).await.unwrap(), phc);
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() {
        let passwords = Passwords::new(1);
        assert!(!passwords.verify("anything".into(), None).await.unwrap());
    }
}
