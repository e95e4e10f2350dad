//! The abstraction every sink implements.

use std::future::Future;

use courier_consumer_main::{Event, Ops, Origin};
use tokio_util::sync::CancellationToken;

/// One event of a batch handed to a sink.
#[derive(Debug, Clone)]
pub struct SinkRecord {
    /// The CloudEvent.
    pub event: Event,
    /// The record it came from.
    pub origin: Origin,
}

/// A record the store refused for good (a mapping conflict, invalid data): it goes to the
/// dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Its index in the batch.
    pub index: usize,
    /// The error's class (`kafka_dlt-exception-fqcn`).
    pub class: String,
    /// What the store said.
    pub message: String,
}

/// A batch could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Shutdown came first; nothing of the batch may be committed.
    #[error("cancelled")]
    Cancelled,
    /// The sink cannot work at all (bad configuration).
    #[error("{0}")]
    Fatal(String),
}

/// A destination for batches of events.
///
/// `write` returns once every record is durably in the store or refused for good (the
/// refusals are returned); it retries what may pass — the store down, busy or slow — with
/// backoff for as long as it takes, and gives up only when `cancel` fires.
pub trait Sink: Send + Sync + 'static {
    /// Its name in logs and metrics.
    fn name(&self) -> &'static str;

    /// Where to report the store's failures and whether it answers (called once, before
    /// [`Sink::prepare`]); by default nowhere.
    fn observe(&self, _ops: &Ops) {}

    /// Prepares the store (templates, checks) before the first batch; waits for the store.
    fn prepare(
        &self,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Writes one batch.
    fn write(
        &self,
        batch: &[SinkRecord],
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<Vec<Rejection>, SinkError>> + Send;
}
