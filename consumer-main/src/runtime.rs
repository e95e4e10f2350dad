//! The handler runtime: one consumer loop hands each record to its partition's worker
//! through a bounded queue (a full queue holds the intake back); each worker runs its
//! records in order — dedupe, handler, retries, dead letter — and stores the offset after.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers as _, Message, OwnedMessage};
use rdkafka::topic_partition_list::TopicPartitionList;
use regex::Regex;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::ConsumerConfig;
use crate::dead_letter::{DeadLetterPublisher, DeadLetterReason};
use crate::dedupe::Dedupe;
use crate::handler::{ErasedHandler, Handler, HandlerError, Typed};
use crate::kafka::{self, GroupConsumer, PartitionKey};
use crate::ops::{Ops, RecordOutcome};

/// How often records waiting for room in a paused partition's queue are looked at again.
const PENDING_POLL: Duration = Duration::from_millis(20);

/// Class of the error for a record that is not a CloudEvent.
pub const INVALID_EVENT_CLASS: &str = "courier.InvalidEvent";

/// Why the runtime could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A topic pattern is not a valid regex.
    #[error("invalid topic pattern `{pattern}`: {reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// No handler was registered.
    #[error("no handler registered")]
    NoHandlers,
    /// Kafka refused the client or the subscription.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// Counters of what the runtime did.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events a handler succeeded on.
    pub handled: AtomicU64,
    /// Attempts that failed with a retriable error and were tried again.
    pub retried: AtomicU64,
    /// Records written to a dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Duplicates dropped by event id.
    pub deduplicated: AtomicU64,
    /// Records of topics no handler is bound to (dead-letter topics).
    pub skipped: AtomicU64,
}

impl Stats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn of(&self, outcome: RecordOutcome) -> &AtomicU64 {
        match outcome {
            RecordOutcome::Handled => &self.handled,
            RecordOutcome::DeadLettered => &self.dead_lettered,
            RecordOutcome::Deduplicated => &self.deduplicated,
            RecordOutcome::Skipped => &self.skipped,
        }
    }
}

enum Pattern {
    Regex(Regex),
    Literal(String),
}

struct Route {
    pattern: Pattern,
    handler: Arc<dyn ErasedHandler>,
}

/// Collects the handlers of a [`Consumer`].
pub struct ConsumerBuilder {
    config: ConsumerConfig,
    routes: Vec<Route>,
    subscriptions: Vec<String>,
    ops: Ops,
}

impl std::fmt::Debug for ConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("subscriptions", &self.subscriptions)
            .finish_non_exhaustive()
    }
}

impl ConsumerBuilder {
    /// A builder with no handlers.
    pub fn new(config: ConsumerConfig) -> Self {
        Self {
            config,
            routes: Vec::new(),
            subscriptions: Vec::new(),
            ops: Ops::new(),
        }
    }

    /// Reports into `ops` instead of a set of its own, e.g. one whose endpoints are served
    /// before the consumer is built. One per consumer: lag and readiness describe one member.
    pub fn ops(mut self, ops: Ops) -> Self {
        self.ops = ops;
        self
    }

    /// Binds `handler` to `pattern`: a regex starting with `^` (matching topics created
    /// later too), or a literal topic name. A record goes to the first handler whose
    /// pattern matches its topic.
    pub fn route<H: Handler>(mut self, pattern: &str, handler: H) -> Result<Self, RuntimeError> {
        let compiled = if pattern.starts_with('^') {
            Pattern::Regex(Regex::new(pattern).map_err(|e| RuntimeError::Pattern {
                pattern: pattern.into(),
                reason: e.to_string(),
            })?)
        } else {
            Pattern::Literal(pattern.to_owned())
        };
        self.routes.push(Route {
            pattern: compiled,
            handler: Arc::new(Typed(handler)),
        });
        self.subscriptions.push(pattern.to_owned());
        Ok(self)
    }

    /// The runtime, connected to Kafka (not yet consuming).
    pub fn build(self) -> Result<Consumer, RuntimeError> {
        if self.routes.is_empty() {
            return Err(RuntimeError::NoHandlers);
        }
        let dead_letters = DeadLetterPublisher::new(&self.config.kafka)?;
        Ok(Consumer {
            shared: Arc::new(Shared {
                dedupe: Dedupe::new(self.config.dedupe_capacity),
                config: self.config,
                routes: self.routes,
                dead_letters,
                stats: Arc::new(Stats::default()),
                ops: self.ops,
            }),
            subscriptions: self.subscriptions,
        })
    }
}

struct Shared {
    config: ConsumerConfig,
    routes: Vec<Route>,
    dead_letters: DeadLetterPublisher,
    dedupe: Dedupe,
    stats: Arc<Stats>,
    ops: Ops,
}

impl Shared {
    /// One record of `topic` done with: its counter and its metric.
    fn count(&self, topic: &str, outcome: RecordOutcome) {
        Stats::bump(self.stats.of(outcome));
        self.ops.metrics().record(topic, outcome, 1);
    }

    fn route(&self, topic: &str) -> Option<&Arc<dyn ErasedHandler>> {
        self.routes
            .iter()
            .find(|r| match &r.pattern {
                Pattern::Regex(re) => {
                    !self.dead_letters.is_dead_letter_topic(topic) && re.is_match(topic)
                }
                Pattern::Literal(name) => name == topic,
            })
            .map(|r| &r.handler)
    }
}

/// The handler runtime of a main server.
pub struct Consumer {
    shared: Arc<Shared>,
    subscriptions: Vec<String>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("subscriptions", &self.subscriptions)
            .finish_non_exhaustive()
    }
}

struct Worker {
    tx: mpsc::Sender<OwnedMessage>,
    stop: CancellationToken,
    /// Records that did not fit in the worker's queue, in order; while any wait here the
    /// partition is paused, so the intake goes on for the other partitions (and rebalances
    /// are served) instead of stopping for the slowest one.
    pending: VecDeque<OwnedMessage>,
}

impl Worker {
    /// Moves pending records into the queue while there is room; true when none is left.
    fn flush(&mut self) -> bool {
        while let Some(m) = self.pending.pop_front() {
            match self.tx.try_send(m) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(m)) => {
                    self.pending.push_front(m);
                    return false;
                }
                // The worker is gone (shutdown or revocation): its records stay uncommitted.
                Err(mpsc::error::TrySendError::Closed(_)) => self.pending.clear(),
            }
        }
        true
    }
}

fn set_paused(consumer: &GroupConsumer, key: &PartitionKey, paused: bool) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&key.0, key.1);
    let result = if paused {
        consumer.pause(&tpl)
    } else {
        consumer.resume(&tpl)
    };
    if let Err(e) = result {
        tracing::debug!(topic = %key.0, partition = key.1, paused, error = %e, "pause/resume");
    }
}

impl Consumer {
    /// A builder.
    pub fn builder(config: ConsumerConfig) -> ConsumerBuilder {
        ConsumerBuilder::new(config)
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    /// Its metrics and readiness, for [`crate::ops::serve`].
    pub fn ops(&self) -> Ops {
        self.shared.ops.clone()
    }

    /// Consumes until `shutdown` fires; then lets the handlers in flight finish (up to
    /// `shutdown_timeout`), commits the stored offsets and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), RuntimeError> {
        let consumer = Arc::new(kafka::subscribe(
            &self.shared.config.kafka,
            &self.subscriptions,
            &self.shared.ops,
        )?);
        tracing::info!(subscriptions = ?self.subscriptions, group = %self.shared.config.kafka.group_id, "consumer started");
        // Handlers in flight finish on shutdown; retry waits and dead-letter retries do not.
        let abort = CancellationToken::new();
        let mut workers: HashMap<PartitionKey, Worker> = HashMap::new();
        let mut tasks = JoinSet::new();
        loop {
            let waiting = workers.values().any(|w| !w.pending.is_empty());
            let message = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                m = consumer.recv() => Some(m),
                // While records wait for room, look again soon.
                () = tokio::time::sleep(PENDING_POLL), if waiting => None,
            };
            for key in consumer.context().take_revoked() {
                if let Some(w) = workers.remove(&key) {
                    w.stop.cancel();
                }
            }
            while tasks.try_join_next().is_some() {}
            for (key, w) in &mut workers {
                if !w.pending.is_empty() && w.flush() {
                    set_paused(&consumer, key, false);
                }
            }
            let m = match message {
                None => continue,
                Some(Ok(m)) => m.detach(),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    continue;
                }
            };
            let key = (m.topic().to_owned(), m.partition());
            let worker = workers.entry(key.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(self.shared.config.partition_queue.max(1));
                let stop = CancellationToken::new();
                let generation = consumer.context().in_flight().generation(&key);
                tasks.spawn(run_partition(
                    rx,
                    key.clone(),
                    generation,
                    stop.clone(),
                    abort.clone(),
                    self.shared.clone(),
                    consumer.clone(),
                ));
                Worker {
                    tx,
                    stop,
                    pending: VecDeque::new(),
                }
            });
            let was_waiting = !worker.pending.is_empty();
            worker.pending.push_back(m);
            if !worker.flush() && !was_waiting {
                set_paused(&consumer, &key, true);
            }
        }
        self.shared.ops.health().set_stopping();
        tracing::info!("consumer stopping: finishing handlers in flight");
        for w in workers.values() {
            w.stop.cancel();
        }
        drop(workers);
        abort.cancel();
        let drained = tokio::time::timeout(self.shared.config.shutdown_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "handlers still running at the shutdown deadline; their records will be redelivered"
            );
            tasks.abort_all();
        }
        commit_sync(consumer).await;
        tracing::info!("consumer stopped");
        Ok(())
    }
}

/// Commits the stored offsets and leaves the group (blocking calls, off the async threads).
pub async fn commit_sync<C: rdkafka::consumer::ConsumerContext + 'static>(
    consumer: Arc<rdkafka::consumer::StreamConsumer<C>>,
) {
    let result = tokio::task::spawn_blocking(move || {
        let r = consumer.commit_consumer_state(CommitMode::Sync);
        consumer.unsubscribe();
        r
    })
    .await;
    match result {
        Ok(Ok(())) => tracing::info!("offsets committed"),
        Ok(Err(e)) => tracing::debug!(error = %e, "final commit (nothing stored?)"),
        Err(e) => tracing::warn!(error = %e, "final commit task failed"),
    }
}

async fn run_partition(
    mut rx: mpsc::Receiver<OwnedMessage>,
    key: PartitionKey,
    generation: u64,
    stop: CancellationToken,
    abort: CancellationToken,
    shared: Arc<Shared>,
    consumer: Arc<GroupConsumer>,
) {
    loop {
        let m = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            m = rx.recv() => match m { Some(m) => m, None => return },
        };
        // A revocation waits for this record; a record queued before one is left to the
        // partition's next owner.
        let Some(_processing) = consumer.context().in_flight().begin(&key, generation) else {
            return;
        };
        let started = std::time::Instant::now();
        let done = process(&m, &shared, &abort).instrument(span_of(&m)).await;
        shared.ops.metrics().handler_took(started.elapsed());
        if done {
            kafka::store_after(&consumer, m.topic(), m.partition(), m.offset());
        } else {
            // Shutdown came during a retry wait: the record stays uncommitted.
            return;
        }
    }
}

/// The span a record is handled in when traces are exported: a child of the producer's trace
/// context from the record's `traceparent` header. None otherwise (it would cost every record).
fn span_of(m: &OwnedMessage) -> tracing::Span {
    if !courier_telemetry::traces_on() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "consume",
        topic = m.topic(),
        partition = m.partition(),
        offset = m.offset()
    );
    if let Some(headers) = m.headers() {
        courier_telemetry::continue_record(
            &span,
            headers.iter().filter_map(|h| Some((h.key, h.value?))),
        );
    }
    span
}

/// Handles one record; true when it is done with (handled, dropped as a duplicate, or
/// dead-lettered), so its offset may be stored.
async fn process(m: &OwnedMessage, shared: &Shared, abort: &CancellationToken) -> bool {
    let Some(handler) = shared.route(m.topic()) else {
        shared.count(m.topic(), RecordOutcome::Skipped);
        return true;
    };
    let event = match kafka::event_of(m) {
        Ok(e) => e,
        Err(e) => {
            let reason = DeadLetterReason {
                class: INVALID_EVENT_CLASS.into(),
                message: format!("not a CloudEvent: {e}"),
            };
            return dead_letter(m, &reason, shared, abort).await;
        }
    };
    if !shared.dedupe.claim(&event.source, &event.id) {
        shared.count(m.topic(), RecordOutcome::Deduplicated);
        tracing::debug!(event_id = %event.id, "duplicate dropped");
        return true;
    }
    let retry = shared.config.retry;
    let (source, id) = (event.source.clone(), event.id.clone());
    let origin = kafka::origin(m);
    let mut attempt = 0u32;
    let error: HandlerError = loop {
        attempt += 1;
        match handler.call(event.clone(), origin.clone()).await {
            Ok(()) => {
                shared.count(m.topic(), RecordOutcome::Handled);
                return true;
            }
            Err(e) if e.retriable && attempt < retry.max_attempts.max(1) => {
                Stats::bump(&shared.stats.retried);
                shared.ops.metrics().retry(m.topic());
                tracing::info!(event_id = %id, attempt, error = %e, "handler failed; retrying");
                if !crate::retry::sleep_unless_cancelled(retry.backoff(attempt), abort).await {
                    shared.dedupe.release(&source, &id);
                    return false;
                }
            }
            Err(e) => break e,
        }
    };
    // Not handled: a later copy of the event gets its own chance.
    shared.dedupe.release(&source, &id);
    let reason = DeadLetterReason {
        class: error.class,
        message: error.message,
    };
    dead_letter(m, &reason, shared, abort).await
}

async fn dead_letter(
    m: &OwnedMessage,
    reason: &DeadLetterReason,
    shared: &Shared,
    abort: &CancellationToken,
) -> bool {
    let backoff = crate::config::RetryPolicy {
        max_backoff: Duration::from_secs(5),
        ..shared.config.retry
    };
    let done = shared
        .dead_letters
        .publish(m, reason, &backoff, abort)
        .await;
    if done {
        Stats::bump(&shared.stats.dead_lettered);
        shared.ops.metrics().dead_letter(m.topic(), &reason.class);
    }
    done
}
