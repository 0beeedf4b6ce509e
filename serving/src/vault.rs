//! The seam between the HTTP layer and whatever turns a card into a token (the payment
//! gateway's vault). Serving knows only this trait, as it knows only `Recommender` of the
//! recommender: the binary gives [`Application::with_card_vault`](crate::Application::with_card_vault)
//! an adapter of the payments crate's gateway client. Without one, adding a payment method
//! answers `503 payments_unavailable`; everything else works.
//!
//! A card number lives only in a [`Card`] on its way to the vault: it has no `Serialize`, its
//! `Debug` prints the last four digits only, and no error built from it holds it. What comes
//! back ([`TokenizedCard`]) is what the log may carry.

use std::fmt;

use shopflow_events::Id;

/// A card as the customer typed it. Never logged, stored, echoed or put in an event.
pub struct Card {
    /// Digits only (spaces and dashes are removed when the request is read).
    pub number: String,
    pub exp_month: u8,
    pub exp_year: u16,
    pub cvc: String,
}

impl Card {
    /// The last four digits: all of the number that may be shown or kept.
    pub fn last4(&self) -> &str {
        &self.number[self.number.len().saturating_sub(4)..]
    }
}

impl fmt::Debug for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Card")
            .field("number", &format_args!("**** {}", self.last4()))
            .field("exp_month", &self.exp_month)
            .field("exp_year", &self.exp_year)
            .field("cvc", &"***")
            .finish()
    }
}

/// What the vault gives back: a token that stands for the card at the gateway, and what may
/// be shown of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizedCard {
    pub token: String,
    pub last4: String,
    /// `visa`, `mastercard`, ... (empty if unknown).
    pub brand: String,
    pub exp_month: u8,
    pub exp_year: u16,
}

/// Why a card was not tokenized. Messages are for the customer and must never hold the
/// number (implementations: build them from codes, not from the input).
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The gateway refused the card (`card_declined`, `expired_card`, `incorrect_cvc`...).
    #[error("{0}")]
    Refused(String),
    /// The gateway cannot be reached or failed; the request may be retried.
    #[error("the card vault is unavailable: {0}")]
    Unavailable(String),
}

/// Tokenizes cards for one user at a time.
#[async_trait::async_trait]
pub trait CardVault: Send + Sync + 'static {
    /// Turns `card` (already checked: Luhn, expiry in the future, CVC of 3 or 4 digits) into a
    /// token for `user`.
    async fn tokenize(&self, user: &Id, card: &Card) -> Result<TokenizedCard, VaultError>;
}
