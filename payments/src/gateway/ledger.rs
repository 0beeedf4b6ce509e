//! The gateway's durable memory: an append-only JSON Lines file (`ledger.jsonl`, written
//! as the crate's `jsonl` module writes: whole lines), one entry per token made, charge
//! decided and refund made, fsynced before the gateway answers (group commit: the gateway
//! decides under its lock and syncs outside it). At start it is read back, so the same
//! idempotency key gets the same answer after a restart and a charge is never made twice.
//!
//! Only what the first answer needs is recorded: successes and declines (a decline is an
//! answer too), never transient failures or refused requests, which are not outcomes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::cards::CardInfo;
use crate::jsonl::{read_lines, JsonlFile, Syncer};
use crate::PaymentsError;

pub const LEDGER_FILE: &str = "ledger.jsonl";

/// What a charge came to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ChargeOutcome {
    Succeeded { payment_id: String, authorization_code: String },
    Declined { code: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeEntry {
    pub idempotency_key: String,
    pub token: String,
    pub amount_minor: i64,
    pub currency: String,
    pub outcome: ChargeOutcome,
    pub at: i64,
}

impl ChargeEntry {
    pub fn payment_id(&self) -> Option<&str> {
        match &self.outcome {
            ChargeOutcome::Succeeded { payment_id, .. } => Some(payment_id),
            ChargeOutcome::Declined { .. } => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundEntry {
    pub idempotency_key: String,
    pub refund_id: String,
    pub payment_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    pub token: String,
    pub card: CardInfo,
    pub at: i64,
}

/// One line of the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    Token(TokenEntry),
    Charge(ChargeEntry),
    Refund(RefundEntry),
}

/// The charges and refunds made, in ledger order (`GET /v1/ledger`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerListing {
    pub charges: Vec<ChargeEntry>,
    pub refunds: Vec<RefundEntry>,
}

impl LedgerListing {
    /// Charges recorded per idempotency key (the order id, for the payment worker).
    pub fn charges_per_key(&self) -> HashMap<&str, usize> {
        let mut counts = HashMap::new();
        for c in &self.charges {
            *counts.entry(c.idempotency_key.as_str()).or_default() += 1;
        }
        counts
    }
}

/// The ledger file and what it says, indexed.
pub struct Ledger {
    file: JsonlFile,
    pub(crate) tokens: HashMap<String, CardInfo>,
    pub(crate) charges: HashMap<String, ChargeEntry>,
    pub(crate) refunds: HashMap<String, RefundEntry>,
    /// Succeeded charges by payment id: the charge's key.
    pub(crate) payments: HashMap<String, String>,
    /// Refunded so far, per payment id.
    pub(crate) refunded: HashMap<String, i64>,
    listing: LedgerListing,
}

impl Ledger {
    /// Opens (or creates) `dir/ledger.jsonl` and reads it back.
    pub fn open(dir: &Path) -> Result<Self, PaymentsError> {
        let (file, entries) = JsonlFile::open::<Entry>(&dir.join(LEDGER_FILE))?;
        let mut ledger = Ledger {
            file,
            tokens: HashMap::new(),
            charges: HashMap::new(),
            refunds: HashMap::new(),
            payments: HashMap::new(),
            refunded: HashMap::new(),
            listing: LedgerListing::default(),
        };
        for entry in entries {
            ledger.apply(entry);
        }
        tracing::info!(
            path = %ledger.file.path().display(),
            charges = ledger.charges.len(),
            refunds = ledger.refunds.len(),
            tokens = ledger.tokens.len(),
            "gateway ledger loaded"
        );
        Ok(ledger)
    }

    /// Writes the entry and applies it; it is durable once [`Ledger::syncer`] has synced to
    /// [`Ledger::written`], which the gateway does before answering anyone about it. On a
    /// failed write nothing is applied, so the caller may answer "try again". (A failed sync
    /// leaves the entry applied but unanswered: a retry answers it once a sync succeeds, and
    /// after a crash it is either in the file or was never answered; both are consistent.)
    pub fn append(&mut self, entry: Entry) -> Result<(), PaymentsError> {
        self.file.write(std::slice::from_ref(&entry))?;
        self.apply(entry);
        Ok(())
    }

    /// End of what was written so far: every answer waits for the ledger to be durable to
    /// here, so nothing is answered from an entry a crash could still lose.
    pub fn written(&self) -> u64 {
        self.file.written()
    }

    pub(crate) fn syncer(&self) -> Arc<Syncer> {
        self.file.syncer()
    }

    fn apply(&mut self, entry: Entry) {
        match entry {
            Entry::Token(t) => {
                self.tokens.insert(t.token, t.card);
            }
            Entry::Charge(c) => {
                if let Some(id) = c.payment_id() {
                    self.payments.insert(id.to_owned(), c.idempotency_key.clone());
                }
                self.listing.charges.push(c.clone());
                self.charges.insert(c.idempotency_key.clone(), c);
            }
            Entry::Refund(r) => {
                *self.refunded.entry(r.payment_id.clone()).or_default() += r.amount_minor;
                self.listing.refunds.push(r.clone());
                self.refunds.insert(r.idempotency_key.clone(), r);
            }
        }
    }

    pub fn listing(&self) -> &LedgerListing {
        &self.listing
    }
}

/// Reads a ledger without opening it for writing (tests, operators): what a gateway that
/// starts on `dir` would know.
pub fn read_ledger(dir: &Path) -> Result<LedgerListing, PaymentsError> {
    let mut listing = LedgerListing::default();
    for entry in read_lines::<Entry>(&dir.join(LEDGER_FILE))?.0 {
        match entry {
            Entry::Charge(c) => listing.charges.push(c),
            Entry::Refund(r) => listing.refunds.push(r),
            Entry::Token(_) => {}
        }
    }
    Ok(listing)
}
