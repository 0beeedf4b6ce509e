//! A log reader on a thread of its own, handing chunks of records to async code over a
//! bounded channel: a `LogReader` blocks, and a consumer that stops taking chunks should stop
//! the reading too (`blocking_send` waits), not let it run ahead into memory. The analytics
//! sink and the payment worker both read this way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::{LogReader, Record};

/// Polls `reader` into `tx` until `stop` is raised or the receiver is gone. A failed poll is
/// logged and retried after a pause (the log may come back).
pub fn spawn_channel_reader(
    name: String,
    mut reader: Box<dyn LogReader>,
    tx: mpsc::Sender<Vec<Record>>,
    poll_max: usize,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let poll_max = poll_max.max(1);
    std::thread::Builder::new().name(name).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match reader.poll(poll_max, Duration::from_millis(100)) {
                Ok(records) if records.is_empty() => {}
                Ok(records) => {
                    if tx.blocking_send(records).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the log failed; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    })
}
