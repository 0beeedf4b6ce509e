//! The notifier against a real log: one mail per decision event id, whatever restarts, lost
//! commits and duplicate appends happen.

mod support;

use std::collections::HashSet;
use std::path::Path;

use shopflow_events::types::{OrderDecision, ReservationAccepted, StockAdjustmentRejected};
use shopflow_events::{Envelope, Event, Id, Money};
use shopflow_ingest::OutRecord;
use shopflow_payments::notifier::Mail;
use shopflow_payments::NotifierConfig;
use support::*;

fn decision(order: &str, amount: Option<i64>) -> OrderDecision {
    OrderDecision { order_id: Id::from(order), user_id: Id::from("u-1"), reason: String::new(), amount: amount.map(|a| Money::new(a, "EUR")) }
}

fn outbox(path: &Path) -> Vec<Mail> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn config(outbox: &Path) -> NotifierConfig {
    NotifierConfig { group: format!("notifier-{}", uuid::Uuid::new_v4().simple()), outbox: outbox.to_path_buf(), poll_max: 3 }
}

async fn each_decision_is_mailed_once(backend: Backend) {
    let log = test_log(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mail/outbox.jsonl");
    let mailed = vec![
        Envelope::new(Event::OrderConfirmed(decision("o-1", Some(1250)))),
        Envelope::new(Event::OrderRejected(OrderDecision { reason: "card_declined".into(), ..decision("o-2", None) })),
        Envelope::new(Event::OrderExpired(decision("o-3", None))),
        Envelope::new(Event::CancellationAccepted(decision("o-4", Some(300)))),
        Envelope::new(Event::OrderShipped(decision("o-1", None))),
        Envelope::new(Event::OrderDelivered(decision("o-1", None))),
        Envelope::new(Event::RefundCompleted(decision("o-1", Some(1250)))),
    ];
    let not_mailed = vec![
        Envelope::new(Event::ReservationAccepted(ReservationAccepted { order_id: Id::from("o-1"), user_id: Id::from("u-1"), holds: vec![] })),
        Envelope::new(Event::StockAdjustmentRejected(StockAdjustmentRejected {
            event_id: uuid::Uuid::new_v4(),
            product_id: Id::from("p-1"),
            warehouse_id: Id::from("w-1"),
            delta: -5,
            available: 1,
        })),
    ];
    append(log.log.as_ref(), &mailed).await;
    append(log.log.as_ref(), &not_mailed).await;
    // The pipeline re-appending a decision (same id, new offset), and a record that is no event.
    append(log.log.as_ref(), &mailed[..1]).await;
    log.log.append(vec![OutRecord::keyed("decisions", "o-9", b"garbage".to_vec())]).await.unwrap();

    let config = config(&path);
    let mut notifier = spawn_notifier(log.log.clone(), config.clone());
    notifier.caught_up(log.log.as_ref()).await;
    let progress = notifier.stop().await;
    assert_eq!((progress.sent, progress.already_sent, progress.ignored), (7, 1, 3));
    let mails = outbox(&path);
    // Partitions interleave: the order across orders is not the log's.
    assert_eq!(mails.iter().map(|m| m.decision_id).collect::<HashSet<_>>(), mailed.iter().map(|e| e.id).collect::<HashSet<_>>());
    assert_eq!(mails.len(), mailed.len());
    assert!(mails.iter().all(|m| m.to_user == "u-1" && !m.subject.is_empty() && !m.body.is_empty() && m.at > 0));

    // A restart of the same group: nothing new.
    let mut notifier = spawn_notifier(log.log.clone(), config.clone());
    notifier.caught_up(log.log.as_ref()).await;
    // New decisions after the restart are sent, once.
    let later = vec![Envelope::new(Event::OrderConfirmed(decision("o-5", Some(10)))), Envelope::new(Event::OrderShipped(decision("o-5", None)))];
    append(log.log.as_ref(), &later).await;
    notifier.caught_up(log.log.as_ref()).await;
    assert_eq!(notifier.stop().await.sent, 2);
    assert_eq!(outbox(&path).len(), 9);

    // A crash after the outbox write and before the commit: the offsets are lost (a new group
    // reads everything again), the outbox is not. Nothing is sent twice.
    let crashed = NotifierConfig { group: format!("{}-lost-commit", config.group), ..config };
    let mut notifier = spawn_notifier(log.log.clone(), crashed);
    notifier.caught_up(log.log.as_ref()).await;
    let progress = notifier.stop().await;
    assert_eq!((progress.sent, progress.already_sent), (0, 10));
    let mails = outbox(&path);
    assert_eq!(mails.len(), 9);
    assert_eq!(mails.iter().map(|m| m.decision_id).collect::<HashSet<_>>().len(), 9, "no id twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_decision_is_mailed_once_on_the_embedded_log() {
    each_decision_is_mailed_once(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_decision_is_mailed_once_on_kafka() {
    each_decision_is_mailed_once(Backend::Kafka).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torn_outbox_line_is_dropped_and_that_mail_sent_again() {
    let log = test_log(Backend::Embedded).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.jsonl");
    let decisions = vec![Envelope::new(Event::OrderConfirmed(decision("o-1", None))), Envelope::new(Event::OrderShipped(decision("o-1", None)))];
    append(log.log.as_ref(), &decisions).await;
    let config = config(&path);
    let mut notifier = spawn_notifier(log.log.clone(), config.clone());
    notifier.caught_up(log.log.as_ref()).await;
    notifier.stop().await;
    // A crash in the middle of writing the second line (so it was never acknowledged, nor
    // committed: a new group stands for the lost commit).
    let text = std::fs::read_to_string(&path).unwrap();
    let cut = text.find('\n').unwrap() + 10;
    std::fs::write(&path, &text[..cut]).unwrap();
    let mut notifier = spawn_notifier(log.log.clone(), NotifierConfig { group: format!("{}-2", config.group), ..config });
    notifier.caught_up(log.log.as_ref()).await;
    assert_eq!(notifier.stop().await.sent, 1);
    let mails = outbox(&path);
    assert_eq!(mails.iter().map(|m| m.decision_id).collect::<Vec<_>>(), decisions.iter().map(|e| e.id).collect::<Vec<_>>());
}
