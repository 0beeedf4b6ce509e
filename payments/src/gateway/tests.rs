//! The gateway over real HTTP, through its client.

use std::path::Path;
use std::time::{Duration, Instant};

use super::api::*;
use super::client::{GatewayClient, GatewayError};
use super::ledger::read_ledger;
use super::{Gateway, RunningGateway};
use crate::GatewayConfig;

async fn start(dir: &Path, latency_ms: u64) -> (RunningGateway, GatewayClient) {
    let config = GatewayConfig { listen: "127.0.0.1:0".parse().unwrap(), data_dir: dir.to_path_buf(), latency_ms };
    let gateway = Gateway::start(config).await.unwrap();
    let client = GatewayClient::new(&gateway.url(), Duration::from_secs(10)).unwrap();
    (gateway, client)
}

fn card(number: &str) -> TokenizeRequest {
    TokenizeRequest { number: CardNumber::new(number), exp_month: 12, exp_year: 2099, cvc: Some("123".into()) }
}

fn charge_of(key: &str, token: &str, amount_minor: i64) -> ChargeRequest {
    ChargeRequest { idempotency_key: key.into(), token: token.into(), amount_minor, currency: "EUR".into() }
}

fn refused_code(result: Result<impl std::fmt::Debug, GatewayError>) -> (u16, String) {
    match result {
        Err(GatewayError::Refused { status, code, .. }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn each_test_card_charges_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, client) = start(dir.path(), 0).await;
    let cases = [
        ("4242424242424242", None),
        ("5555555555554444", None),
        ("4000000000000002", Some("card_declined")),
        ("4000000000009995", Some("insufficient_funds")),
        ("4000000000000069", Some("expired_card")),
    ];
    for (i, (number, decline)) in cases.into_iter().enumerate() {
        let token = client.tokenize(&card(number)).await.unwrap();
        assert!(token.token.starts_with("tok_") && token.token.len() > 10, "{token:?}");
        assert_eq!(token.last4, &number[12..]);
        let result = client.charge(&charge_of(&format!("order-{i}"), &token.token, 1000)).await;
        match decline {
            None => {
                let charge = result.unwrap();
                assert_eq!(charge.status, "succeeded");
                assert!(charge.payment_id.starts_with("ch_"));
                assert_eq!(charge.authorization_code.len(), 6);
            }
            Some(code) => assert_eq!(refused_code(result), (402, code.to_owned()), "{number}"),
        }
    }
    assert_eq!(client.tokenize(&card("5555555555554444")).await.unwrap().brand, "mastercard");
    gateway.stop().await.unwrap();
}

#[tokio::test]
async fn fixed_tokens_work_without_tokenizing() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, client) = start(dir.path(), 0).await;
    assert!(client.charge(&charge_of("a", "tok_visa", 100)).await.is_ok());
    assert!(client.charge(&charge_of("b", "tok_mastercard", 100)).await.is_ok());
    assert_eq!(refused_code(client.charge(&charge_of("c", "tok_chargeDeclined", 100)).await).1, "card_declined");
    assert_eq!(refused_code(client.charge(&charge_of("d", "tok_chargeDeclinedInsufficientFunds", 100)).await).1, "insufficient_funds");
    assert_eq!(refused_code(client.charge(&charge_of("e", "tok_chargeDeclinedExpiredCard", 100)).await).1, "expired_card");
    assert_eq!(refused_code(client.charge(&charge_of("f", "tok_unknown", 100)).await), (400, "invalid_token".into()));
    gateway.stop().await.unwrap();
}

#[tokio::test]
async fn the_transient_card_fails_twice_per_key_then_succeeds_once() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, client) = start(dir.path(), 0).await;
    let token = client.tokenize(&card("4000000000000119")).await.unwrap().token;
    for key in ["k1", "k2"] {
        for _ in 0..2 {
            let e = client.charge(&charge_of(key, &token, 700)).await.unwrap_err();
            assert!(e.is_transient(), "{e:?}");
        }
        let first = client.charge(&charge_of(key, &token, 700)).await.unwrap();
        let again = client.charge(&charge_of(key, &token, 700)).await.unwrap();
        assert_eq!(first, again, "the same key gets the first outcome");
    }
    // The fixed token behaves the same.
    assert!(client.charge(&charge_of("k3", "tok_transient", 1)).await.unwrap_err().is_transient());
    let listing = gateway.listing();
    assert_eq!(listing.charges.len(), 2, "transient failures are not charges");
    assert_eq!(gateway.stats().transient_failures, 5);
    gateway.stop().await.unwrap();
}

#[tokio::test]
async fn tokenizing_checks_the_card_and_never_keeps_or_echoes_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, client) = start(dir.path(), 0).await;
    assert_eq!(refused_code(client.tokenize(&card("4242424242424241")).await), (402, "invalid_number".into()));
    let past = TokenizeRequest { exp_year: 2020, ..card("4242424242424242") };
    assert_eq!(refused_code(client.tokenize(&past).await), (402, "expired_card".into()));
    let month = TokenizeRequest { exp_month: 13, ..card("4242424242424242") };
    assert_eq!(refused_code(client.tokenize(&month).await).1, "invalid_expiry_month");
    let token = client.tokenize(&card("4242424242424242")).await.unwrap();
    client.charge(&charge_of("o1", &token.token, 5)).await.unwrap();

    // A body serde trips over must not come back with the number in it.
    let http = reqwest::Client::new();
    let answer = http
        .post(format!("{}/v1/tokens", gateway.url()))
        .header("content-type", "application/json")
        .body(r#"{"number": 4242424242424242, "exp_month": 1, "exp_year": 2099}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let text = answer.text().await.unwrap();
    assert!(!text.contains("4242424242424242"), "{text}");

    gateway.stop().await.unwrap();
    let ledger = std::fs::read_to_string(dir.path().join("ledger.jsonl")).unwrap();
    assert!(ledger.contains(&token.token), "the token is remembered");
    assert!(!ledger.contains("4242424242424242") && !ledger.contains("424242424242"), "the number never is: {ledger}");
}

#[tokio::test]
async fn a_charge_is_made_once_per_key_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, client) = start(dir.path(), 0).await;
    let token = client.tokenize(&card("4242424242424242")).await.unwrap().token;
    let first = client.charge(&charge_of("order-1", &token, 2500)).await.unwrap();
    assert_eq!(client.charge(&charge_of("order-1", &token, 2500)).await.unwrap(), first);
    let declined = refused_code(client.charge(&charge_of("order-2", "tok_chargeDeclined", 100)).await);
    // The same key with other parameters is refused, not charged.
    assert_eq!(refused_code(client.charge(&charge_of("order-1", &token, 2600)).await), (409, "idempotency_key_reused".into()));
    gateway.stop().await.unwrap();

    let (gateway, client) = start(dir.path(), 0).await;
    assert_eq!(client.charge(&charge_of("order-1", &token, 2500)).await.unwrap(), first, "same answer after a restart");
    assert_eq!(refused_code(client.charge(&charge_of("order-2", "tok_chargeDeclined", 100)).await), declined, "declines replay too");
    // The tokenized card survives the restart.
    assert!(client.charge(&charge_of("order-3", &token, 100)).await.is_ok());
    let listing = client.ledger().await.unwrap();
    let per_key = listing.charges_per_key();
    assert_eq!(per_key.len(), 3);
    assert!(per_key.values().all(|n| *n == 1), "{per_key:?}");
    assert_eq!(client.stats().await.unwrap().replays, 2);
    gateway.stop().await.unwrap();
    assert_eq!(read_ledger(dir.path()).unwrap(), listing);
}

#[tokio::test]
async fn refunds_are_bounded_by_what_was_captured_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, client) = start(dir.path(), 0).await;
    let charge = client.charge(&charge_of("order-1", "tok_visa", 1000)).await.unwrap();
    let refund = |key: &str, amount| RefundRequest { idempotency_key: key.into(), payment_id: charge.payment_id.clone(), amount_minor: amount };
    let r1 = client.refund(&refund("r1", 600)).await.unwrap();
    assert_eq!((r1.amount_minor, r1.currency.as_str(), r1.status.as_str()), (600, "EUR", "succeeded"));
    assert_eq!(client.refund(&refund("r1", 600)).await.unwrap(), r1, "a repeat is the same refund");
    assert_eq!(refused_code(client.refund(&refund("r2", 401)).await), (400, "amount_too_large".into()));
    assert!(client.refund(&refund("r2", 400)).await.is_ok());
    assert_eq!(refused_code(client.refund(&refund("r3", 1)).await).1, "amount_too_large", "fully refunded");
    let unknown = RefundRequest { idempotency_key: "r4".into(), payment_id: "ch_nope".into(), amount_minor: 1 };
    assert_eq!(refused_code(client.refund(&unknown).await), (404, "no_such_payment".into()));
    assert_eq!(refused_code(client.refund(&refund("r1", 5)).await).1, "idempotency_key_reused");
    gateway.stop().await.unwrap();

    // The bound holds after a restart: refunds are part of the ledger.
    let (gateway, client) = start(dir.path(), 0).await;
    assert_eq!(client.refund(&refund("r1", 600)).await.unwrap(), r1);
    assert_eq!(refused_code(client.refund(&refund("r5", 1)).await).1, "amount_too_large");
    assert_eq!(client.ledger().await.unwrap().refunds.len(), 2);
    gateway.stop().await.unwrap();
}

#[tokio::test]
async fn latency_delays_every_charge() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, client) = start(dir.path(), 200).await;
    let started = Instant::now();
    client.charge(&charge_of("slow", "tok_visa", 1)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
    // A client that gives up before the answer: the charge is still made (once).
    let impatient = GatewayClient::new(&gateway.url(), Duration::from_millis(150)).unwrap();
    assert!(impatient.charge(&charge_of("gave-up", "tok_visa", 1)).await.unwrap_err().is_transient());
    let charged = async {
        while !gateway.listing().charges.iter().any(|c| c.idempotency_key == "gave-up") {
            tokio::time::sleep(Duration::from_millis(10)).await; // condition poll
        }
    };
    tokio::time::timeout(Duration::from_secs(5), charged).await.expect("the charge was made");
    let again = client.charge(&charge_of("gave-up", "tok_visa", 1)).await.unwrap();
    assert_eq!(gateway.listing().charges.iter().filter(|c| c.idempotency_key == "gave-up").count(), 1);
    assert_eq!(gateway.listing().charges.iter().find(|c| c.idempotency_key == "gave-up").unwrap().payment_id(), Some(again.payment_id.as_str()));
    gateway.stop().await.unwrap();
}

#[tokio::test]
async fn bad_requests_are_4xx_with_a_code() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, client) = start(dir.path(), 0).await;
    assert_eq!(refused_code(client.charge(&charge_of("", "tok_visa", 1)).await), (400, "invalid_request".into()));
    assert_eq!(refused_code(client.charge(&charge_of("k", "tok_visa", -1)).await), (400, "invalid_request".into()));
    let lower = ChargeRequest { currency: "eur".into(), ..charge_of("k", "tok_visa", 1) };
    assert_eq!(refused_code(client.charge(&lower).await), (400, "invalid_request".into()));
    let answer = reqwest::Client::new().post(format!("{}/v1/charges", gateway.url())).body("{").send().await.unwrap();
    assert_eq!(answer.status(), 400);
    let body: ErrorBody = answer.json().await.unwrap();
    assert_eq!(body.error.code, "invalid_request");
    assert!(gateway.listing().charges.is_empty());
    gateway.stop().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_gateway_is_a_transient_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = GatewayClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2)).unwrap();
    assert!(client.charge(&charge_of("k", "tok_visa", 1)).await.unwrap_err().is_transient());
}
