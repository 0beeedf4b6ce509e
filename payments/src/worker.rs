//! The payment worker: consumer group `worker.group` on `payments`.
//!
//! For each `payment.charge_requested` it charges the token (idempotency key: the order id),
//! for each `payment.refund_approved` it refunds (key: the refund id), retrying transient
//! failures with exponential backoff and jitter, a bounded number of times. The outcome
//! (`payment.charge_succeeded` / `charge_failed` / `refunded` / `refund_failed`) is appended
//! to `orders`, keyed by the user id, with an event id derived from the request's
//! ([`outcome_event_id`]).
//!
//! **Commit after durable output.** Requests run concurrently (`worker.concurrency`), but
//! their outcomes are taken in log order: once a prefix of the records is done, its outcomes
//! are appended (the append returns when they are durable), and only then is the group's
//! offset moved past that prefix. A crash anywhere re-runs at most the uncommitted records:
//! the gateway answers a repeated key with its first outcome without charging again, and the
//! re-appended outcome has the same event id, which the pipeline drops.
//!
//! A record that is not a valid event, or not a payment request, is logged and skipped (the
//! pipeline dead-letters bad events; the worker must not stop on one).
//!
//! The worker reads every partition of `payments` itself (no group rebalancing): run one per
//! deployment. A second one would be wasteful but safe, for the reasons above.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use shopflow_events::types::{ChargeFailed, ChargeRequested, ChargeSucceeded, PaymentRefunded, RefundApproved, RefundFailed};
use shopflow_events::{DecodeError, Envelope, Event, Id, Topic};
use shopflow_ingest::{EventLog, OutRecord, Position, Record};
use tokio::sync::{oneshot, watch};

use crate::backoff::Backoff;
use crate::consume::GroupReader;
use crate::gateway::api;
use crate::{GatewayClient, GatewayError, PaymentsError, WorkerConfig};


/// The event id of the outcome of request `request_id`: the same request always gives the
/// same id, whichever outcome it turns out to have, so the pipeline keeps at most one outcome
/// per request however often a crashed worker re-runs it.
pub fn outcome_event_id(request_id: uuid::Uuid) -> uuid::Uuid {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x7a3e_51c2_0d94_4f6b_9c18_e2b7_46a0_d35f);
    uuid::Uuid::new_v5(&NAMESPACE, request_id.as_bytes())
}

/// What the worker did in this run, published after every commit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerProgress {
    pub charges_succeeded: u64,
    pub charges_failed: u64,
    pub refunds: u64,
    pub refunds_failed: u64,
    /// Records skipped: not valid events, or not payment requests.
    pub skipped: u64,
    /// Next offset per partition of `payments`, as committed.
    pub committed: BTreeMap<u32, u64>,
}

impl WorkerProgress {
    /// Requests turned into outcomes (this run).
    pub fn outcomes(&self) -> u64 {
        self.charges_succeeded + self.charges_failed + self.refunds + self.refunds_failed
    }

    /// Adds a later flush's counts and commits.
    fn add(&mut self, later: WorkerProgress) {
        self.charges_succeeded += later.charges_succeeded;
        self.charges_failed += later.charges_failed;
        self.refunds += later.refunds;
        self.refunds_failed += later.refunds_failed;
        self.skipped += later.skipped;
        self.committed.extend(later.committed);
    }
}

/// One record, done.
enum Handled {
    Outcome { at: (u32, u64), kind: Kind, envelope: Box<Envelope> },
    Skipped { at: (u32, u64) },
    /// Shutdown came while retrying: this record and everything after it stay uncommitted.
    Interrupted,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    ChargeSucceeded,
    ChargeFailed,
    Refunded,
    RefundFailed,
}

struct Context {
    client: GatewayClient,
    backoff: Backoff,
    shutdown: watch::Receiver<bool>,
}

/// The payment worker. [`PaymentWorker::run`] until shutdown.
pub struct PaymentWorker {
    log: Arc<dyn EventLog>,
    config: WorkerConfig,
    progress: watch::Sender<WorkerProgress>,
}

impl PaymentWorker {
    pub fn new(log: Arc<dyn EventLog>, config: WorkerConfig) -> Self {
        Self { log, config, progress: watch::channel(WorkerProgress::default()).0 }
    }

    /// Progress after every commit.
    pub fn progress(&self) -> watch::Receiver<WorkerProgress> {
        self.progress.subscribe()
    }

    /// Runs until `shutdown` turns true: then takes no new request, lets those in flight
    /// finish (a retry waiting for its backoff gives up at once), appends and commits their
    /// outcomes, and returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<WorkerProgress, PaymentsError> {
        let config = &self.config;
        let client = GatewayClient::new(&config.gateway_url, config.request_timeout())
            .map_err(|e| PaymentsError::Config(format!("gateway client: {e}")))?;
        let topic = Topic::Payments.name();
        let reader = GroupReader::start(self.log.clone(), &config.group, topic, config.poll_max).await?;
        let mut progress = WorkerProgress { committed: reader.committed.clone(), ..Default::default() };
        self.progress.send_replace(progress.clone());
        tracing::info!(group = %config.group, gateway = %config.gateway_url, concurrency = config.concurrency, from = ?progress.committed, "payment worker starting");

        let context = Arc::new(Context { client, backoff: config.backoff(), shutdown: shutdown.clone() });
        let concurrency = config.concurrency.max(1);
        let mut reader = reader;
        let mut backlog: VecDeque<Record> = VecDeque::new();
        let mut in_flight = FuturesOrdered::new();
        // Requests done, in log order, waiting for the append under way to be durable.
        let mut done: Vec<Handled> = Vec::new();
        // Flushes: append the outcomes, then commit past them. One append at a time, and each
        // commit after the one before (commits never go backwards), but a flush's append may
        // run while the previous flush commits; requests keep being sent and collected all the
        // while. (The loop used to wait for each flush: two durable writes in a row during
        // which no charge started, which held the worker to about `concurrency` charges per
        // round trip: ~1,500 orders/s answered over HTTP at 2,000/s offered.)
        let mut flushes: FuturesOrdered<tokio::task::JoinHandle<Result<WorkerProgress, PaymentsError>>> = FuturesOrdered::new();
        // The flush whose append is under way: the next one starts once it is durable.
        let mut appending: Option<oneshot::Receiver<()>> = None;
        // The newest flush's commit, which the next flush's commit waits for.
        let mut last_commit: Option<oneshot::Receiver<()>> = None;
        // A request interrupted by shutdown: nothing after it is collected or committed.
        let mut interrupted = false;
        let mut stopping = *shutdown.borrow();
        let outcome = loop {
            while in_flight.len() < concurrency && !stopping && !interrupted {
                let Some(record) = backlog.pop_front() else { break };
                in_flight.push_back(Task(tokio::spawn(handle(context.clone(), record))));
            }
            if appending.is_none() && !done.is_empty() {
                let (appended, committed) = (oneshot::channel(), oneshot::channel());
                let flusher = Flusher {
                    log: self.log.clone(),
                    config: config.clone(),
                    shutdown: shutdown.clone(),
                    appended: appended.0,
                    after: last_commit.replace(committed.1),
                    committed: committed.0,
                };
                appending = Some(appended.1);
                flushes.push_back(tokio::spawn(flusher.flush(std::mem::take(&mut done))));
            }
            if flushes.is_empty() && (interrupted || (stopping && in_flight.is_empty())) {
                break Ok(());
            }
            tokio::select! {
                Some(first) = in_flight.next(), if !in_flight.is_empty() && !interrupted => {
                    // Everything else already done joins it.
                    let mut ready = vec![first];
                    while let Some(Some(next)) = in_flight.next().now_or_never() {
                        ready.push(next);
                    }
                    for handled in ready {
                        let handled = handled.unwrap_or_else(|e| {
                            // A panic in a request task: keep the record uncommitted.
                            tracing::error!(error = %e, "a payment request task failed");
                            Handled::Interrupted
                        });
                        interrupted |= matches!(handled, Handled::Interrupted);
                        done.push(handled);
                        if interrupted {
                            break;
                        }
                    }
                }
                // Done or failed: either way the next append may start (a failed flush's
                // error comes below, and no later flush commits after it).
                _ = async { appending.as_mut().expect("guarded").await }, if appending.is_some() => appending = None,
                Some(flushed) = flushes.next(), if !flushes.is_empty() => {
                    match flushed {
                        Ok(Ok(flushed)) => {
                            progress.add(flushed);
                            self.progress.send_replace(progress.clone());
                        }
                        Ok(Err(e)) => break Err(e),
                        Err(e) => break Err(PaymentsError::Stopped(format!("the flush task failed: {e}"))),
                    }
                }
                chunk = reader.rx.recv(), if backlog.is_empty() && !stopping => match chunk {
                    Some(records) => backlog.extend(records),
                    None => break Err(PaymentsError::Stopped("the log reader ended".into())),
                },
                changed = shutdown.changed(), if !stopping => {
                    if changed.is_err() || *shutdown.borrow() {
                        tracing::info!(in_flight = in_flight.len(), "payment worker stopping; finishing the requests in flight");
                        stopping = true;
                        backlog.clear();
                    }
                }
            }
        };
        // Requests after an interruption: their outcomes are not committed, so they are not
        // needed (a restart re-runs them, idempotently). Dropping aborts them. A flush still
        // running after a failure is waited for: its append may already be under way.
        drop(in_flight);
        while let Some(flushed) = flushes.next().await {
            if let Ok(Ok(flushed)) = flushed {
                progress.add(flushed);
                self.progress.send_replace(progress.clone());
            }
        }
        reader.close().await;
        outcome?;
        tracing::info!(outcomes = progress.outcomes(), skipped = progress.skipped, committed = ?progress.committed, "payment worker stopped");
        Ok(progress)
    }
}

/// Appends outcomes and commits past them, on a task of its own.
struct Flusher {
    log: Arc<dyn EventLog>,
    config: WorkerConfig,
    shutdown: watch::Receiver<bool>,
    /// Told once the outcomes are durable.
    appended: oneshot::Sender<()>,
    /// The previous flush's commit: this one's waits for it (dropped unsent: it failed).
    after: Option<oneshot::Receiver<()>>,
    /// Told once this flush's commit is done (or failed harmlessly).
    committed: oneshot::Sender<()>,
}

impl Flusher {
    /// Appends the outcomes of a done prefix of records (until durable, retrying while the log
    /// is unavailable), then commits past them. Stops at the first interrupted record.
    /// Returns what it did: its counts, with the offsets it committed (none if the commit failed).
    async fn flush(mut self, done: Vec<Handled>) -> Result<WorkerProgress, PaymentsError> {
        let mut records = Vec::new();
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        let mut counts = WorkerProgress::default();
        for handled in done {
            let at = match handled {
                Handled::Interrupted => break,
                Handled::Skipped { at } => {
                    counts.skipped += 1;
                    at
                }
                Handled::Outcome { at, kind, envelope } => {
                    match kind {
                        Kind::ChargeSucceeded => counts.charges_succeeded += 1,
                        Kind::ChargeFailed => counts.charges_failed += 1,
                        Kind::Refunded => counts.refunds += 1,
                        Kind::RefundFailed => counts.refunds_failed += 1,
                    }
                    records.push(OutRecord::of(&envelope));
                    at
                }
            };
            next.insert(at.0, at.1 + 1);
        }
        if !records.is_empty() {
            self.append(records).await?;
        }
        let _ = self.appended.send(());
        if let Some(after) = self.after.take() {
            if after.await.is_err() {
                return Err(PaymentsError::Stopped("an earlier flush failed; not committing past it".into()));
            }
        }
        if next.is_empty() {
            let _ = self.committed.send(());
            return Ok(counts);
        }
        let positions: Vec<Position> = next.iter().map(|(p, o)| Position::new(Topic::Payments.name(), *p, *o)).collect();
        // A failed commit is not fatal: the next one covers it, and a restart in between only
        // re-runs requests whose outcomes are already appended (same ids, same gateway answers).
        match self.log.commit(&self.config.group, &positions).await {
            Ok(()) => counts.committed = next,
            Err(e) => tracing::warn!(error = %e, "committing the worker's offsets failed; the next commit covers them"),
        }
        let _ = self.committed.send(());
        Ok(counts)
    }

    async fn append(&mut self, records: Vec<OutRecord>) -> Result<(), PaymentsError> {
        let mut backoff = Duration::from_millis(self.config.retry_initial_ms.max(1));
        let cap = Duration::from_millis(self.config.retry_max_ms.max(1));
        let mut failures = 0u32;
        loop {
            match self.log.append(records.clone()).await {
                Ok(_) => return Ok(()),
                // Unavailable may have been partly written; a retry repeats event ids only.
                Err(e @ shopflow_ingest::LogError::Unavailable(_)) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "appending outcomes failed; retrying");
                    if *self.shutdown.borrow() && failures > 3 {
                        return Err(PaymentsError::Stopped(format!("shutting down with outcomes not appended: {e}")));
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(cap);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A request's task, aborted when dropped (the worker stopped without needing its outcome).
struct Task(tokio::task::JoinHandle<Handled>);

impl std::future::Future for Task {
    type Output = Result<Handled, tokio::task::JoinError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a worker until `shutdown` turns true (see [`PaymentWorker`]).
pub async fn run_worker(log: Arc<dyn EventLog>, config: WorkerConfig, shutdown: watch::Receiver<bool>) -> Result<WorkerProgress, PaymentsError> {
    PaymentWorker::new(log, config).run(shutdown).await
}

/// Why a record is not an event, without quoting it.
fn decode_reason(e: &DecodeError) -> String {
    match e {
        DecodeError::Malformed(_) => "malformed json or unknown event shape".into(),
        DecodeError::UnsupportedVersion(v) => format!("unsupported envelope version {v}"),
        DecodeError::Invalid(v) => v.to_string(),
    }
}

async fn handle(context: Arc<Context>, record: Record) -> Handled {
    let at = (record.partition, record.offset);
    let Some(value) = record.value else {
        return Handled::Skipped { at };
    };
    let envelope = match Envelope::decode(&value) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(partition = at.0, offset = at.1, reason = %decode_reason(&e), "skipping a record that is not a valid event");
            return Handled::Skipped { at };
        }
    };
    let request_id = envelope.id;
    let (kind, event) = match envelope.event {
        Event::ChargeRequested(request) => match charge(&context, request).await {
            Some(outcome) => outcome,
            None => return Handled::Interrupted,
        },
        Event::RefundApproved(request) => match refund(&context, request).await {
            Some(outcome) => outcome,
            None => return Handled::Interrupted,
        },
        other => {
            tracing::warn!(partition = at.0, offset = at.1, event_type = other.type_name(), "skipping an event that is not a payment request");
            return Handled::Skipped { at };
        }
    };
    let envelope = Envelope { id: outcome_event_id(request_id), ..Envelope::new(event) };
    Handled::Outcome { at, kind, envelope: Box::new(envelope) }
}

async fn charge(context: &Context, request: ChargeRequested) -> Option<(Kind, Event)> {
    let call = api::ChargeRequest {
        idempotency_key: request.order_id.to_string(),
        token: request.token.clone(),
        amount_minor: request.amount.amount_minor,
        currency: request.amount.currency.clone(),
    };
    let order_id = request.order_id.as_str();
    let failed = |reason: &str| {
        let event = Event::ChargeFailed(ChargeFailed {
            order_id: request.order_id.clone(),
            user_id: request.user_id.clone(),
            reason: reason.to_owned(),
            retryable: false,
        });
        Some((Kind::ChargeFailed, event))
    };
    match with_retries(context, "charge", order_id, || context.client.charge(&call)).await? {
        Ok(charge) => match Id::new(charge.payment_id.as_str()) {
            Ok(payment_id) => {
                tracing::info!(order_id, payment_id = %payment_id, amount = request.amount.amount_minor, "charge succeeded");
                Some((
                    Kind::ChargeSucceeded,
                    Event::ChargeSucceeded(ChargeSucceeded {
                        order_id: request.order_id.clone(),
                        user_id: request.user_id.clone(),
                        payment_id,
                        amount: request.amount.clone(),
                        authorization_code: charge.authorization_code,
                    }),
                ))
            }
            Err(e) => {
                tracing::error!(order_id, error = %e, "the gateway answered a payment id that is not an id");
                failed("gateway_protocol_error")
            }
        },
        Err(Refusal(code)) => {
            tracing::info!(order_id, reason = %code, "charge failed");
            failed(&code)
        }
    }
}

async fn refund(context: &Context, request: RefundApproved) -> Option<(Kind, Event)> {
    let call = api::RefundRequest {
        idempotency_key: request.refund_id.to_string(),
        payment_id: request.payment_id.to_string(),
        amount_minor: request.amount.amount_minor,
    };
    let refund_id = request.refund_id.as_str();
    let failed = |reason: &str| {
        let event = Event::RefundFailed(RefundFailed {
            order_id: request.order_id.clone(),
            user_id: request.user_id.clone(),
            refund_id: request.refund_id.clone(),
            reason: reason.to_owned(),
        });
        Some((Kind::RefundFailed, event))
    };
    match with_retries(context, "refund", refund_id, || context.client.refund(&call)).await? {
        Ok(_) => {
            tracing::info!(order_id = %request.order_id, refund_id, amount = request.amount.amount_minor, "refund made");
            Some((
                Kind::Refunded,
                Event::PaymentRefunded(PaymentRefunded {
                    order_id: request.order_id.clone(),
                    user_id: request.user_id.clone(),
                    refund_id: request.refund_id.clone(),
                    payment_id: request.payment_id.clone(),
                    amount: request.amount.clone(),
                }),
            ))
        }
        Err(Refusal(code)) => {
            tracing::info!(order_id = %request.order_id, refund_id, reason = %code, "refund failed");
            failed(&code)
        }
    }
}

/// Calls until the gateway gives a final answer; `None` when shutdown came during a wait.
///
/// A transient failure (no answer, a timeout, a 5xx) says nothing about whether the charge or
/// refund was made: giving up would have to guess, and a wrong "failed" rejects an order whose
/// money was taken. So the call is repeated, idempotent by its key, until the gateway answers:
/// with backoff for the first `attempts`, then at the cap, with one warning when the budget
/// runs out. Meanwhile the order's payment deadline keeps running in log time: an order that
/// expires waiting is refunded automatically if the charge turns out to have succeeded.
async fn with_retries<T, F, Fut>(context: &Context, what: &'static str, key: &str, call: F) -> Option<Result<T, Refusal>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, GatewayError>>,
{
    let mut shutdown = context.shutdown.clone();
    let mut retry = 0;
    loop {
        let error = match call().await {
            Ok(answer) => return Some(Ok(answer)),
            Err(GatewayError::Refused { code, .. }) => return Some(Err(Refusal(code))),
            Err(error) => error,
        };
        let delay = context.backoff.delay(retry).unwrap_or_else(|| {
            if retry + 1 == context.backoff.attempts {
                tracing::warn!(what, key, error = %error, "gateway still unavailable after the retry budget; retrying at the cap until it answers");
            }
            context.backoff.delay_at_cap()
        });
        tracing::debug!(what, key, error = %error, retry, delay_ms = delay.as_millis() as u64, "transient gateway failure; retrying");
        retry = retry.saturating_add(1);
        if *shutdown.borrow() {
            return None;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return None,
        }
    }
}

/// The gateway's final "no", with its code (`card_declined`, ...).
struct Refusal(String);
