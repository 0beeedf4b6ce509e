//! librdkafka's metadata and watermark calls block. Running them on a short-lived thread and
//! answering through a oneshot keeps the returned futures free of any async runtime, so timely
//! threads can drive them with `futures::executor::block_on`.

use std::future::Future;

use futures::channel::oneshot;

use crate::LogError;

pub(crate) fn run<T, F>(name: &'static str, f: F) -> impl Future<Output = Result<T, LogError>>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, LogError> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("kafka-{name}"))
        .spawn(move || {
            let _ = tx.send(f());
        });
    async move {
        spawned.map_err(|e| LogError::Unavailable(format!("spawn {name} thread: {e}")))?;
        rx.await
            .map_err(|_| LogError::Unavailable(format!("{name} thread panicked")))?
    }
}
