//! The at-least-once loop every sink runs in: read records from the group, cut them into
//! batches bounded by count, bytes and time, write each batch through the [`Sink`]
//! (at most `max_in_flight` batches at once, completed in order), dead-letter what the
//! store refused, and only then store the batch's offsets for the next commit. It reports
//! into an [`Ops`]: records by outcome, batch durations, lag, and readiness (in the group,
//! and the store answered).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use courier_consumer_main::dead_letter::{DeadLetterPublisher, DeadLetterReason};
use courier_consumer_main::kafka::{self, GroupConsumer};
use courier_consumer_main::ops::{Ops, RecordOutcome};
use courier_consumer_main::{KafkaConsumerConfig, RetryPolicy};
use futures::{FutureExt as _, StreamExt as _};
use rdkafka::message::{Message, OwnedMessage};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::sink::{Sink, SinkError, SinkRecord};

/// Class of the error for a record that is not a CloudEvent.
pub const INVALID_EVENT_CLASS: &str = "courier.InvalidEvent";

/// When a batch is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// At most this many records.
    pub max_docs: usize,
    /// At most about this many bytes of record values and headers.
    pub max_bytes: usize,
    /// At most this long after its first record arrived.
    pub max_wait: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_docs: 2000,
            max_bytes: 5 << 20,
            max_wait: Duration::from_millis(500),
        }
    }
}

/// Settings of a sink pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The consumer group.
    pub kafka: KafkaConsumerConfig,
    /// Topic patterns (`^regex`) or names.
    pub topics: Vec<String>,
    /// Batch bounds.
    pub batch: BatchLimits,
    /// Batches written at once (completed, and their offsets stored, in order).
    pub max_in_flight: usize,
    /// How long shutdown waits for batches in flight.
    pub shutdown_timeout: Duration,
    /// Backoff of dead-letter writes.
    pub retry: RetryPolicy,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            kafka: KafkaConsumerConfig::default(),
            topics: vec![r"^[a-z0-9-]+\.(events|logs|error\..+)$".into()],
            batch: BatchLimits::default(),
            max_in_flight: 2,
            shutdown_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

/// Counters of a pipeline.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Records written to the store.
    pub written: AtomicU64,
    /// Records dead-lettered (refused by the store, or not CloudEvents).
    pub dead_lettered: AtomicU64,
    /// Batches completed.
    pub batches: AtomicU64,
}

/// Why a pipeline stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Kafka refused the client or the subscription.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The sink cannot work.
    #[error("sink: {0}")]
    Sink(SinkError),
    /// A batch could not be completed; nothing after it was stored, so its records and all
    /// later ones are read again from the last commit after a restart.
    #[error("a batch could not be completed: {0}")]
    Batch(String),
}

#[derive(Default)]
struct Batch {
    messages: Vec<OwnedMessage>,
    bytes: usize,
    deadline: Option<Instant>,
}

impl Batch {
    /// Adds a record; the first one starts the batch's wait.
    fn push(&mut self, m: OwnedMessage, max_wait: Duration) {
        self.bytes += m.payload().map_or(0, <[u8]>::len) + 256;
        self.messages.push(m);
        self.deadline
            .get_or_insert_with(|| Instant::now() + max_wait);
    }

    fn is_full(&self, limits: &BatchLimits) -> bool {
        self.messages.len() >= limits.max_docs || self.bytes >= limits.max_bytes
    }
}

/// The last offset of each partition in a completed batch.
type Offsets = BTreeMap<(String, i32), i64>;

/// Runs `sink` until `shutdown` fires; then completes the batches in flight (up to
/// `shutdown_timeout`), commits and returns. Its metrics and readiness go to a set of its
/// own; [`run_with_ops`] to serve them.
pub async fn run<S: Sink>(
    sink: Arc<S>,
    config: PipelineConfig,
    stats: Arc<PipelineStats>,
    shutdown: CancellationToken,
) -> Result<(), PipelineError> {
    run_with_ops(sink, config, stats, Ops::new(), shutdown).await
}

/// [`run`], reporting into `ops` (which the sink reports its store's failures into too).
pub async fn run_with_ops<S: Sink>(
    sink: Arc<S>,
    config: PipelineConfig,
    stats: Arc<PipelineStats>,
    ops: Ops,
    shutdown: CancellationToken,
) -> Result<(), PipelineError> {
    // Cancels waits on the store once shutdown's grace period is over.
    let abort = CancellationToken::new();
    sink.observe(&ops);
    ops.health().set_sink_ready(false);
    match sink.prepare(&shutdown).await {
        Ok(()) => ops.health().set_sink_ready(true),
        Err(SinkError::Cancelled) => return Ok(()),
        Err(e) => return Err(PipelineError::Sink(e)),
    }
    let consumer = Arc::new(kafka::subscribe(&config.kafka, &config.topics, &ops)?);
    let dead_letters = Arc::new(DeadLetterPublisher::new(&config.kafka)?);
    tracing::info!(sink = sink.name(), topics = ?config.topics, group = %config.kafka.group_id, "sink pipeline started");
    let mut in_flight: VecDeque<JoinHandle<Result<Offsets, SinkError>>> = VecDeque::new();
    let mut batch = Batch::default();
    let limits = config.batch;
    let max_in_flight = config.max_in_flight.max(1);
    // Set by the first batch that fails: from then on no offset is stored, since a later
    // batch's offsets would cover the failed batch's records.
    let mut failed: Option<String> = None;
    // One stream for the whole run: `recv` makes (and drops) a stream, with its waker slot,
    // per call.
    let mut stream = consumer.stream();
    loop {
        let wait = batch.deadline.map_or(Duration::from_millis(200), |d| {
            d.saturating_duration_since(Instant::now())
        });
        let received = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = tokio::time::timeout(wait, stream.next()) => r,
        };
        match received {
            Ok(Some(Ok(m))) => {
                batch.push(m.detach(), limits.max_wait);
                // What librdkafka holds already joins the batch without a timer per record.
                while !batch.is_full(&limits) {
                    match stream.next().now_or_never() {
                        Some(Some(Ok(m))) => batch.push(m.detach(), limits.max_wait),
                        Some(Some(Err(e))) => tracing::warn!(error = %e, "consumer error"),
                        Some(None) | None => break,
                    }
                }
            }
            Ok(Some(Err(e))) => tracing::warn!(error = %e, "consumer error"),
            Ok(None) | Err(_) => {}
        }
        let cut = batch.is_full(&limits) || batch.deadline.is_some_and(|d| d <= Instant::now());
        if cut && !batch.messages.is_empty() {
            while in_flight.len() >= max_in_flight {
                let Some(front) = in_flight.pop_front() else {
                    break;
                };
                complete(front, &consumer, &mut failed).await;
            }
            if failed.is_some() {
                break;
            }
            let messages = std::mem::take(&mut batch).messages;
            in_flight.push_back(tokio::spawn(write_batch(
                sink.clone(),
                messages,
                dead_letters.clone(),
                config.retry,
                Observer {
                    stats: stats.clone(),
                    ops: ops.clone(),
                },
                abort.clone(),
            )));
        }
        while in_flight.front().is_some_and(JoinHandle::is_finished) {
            if let Some(front) = in_flight.pop_front() {
                complete(front, &consumer, &mut failed).await;
            }
        }
        if failed.is_some() {
            break;
        }
    }
    drop(stream);
    ops.health().set_stopping();
    tracing::info!(
        batches = in_flight.len(),
        "sink pipeline stopping: completing batches in flight"
    );
    let grace = tokio::time::sleep(config.shutdown_timeout);
    tokio::pin!(grace);
    while let Some(mut front) = in_flight.pop_front() {
        tokio::select! {
            r = &mut front => apply(r, &consumer, &mut failed),
            _ = &mut grace, if !abort.is_cancelled() => {
                tracing::warn!("batches still unwritten at the shutdown deadline; they will be redelivered");
                abort.cancel();
                apply(front.await, &consumer, &mut failed);
            }
        }
    }
    courier_consumer_main::runtime::commit_sync(consumer).await;
    match failed {
        // Stopping early was asked for: the unfinished batches are read again next time.
        Some(_) if shutdown.is_cancelled() => Ok(()),
        Some(error) => Err(PipelineError::Batch(error)),
        None => Ok(()),
    }
}

async fn complete(
    handle: JoinHandle<Result<Offsets, SinkError>>,
    consumer: &GroupConsumer,
    failed: &mut Option<String>,
) {
    apply(handle.await, consumer, failed);
}

/// Stores a completed batch's offsets, in batch order, unless an earlier batch failed.
fn apply(
    result: Result<Result<Offsets, SinkError>, tokio::task::JoinError>,
    consumer: &GroupConsumer,
    failed: &mut Option<String>,
) {
    match result {
        Ok(Ok(offsets)) if failed.is_none() => {
            for ((topic, partition), offset) in offsets {
                kafka::store_after(consumer, &topic, partition, offset);
            }
        }
        Ok(Ok(_)) => {
            tracing::info!(
                "batch written after an earlier one failed; not stored, it will be read again"
            );
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "batch not completed; it and every later batch will be read again");
            failed.get_or_insert_with(|| e.to_string());
        }
        Err(e) => {
            tracing::error!(error = %e, "batch task failed; it and every later batch will be read again");
            failed.get_or_insert_with(|| e.to_string());
        }
    }
}

/// Where a batch's outcomes are counted: the pipeline's counters and its metrics, together.
struct Observer {
    stats: Arc<PipelineStats>,
    ops: Ops,
}

impl Observer {
    fn dead_lettered(&self, topic: &str, class: &str) {
        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        self.ops.metrics().dead_letter(topic, class);
    }

    fn skipped(&self, topic: &str) {
        self.ops.metrics().record(topic, RecordOutcome::Skipped, 1);
    }

    /// A batch is done: `written` records of each topic are in the store.
    fn batch_done(&self, written: &BTreeMap<&str, u64>, took: Duration) {
        let total: u64 = written.values().sum();
        self.stats.written.fetch_add(total, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        for (topic, &n) in written {
            self.ops.metrics().record(topic, RecordOutcome::Handled, n);
        }
        self.ops.metrics().batch_took(took);
    }
}

async fn write_batch<S: Sink>(
    sink: Arc<S>,
    messages: Vec<OwnedMessage>,
    dead_letters: Arc<DeadLetterPublisher>,
    retry: RetryPolicy,
    observer: Observer,
    abort: CancellationToken,
) -> Result<Offsets, SinkError> {
    let started = std::time::Instant::now();
    let mut records = Vec::with_capacity(messages.len());
    let mut record_message = Vec::with_capacity(messages.len());
    let mut offsets = Offsets::new();
    for (i, m) in messages.iter().enumerate() {
        let slot = offsets
            .entry((m.topic().to_owned(), m.partition()))
            .or_insert(m.offset());
        *slot = (*slot).max(m.offset());
        // A dead-letter topic a pattern happens to match is not indexed again (nor
        // dead-lettered into `.dlt.dlt`): passed over, its offset stored.
        if dead_letters.is_dead_letter_topic(m.topic()) {
            observer.skipped(m.topic());
            continue;
        }
        match kafka::event_of(m) {
            Ok(event) => {
                records.push(SinkRecord {
                    event,
                    origin: kafka::origin(m),
                });
                record_message.push(i);
            }
            Err(e) => {
                let reason = DeadLetterReason {
                    class: INVALID_EVENT_CLASS.into(),
                    message: format!("not a CloudEvent: {e}"),
                };
                if !dead_letters.publish(m, &reason, &retry, &abort).await {
                    return Err(SinkError::Cancelled);
                }
                observer.dead_lettered(m.topic(), &reason.class);
            }
        }
    }
    let rejections = if records.is_empty() {
        Vec::new()
    } else {
        sink.write(&records, &abort).await?
    };
    for r in &rejections {
        let m = &messages[record_message[r.index]];
        let reason = DeadLetterReason {
            class: r.class.clone(),
            message: r.message.clone(),
        };
        if !dead_letters.publish(m, &reason, &retry, &abort).await {
            return Err(SinkError::Cancelled);
        }
        observer.dead_lettered(m.topic(), &reason.class);
    }
    let rejected: std::collections::HashSet<usize> = rejections.iter().map(|r| r.index).collect();
    let mut written: BTreeMap<&str, u64> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        if !rejected.contains(&i) {
            *written.entry(r.origin.topic.as_str()).or_default() += 1;
        }
    }
    observer.batch_done(&written, started.elapsed());
    Ok(offsets)
}
