//! Test cards and tokens, as a card processor's test mode has them: each card number (and
//! each fixed token) has a behaviour at charge time. Numbers are checked (Luhn, expiry) and
//! then dropped: only a token, the last four digits, the brand and the expiry are kept.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What charging a card does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "code", rename_all = "snake_case")]
pub enum Behaviour {
    Succeeds,
    /// Declined with this code (`card_declined`, `insufficient_funds`, `expired_card`).
    Declines(String),
    /// Fails transiently (503) this many times per charge key, then succeeds.
    FailsTransiently(u32),
}

/// Attempts of a `4000000000000119` charge that fail before one succeeds.
pub const TRANSIENT_FAILURES: u32 = 2;

/// A card as the gateway remembers it: never the number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardInfo {
    pub behaviour: Behaviour,
    pub last4: String,
    pub brand: String,
    pub exp_month: u8,
    pub exp_year: u16,
}

/// The fixed tokens usable without tokenizing, like Stripe's.
pub fn fixed_token(token: &str) -> Option<CardInfo> {
    let (number, brand) = match token {
        "tok_visa" => ("4242424242424242", "visa"),
        "tok_mastercard" => ("5555555555554444", "mastercard"),
        "tok_chargeDeclined" => ("4000000000000002", "visa"),
        "tok_chargeDeclinedInsufficientFunds" => ("4000000000009995", "visa"),
        "tok_transient" => ("4000000000000119", "visa"),
        "tok_chargeDeclinedExpiredCard" => ("4000000000000069", "visa"),
        _ => return None,
    };
    Some(CardInfo {
        behaviour: behaviour_of(number),
        last4: number[number.len() - 4..].to_owned(),
        brand: brand.to_owned(),
        exp_month: 12,
        exp_year: 2099,
    })
}

fn behaviour_of(number: &str) -> Behaviour {
    match number {
        "4000000000000002" => Behaviour::Declines("card_declined".into()),
        "4000000000009995" => Behaviour::Declines("insufficient_funds".into()),
        "4000000000000069" => Behaviour::Declines("expired_card".into()),
        "4000000000000119" => Behaviour::FailsTransiently(TRANSIENT_FAILURES),
        // 4242424242424242, 5555555555554444 and any other valid number.
        _ => Behaviour::Succeeds,
    }
}

/// A card number. Its `Debug` shows the last four digits only, so it cannot end up in a log
/// by accident; it is serialised only into a tokenize request to the gateway.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CardNumber(String);

impl CardNumber {
    pub fn new(number: impl Into<String>) -> Self {
        Self(number.into())
    }

    /// The digits, without the spaces and dashes people type.
    fn digits(&self) -> String {
        self.0.chars().filter(|c| !matches!(c, ' ' | '-')).collect()
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.digits();
        let last4 = digits.get(digits.len().saturating_sub(4)..).unwrap_or("");
        write!(f, "CardNumber(****{last4})")
    }
}

/// Why a card cannot be tokenized; the code is the error body's `code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardError {
    InvalidNumber,
    InvalidExpiryMonth,
    InvalidExpiryYear,
    /// The expiry date has passed.
    ExpiredCard,
    InvalidCvc,
}

impl CardError {
    pub fn code(self) -> &'static str {
        match self {
            CardError::InvalidNumber => "invalid_number",
            CardError::InvalidExpiryMonth => "invalid_expiry_month",
            CardError::InvalidExpiryYear => "invalid_expiry_year",
            CardError::ExpiredCard => "expired_card",
            CardError::InvalidCvc => "invalid_cvc",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            CardError::InvalidNumber => "the card number is not a valid card number",
            CardError::InvalidExpiryMonth => "the expiry month must be 1 to 12",
            CardError::InvalidExpiryYear => "the expiry year must be a four-digit year",
            CardError::ExpiredCard => "the card has expired",
            CardError::InvalidCvc => "the security code must be 3 or 4 digits",
        }
    }
}

/// Checks a card and returns what is kept of it. `today` is (year, month).
pub fn check_card(
    number: &CardNumber,
    exp_month: u8,
    exp_year: u16,
    cvc: Option<&str>,
    today: (u16, u8),
) -> Result<CardInfo, CardError> {
    let digits = number.digits();
    if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) || !luhn(&digits) {
        return Err(CardError::InvalidNumber);
    }
    if !(1..=12).contains(&exp_month) {
        return Err(CardError::InvalidExpiryMonth);
    }
    if !(1000..=9999).contains(&exp_year) {
        return Err(CardError::InvalidExpiryYear);
    }
    // A card is valid through the last day of its expiry month.
    if (exp_year, exp_month) < today {
        return Err(CardError::ExpiredCard);
    }
    if let Some(cvc) = cvc {
        if !(3..=4).contains(&cvc.len()) || !cvc.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CardError::InvalidCvc);
        }
    }
    Ok(CardInfo {
        behaviour: behaviour_of(&digits),
        last4: digits[digits.len() - 4..].to_owned(),
        brand: brand(&digits).to_owned(),
        exp_month,
        exp_year,
    })
}

/// The Luhn checksum every card number carries in its last digit.
pub fn luhn(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    // (Not `is_multiple_of`: the workspace declares rust 1.85.)
    matches!(sum % 10, 0)
}

fn brand(digits: &str) -> &'static str {
    let prefix = |n: usize| digits[..n].parse::<u32>().unwrap_or(0);
    match digits.as_bytes()[0] {
        b'4' => "visa",
        b'5' if (51..=55).contains(&prefix(2)) => "mastercard",
        b'2' if (2221..=2720).contains(&prefix(4)) => "mastercard",
        b'3' if matches!(prefix(2), 34 | 37) => "amex",
        b'6' if digits.starts_with("6011") || digits.starts_with("65") => "discover",
        _ => "unknown",
    }
}

/// Today's (year, month) in UTC, from the system clock.
pub fn today_utc() -> (u16, u8) {
    let (year, month, _) = shopflow_events::utc_date(crate::now_ms());
    (year as u16, month as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: (u16, u8) = (2025, 6);

    fn check(number: &str) -> Result<CardInfo, CardError> {
        check_card(&CardNumber::new(number), 12, 2030, Some("123"), TODAY)
    }

    #[test]
    fn test_cards_have_their_behaviour() {
        let cases = [
            ("4242424242424242", Behaviour::Succeeds, "visa"),
            ("5555555555554444", Behaviour::Succeeds, "mastercard"),
            ("4000000000000002", Behaviour::Declines("card_declined".into()), "visa"),
            ("4000000000009995", Behaviour::Declines("insufficient_funds".into()), "visa"),
            ("4000000000000119", Behaviour::FailsTransiently(2), "visa"),
            ("4000000000000069", Behaviour::Declines("expired_card".into()), "visa"),
        ];
        for (number, behaviour, brand) in cases {
            let info = check(number).unwrap_or_else(|e| panic!("{number}: {e:?}"));
            assert_eq!(info.behaviour, behaviour, "{number}");
            assert_eq!(info.brand, brand, "{number}");
            assert_eq!(info.last4, &number[12..]);
        }
    }

    #[test]
    fn fixed_tokens_match_their_cards() {
        assert_eq!(fixed_token("tok_visa").unwrap().behaviour, Behaviour::Succeeds);
        assert_eq!(fixed_token("tok_mastercard").unwrap().brand, "mastercard");
        assert_eq!(fixed_token("tok_chargeDeclined").unwrap().behaviour, Behaviour::Declines("card_declined".into()));
        assert_eq!(
            fixed_token("tok_chargeDeclinedInsufficientFunds").unwrap().behaviour,
            Behaviour::Declines("insufficient_funds".into())
        );
        assert_eq!(fixed_token("tok_transient").unwrap().behaviour, Behaviour::FailsTransiently(2));
        assert_eq!(fixed_token("tok_chargeDeclinedExpiredCard").unwrap().behaviour, Behaviour::Declines("expired_card".into()));
        assert!(fixed_token("tok_nope").is_none());
    }

    #[test]
    fn numbers_are_luhn_checked() {
        assert!(luhn("4242424242424242"));
        assert!(!luhn("4242424242424241"));
        assert_eq!(check("4242424242424241"), Err(CardError::InvalidNumber));
        assert_eq!(check("4242"), Err(CardError::InvalidNumber));
        assert_eq!(check("4242-4242-4242-424x"), Err(CardError::InvalidNumber));
        // What people type: spaces and dashes.
        assert!(check("4242 4242 4242 4242").is_ok());
        assert!(check("4242-4242-4242-4242").is_ok());
    }

    #[test]
    fn expiry_and_cvc_are_checked() {
        let n = CardNumber::new("4242424242424242");
        assert_eq!(check_card(&n, 5, 2025, None, TODAY), Err(CardError::ExpiredCard));
        assert!(check_card(&n, 6, 2025, None, TODAY).is_ok(), "valid through its expiry month");
        assert_eq!(check_card(&n, 13, 2030, None, TODAY), Err(CardError::InvalidExpiryMonth));
        assert_eq!(check_card(&n, 0, 2030, None, TODAY), Err(CardError::InvalidExpiryMonth));
        assert_eq!(check_card(&n, 1, 30, None, TODAY), Err(CardError::InvalidExpiryYear));
        assert_eq!(check_card(&n, 1, 2030, Some("12"), TODAY), Err(CardError::InvalidCvc));
        assert_eq!(check_card(&n, 1, 2030, Some("12a"), TODAY), Err(CardError::InvalidCvc));
    }

    #[test]
    fn a_card_number_never_prints() {
        let n = CardNumber::new("4242424242424242");
        assert_eq!(format!("{n:?}"), "CardNumber(****4242)");
    }

    #[test]
    fn today_is_a_plausible_date() {
        let (year, month) = today_utc();
        assert!((2024..2200).contains(&year) && (1..=12).contains(&month), "{year}-{month}");
    }
}
