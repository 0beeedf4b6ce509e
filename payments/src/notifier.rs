//! The notifier: consumer group `notifier.group` on `decisions`. It "sends" an e-mail for each
//! order decision its owner is told about (`order.confirmed`, `rejected`, `expired`,
//! `cancellation_accepted`, `shipped`, `delivered`, `refund_completed`) by appending it to
//! the outbox, a JSON Lines file of [`Mail`].
//!
//! **Exactly once per decision event id.** At start it reads the ids already in the outbox;
//! a decision whose id is there is not sent again (whether it is re-read after a crash
//! between the outbox write and the commit, or appended twice to the log). Each batch is
//! fsynced to the outbox before the group's offsets move past it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shopflow_events::types::OrderDecision;
use shopflow_events::{Envelope, Event, Money, Topic};
use shopflow_ingest::{EventLog, Position, Record};
use tokio::sync::watch;

use crate::consume::GroupReader;
use crate::jsonl::JsonlFile;
use crate::{NotifierConfig, PaymentsError};

/// One e-mail, one line of the outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mail {
    /// The event id of the decision this mail tells of.
    pub decision_id: uuid::Uuid,
    /// The user id of the order's owner (the mail relay resolves the address).
    pub to_user: String,
    pub subject: String,
    pub body: String,
    /// When it was sent, milliseconds since the Unix epoch.
    pub at: i64,
}

/// What the notifier did in this run, published after every commit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifierProgress {
    pub sent: u64,
    /// Decisions already in the outbox (re-read, or appended twice).
    pub already_sent: u64,
    /// Records that are not mail-worthy decisions (or not events at all).
    pub ignored: u64,
    /// Next offset per partition of `decisions`, as committed.
    pub committed: BTreeMap<u32, u64>,
}

pub struct Notifier {
    log: Arc<dyn EventLog>,
    config: NotifierConfig,
    progress: watch::Sender<NotifierProgress>,
}

impl Notifier {
    pub fn new(log: Arc<dyn EventLog>, config: NotifierConfig) -> Self {
        Self { log, config, progress: watch::channel(NotifierProgress::default()).0 }
    }

    pub fn progress(&self) -> watch::Receiver<NotifierProgress> {
        self.progress.subscribe()
    }

    /// Runs until `shutdown` turns true; a batch in hand is finished first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<NotifierProgress, PaymentsError> {
        let path = self.config.outbox.clone();
        let (mut outbox, sent) = tokio::task::spawn_blocking(move || JsonlFile::open::<Mail>(&path))
            .await
            .map_err(|e| PaymentsError::Stopped(format!("opening the outbox: {e}")))??;
        let mut seen: HashSet<uuid::Uuid> = sent.iter().map(|m| m.decision_id).collect();
        let topic = Topic::Decisions.name();
        let mut reader = GroupReader::start(self.log.clone(), &self.config.group, topic, self.config.poll_max).await?;
        let mut progress = NotifierProgress { committed: reader.committed.clone(), ..Default::default() };
        self.progress.send_replace(progress.clone());
        tracing::info!(group = %self.config.group, outbox = %self.config.outbox.display(), already_sent = seen.len(), "notifier starting");
        let outcome = loop {
            if *shutdown.borrow() {
                break Ok(());
            }
            let records = tokio::select! {
                chunk = reader.rx.recv() => match chunk {
                    Some(records) => records,
                    None => break Err(PaymentsError::Stopped("the log reader ended".into())),
                },
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break Ok(());
                    }
                    continue;
                }
            };
            let mut mails = Vec::new();
            let mut next = BTreeMap::new();
            let now = crate::now_ms();
            for record in &records {
                next.insert(record.partition, record.offset + 1);
                match mail_for(record, now) {
                    Some(mail) if seen.contains(&mail.decision_id) => progress.already_sent += 1,
                    Some(mail) => {
                        seen.insert(mail.decision_id);
                        mails.push(mail);
                    }
                    None => progress.ignored += 1,
                }
            }
            if !mails.is_empty() {
                let count = mails.len();
                let written = {
                    // An fsync blocks: off the async workers, and back.
                    let mut file = outbox;
                    let (file, result) = tokio::task::spawn_blocking(move || {
                        let result = file.append(&mails);
                        (file, result.map(|()| mails))
                    })
                    .await
                    .map_err(|e| PaymentsError::Stopped(format!("writing the outbox: {e}")))?;
                    outbox = file;
                    result
                };
                match written {
                    Ok(mails) => {
                        for mail in &mails {
                            tracing::info!(decision_id = %mail.decision_id, to_user = %mail.to_user, subject = %mail.subject, "mail sent");
                        }
                        progress.sent += count as u64;
                    }
                    // Not committed, not marked: stop, and a restart sends them.
                    Err(e) => break Err(e),
                }
            }
            let positions: Vec<Position> = next.iter().map(|(p, o)| Position::new(topic, *p, *o)).collect();
            match self.log.commit(&self.config.group, &positions).await {
                Ok(()) => progress.committed.extend(next),
                Err(e) => tracing::warn!(error = %e, "committing the notifier's offsets failed; the next commit covers them"),
            }
            self.progress.send_replace(progress.clone());
        };
        reader.close().await;
        outcome?;
        tracing::info!(sent = progress.sent, "notifier stopped");
        Ok(progress)
    }
}

/// Runs a notifier until `shutdown` turns true (see [`Notifier`]).
pub async fn run_notifier(log: Arc<dyn EventLog>, config: NotifierConfig, shutdown: watch::Receiver<bool>) -> Result<NotifierProgress, PaymentsError> {
    Notifier::new(log, config).run(shutdown).await
}

/// The mail a decision record asks for, if any.
fn mail_for(record: &Record, now: i64) -> Option<Mail> {
    let envelope = match Envelope::decode(record.value.as_deref()?) {
        Ok(e) => e,
        Err(e) => {
            // The pipeline writes this topic; a bad record is its bug, not a reason to stop.
            let reason = match e {
                shopflow_events::DecodeError::Malformed(_) => "malformed json or unknown event shape".to_owned(),
                other => other.to_string(),
            };
            tracing::warn!(partition = record.partition, offset = record.offset, reason = %reason, "skipping a record that is not a valid event");
            return None;
        }
    };
    let (decision, subject, body) = compose(&envelope.event)?;
    if decision.user_id.as_str().is_empty() {
        tracing::warn!(decision_id = %envelope.id, order_id = %decision.order_id, "decision without a user: no one to mail");
        return None;
    }
    Some(Mail { decision_id: envelope.id, to_user: decision.user_id.to_string(), subject, body, at: now })
}

/// Subject and body of the mail for a decision; `None` for what is not mailed.
fn compose(event: &Event) -> Option<(&OrderDecision, String, String)> {
    let (d, subject, body) = match event {
        Event::OrderConfirmed(d) => (
            d,
            format!("Your order {} is confirmed", d.order_id),
            format!("Thank you! We received your payment{} for order {}. We will write again when it ships.", of(&d.amount), d.order_id),
        ),
        Event::OrderRejected(d) => (
            d,
            format!("Your order {} could not be placed", d.order_id),
            format!("We could not complete order {}{}. You have not been charged.", d.order_id, because(&d.reason)),
        ),
        Event::OrderExpired(d) => (
            d,
            format!("Your order {} has expired", d.order_id),
            format!("We did not receive the payment for order {} in time, so its items were released.", d.order_id),
        ),
        Event::CancellationAccepted(d) => (
            d,
            format!("Your order {} is cancelled", d.order_id),
            format!("Order {} is cancelled as you asked{}.", d.order_id, refund_note(&d.amount)),
        ),
        Event::OrderShipped(d) => (d, format!("Your order {} has shipped", d.order_id), format!("Order {} is on its way.", d.order_id)),
        Event::OrderDelivered(d) => (
            d,
            format!("Your order {} was delivered", d.order_id),
            format!("Order {} was delivered. We hope you enjoy it!", d.order_id),
        ),
        Event::RefundCompleted(d) => (
            d,
            format!("Your refund for order {}", d.order_id),
            match &d.amount {
                Some(m) => format!("We refunded {} for order {} to your card.", money(m), d.order_id),
                None => format!("We refunded order {} to your card.", d.order_id),
            },
        ),
        _ => return None,
    };
    Some((d, subject, body))
}

/// " of 12.50 EUR", or nothing without an amount.
fn of(amount: &Option<Money>) -> String {
    amount.as_ref().map(|m| format!(" of {}", money(m))).unwrap_or_default()
}

fn because(reason: &str) -> String {
    match reason.trim() {
        "" => String::new(),
        r => format!(" ({})", r.replace('_', " ")),
    }
}

fn refund_note(amount: &Option<Money>) -> String {
    match amount {
        Some(m) if m.amount_minor > 0 => format!("; {} will be refunded to your card", money(m)),
        _ => String::new(),
    }
}

/// Minor units as a decimal amount with two places (the currencies shopflow sells in).
fn money(m: &Money) -> String {
    let sign = if m.amount_minor < 0 { "-" } else { "" };
    let abs = m.amount_minor.unsigned_abs();
    format!("{sign}{}.{:02} {}", abs / 100, abs % 100, m.currency)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopflow_events::Id;

    fn decision(amount: Option<i64>, reason: &str) -> OrderDecision {
        OrderDecision {
            order_id: Id::from("o-1"),
            user_id: Id::from("u-1"),
            reason: reason.into(),
            amount: amount.map(|a| Money::new(a, "EUR")),
        }
    }

    fn record(event: Event) -> (Record, uuid::Uuid) {
        let envelope = Envelope::new(event);
        let id = envelope.id;
        let record = Record {
            topic: "decisions".into(),
            partition: 0,
            offset: 7,
            key: b"o-1".to_vec(),
            value: Some(envelope.to_json()),
            timestamp_ms: 0,
        };
        (record, id)
    }

    #[test]
    fn every_order_decision_is_mailed_to_its_owner() {
        let events = [
            Event::OrderConfirmed(decision(Some(1250), "")),
            Event::OrderRejected(decision(None, "card_declined")),
            Event::OrderExpired(decision(None, "")),
            Event::CancellationAccepted(decision(Some(500), "")),
            Event::OrderShipped(decision(None, "")),
            Event::OrderDelivered(decision(None, "")),
            Event::RefundCompleted(decision(Some(1999), "")),
        ];
        let mut subjects = HashSet::new();
        for event in events {
            let (record, id) = record(event);
            let mail = mail_for(&record, 42).expect("mailed");
            assert_eq!(mail.decision_id, id);
            assert_eq!(mail.to_user, "u-1");
            assert_eq!(mail.at, 42);
            assert!(mail.subject.contains("o-1"), "{mail:?}");
            subjects.insert(mail.subject);
        }
        assert_eq!(subjects.len(), 7, "one subject per decision type");
    }

    #[test]
    fn bodies_say_amounts_and_reasons() {
        let (r, _) = record(Event::OrderConfirmed(decision(Some(1250), "")));
        assert!(mail_for(&r, 0).unwrap().body.contains("payment of 12.50 EUR"));
        let (r, _) = record(Event::OrderRejected(decision(None, "insufficient_funds")));
        assert!(mail_for(&r, 0).unwrap().body.contains("(insufficient funds)"));
        let (r, _) = record(Event::RefundCompleted(decision(Some(1999), "")));
        assert!(mail_for(&r, 0).unwrap().body.contains("We refunded 19.99 EUR"), "{:?}", mail_for(&r, 0));
        let (r, _) = record(Event::CancellationAccepted(decision(Some(5), "")));
        assert!(mail_for(&r, 0).unwrap().body.contains("0.05 EUR will be refunded"));
    }

    #[test]
    fn other_records_are_not_mailed() {
        let (r, _) = record(Event::ReservationAccepted(shopflow_events::types::ReservationAccepted {
            order_id: Id::from("o-1"),
            user_id: Id::from("u-1"),
            holds: vec![],
        }));
        assert!(mail_for(&r, 0).is_none());
        let (mut r, _) = record(Event::OrderShipped(decision(None, "")));
        r.value = Some(b"{not json".to_vec());
        assert!(mail_for(&r, 0).is_none());
        r.value = None;
        assert!(mail_for(&r, 0).is_none());
        let (r, _) = record(Event::OrderShipped(OrderDecision { user_id: Id::default(), ..decision(None, "") }));
        assert!(mail_for(&r, 0).is_none(), "no owner, no mail");
    }
}
