//! The delivery pipeline: one shared idempotent producer (`acks=all`) fed through a bounded
//! intake queue, and the wait for Kafka's acknowledgement.
//!
//! The queue is a semaphore of `queue_capacity` permits, one per event that has been handed
//! to the producer and not yet acknowledged. A request takes its permits before it enqueues
//! and gives them back when the acknowledgement (or failure) arrives, so memory is bounded by
//! the capacity and a full queue is an answer (429), not unbounded growth. A semaphore does
//! the job of a channel here without a second hop: librdkafka's own queue is the buffer, and
//! its size is set above the capacity so it never refuses an event we admitted.
//!
//! An idempotent producer that librdkafka declares unusable (a *fatal* error: the broker's
//! sequence state for the producer no longer matches its own, as after a whole cluster was
//! restarted) refuses every send from then on. [`Pipeline::renew_on_fatal`] puts a new
//! producer in its place; the events the old one held fail back to their senders (stored, or
//! rescheduled by the retry scheduler), as any failed delivery does.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use courier_shared::KafkaRecord;
use futures::task::AtomicWaker;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, FutureRecord, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientConfig, ClientContext, Statistics};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::{DeliveryConfig, KafkaConfig};
use crate::metrics::Metrics;
use crate::stats::Stats;

/// Kafka's acknowledgement of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition written to.
    pub partition: i32,
    /// Offset in that partition.
    pub offset: i64,
}

/// Why an event was not acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    /// The intake queue stayed full for the whole enqueue wait.
    #[error("intake queue full")]
    QueueFull,
    /// Kafka did not acknowledge within the ack timeout. The record may still be written
    /// later: the client's retry with the same id is at-least-once, never a loss.
    #[error("no acknowledgement from Kafka within {0:?}")]
    Timeout(Duration),
    /// Kafka (or librdkafka) failed the record.
    #[error("Kafka refused the event: {0}")]
    Kafka(KafkaError),
    /// The pipeline is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// Not sent: Kafka is known to be down (see [`Circuit`]).
    #[error("not sent: Kafka is not acknowledging")]
    CircuitOpen,
}

impl DeliveryError {
    /// True when Kafka does not know the topic (deleted since the proxy last checked it).
    pub fn is_unknown_topic(&self) -> bool {
        matches!(self, Self::Kafka(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition))
    }

    /// True when the failure says Kafka as a whole is not taking writes (no answer, or a
    /// transport-level error), rather than something about this one event.
    pub fn means_kafka_down(&self) -> bool {
        match self {
            Self::Timeout(_) => true,
            Self::Kafka(e) => matches!(
                e.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::MessageTimedOut
                        | RDKafkaErrorCode::AllBrokersDown
                        | RDKafkaErrorCode::BrokerTransportFailure
                        | RDKafkaErrorCode::NotEnoughReplicas
                        | RDKafkaErrorCode::NotEnoughReplicasAfterAppend
                        | RDKafkaErrorCode::RequestTimedOut
                        | RDKafkaErrorCode::NetworkException
                )
            ),
            _ => false,
        }
    }

    /// True when the event should go to the store: Kafka may take it later. A full intake
    /// queue (overload) and shutdown are refusals instead, or the store would absorb overload.
    pub fn is_storable(&self) -> bool {
        match self {
            Self::QueueFull | Self::ShuttingDown => false,
            other => other.is_retriable(),
        }
    }

    /// True when sending the same event again later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Kafka(e) => !matches!(
                e.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::MessageSizeTooLarge
                        | RDKafkaErrorCode::TopicAuthorizationFailed
                        | RDKafkaErrorCode::InvalidRecord
                        | RDKafkaErrorCode::InvalidTopic
                )
            ),
            _ => true,
        }
    }
}

/// One event on its way to Kafka.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// Destination topic.
    pub topic: &'a str,
    /// Key, value and headers.
    pub record: &'a KafkaRecord,
}

/// The acknowledgements of one set of events sent together (a request's, or a retry
/// round's): one slot per event, filled by librdkafka's delivery reports on the producer's
/// polling thread, and one wake-up for the waiting request when the last slot is filled,
/// instead of a channel and a wake-up per event.
struct Acks {
    slots: Box<[OnceLock<Result<Delivered, DeliveryError>>]>,
    /// Slots not yet filled.
    waiting: AtomicUsize,
    waker: AtomicWaker,
    sent_at: Instant,
    metrics: Arc<Metrics>,
    /// The queue permits of events still unacknowledged when the request stopped waiting:
    /// held until the last of them is reported (when the last ticket drops these acks), so
    /// the queue capacity bounds what librdkafka holds, not just what requests wait for.
    laggards: Mutex<Option<OwnedSemaphorePermit>>,
}

/// One event's place in its [`Acks`], handed to librdkafka with the record and given back
/// with its delivery report.
pub struct Ticket {
    acks: Arc<Acks>,
    slot: usize,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("slot", &self.slot).finish()
    }
}

impl Ticket {
    fn settle(self, result: Result<Delivered, DeliveryError>) {
        if result.is_ok() {
            self.acks
                .metrics
                .ack_latency
                .observe(self.acks.sent_at.elapsed().as_secs_f64());
        }
        // Each ticket settles its slot once: the slot cannot be full already.
        let _ = self.acks.slots[self.slot].set(result);
        if self.acks.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.acks.waker.wake();
        }
    }
}

/// The producer's librdkafka context: its statistics feed the metrics, each delivery report
/// settles its event's [`Ticket`], and its errors wake [`Pipeline::renew_on_fatal`].
#[derive(Debug)]
pub struct ProducerEvents {
    metrics: Arc<Metrics>,
    fatal: Arc<Notify>,
}

impl ClientContext for ProducerEvents {
    fn stats(&self, statistics: Statistics) {
        self.metrics.record_kafka(&statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Mostly transport errors while a broker is away, which librdkafka recovers from by
        // itself. A fatal error comes with its underlying code, not `_FATAL`: the renewal
        // task asks the producer whether it is still usable.
        tracing::warn!(%error, reason, "librdkafka");
        self.fatal.notify_one();
    }
}

impl ProducerContext for ProducerEvents {
    type DeliveryOpaque = Box<Ticket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Box<Ticket>) {
        ticket.settle(match result {
            Ok(message) => Ok(Delivered {
                partition: message.partition(),
                offset: message.offset(),
            }),
            Err((e, _message)) => Err(DeliveryError::Kafka(e.clone())),
        });
    }
}

/// The producer: its librdkafka statistics feed the metrics, its delivery reports settle
/// the events' [`Ticket`]s.
pub type Producer = ThreadedProducer<ProducerEvents>;

/// The producer in use, for those who only read metadata through it (the topic manager):
/// always the current one, also after [`Pipeline::renew_on_fatal`] replaced it.
#[derive(Clone)]
pub struct CurrentProducer(Arc<ArcSwap<Producer>>);

impl CurrentProducer {
    /// The producer in use now.
    pub fn get(&self) -> Arc<Producer> {
        self.0.load_full()
    }
}

impl std::fmt::Debug for CurrentProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurrentProducer").finish_non_exhaustive()
    }
}

/// What a new producer is made from, and the signal that one is needed.
struct Renewal {
    config: ClientConfig,
    fatal: Arc<Notify>,
    /// How long a replaced producer may take to settle what it still holds.
    flush: Duration,
}

impl Renewal {
    fn create(&self, metrics: &Arc<Metrics>) -> Result<Producer, KafkaError> {
        self.config.create_with_context(ProducerEvents {
            metrics: metrics.clone(),
            fatal: self.fatal.clone(),
        })
    }
}

/// The shared producer and its intake queue.
#[derive(Clone)]
pub struct Pipeline {
    producer: CurrentProducer,
    renewal: Arc<Renewal>,
    permits: Arc<Semaphore>,
    redelivery: Arc<Semaphore>,
    config: DeliveryConfig,
    circuit: Arc<Circuit>,
    stats: Arc<Stats>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("free_permits", &self.permits.available_permits())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// `record`'s headers as librdkafka takes them.
fn headers(record: &KafkaRecord) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (key, value) in &record.headers {
        headers = headers.insert(Header {
            key,
            value: Some(&**value),
        });
    }
    headers
}

/// `record` as the proxy's producer sends it to `topic`: key, value and headers as they are.
fn base_record<'a>(
    topic: &'a str,
    record: &'a KafkaRecord,
    ticket: Box<Ticket>,
) -> BaseRecord<'a, [u8], [u8], Box<Ticket>> {
    let mut out = BaseRecord::with_opaque_to(topic, ticket).headers(headers(record));
    if let Some(key) = &record.key {
        out = out.key(key.as_slice());
    }
    if let Some(value) = &record.value {
        out = out.payload(value.as_slice());
    }
    out
}

/// `record` for an rdkafka `FutureProducer`, with the same key, value and headers as the
/// proxy sends: the benchmark's direct producer builds its records with this, so it writes
/// the same bytes.
pub fn future_record<'a>(topic: &'a str, record: &'a KafkaRecord) -> FutureRecord<'a, [u8], [u8]> {
    let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers(record));
    if let Some(key) = &record.key {
        out = out.key(key.as_slice());
    }
    if let Some(value) = &record.value {
        out = out.payload(value.as_slice());
    }
    out
}

/// librdkafka settings for the shared producer: idempotent, `acks=all`, batching and
/// compression, with a local queue larger than the intake queue.
pub fn producer_config(kafka: &KafkaConfig, delivery: &DeliveryConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("client.id", &kafka.client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &kafka.compression)
        .set("linger.ms", kafka.linger_ms.to_string())
        .set("batch.num.messages", "10000")
        .set("batch.size", (1024 * 1024).to_string())
        .set("message.timeout.ms", kafka.message_timeout_ms.to_string())
        .set(
            "queue.buffering.max.messages",
            (delivery.queue_capacity.saturating_mul(2).max(100_000)).to_string(),
        )
        .set("queue.buffering.max.kbytes", (2 * 1024 * 1024).to_string())
        // Without this, Nagle's algorithm holds small produce requests back until the
        // broker's delayed ACK (~40 ms) and every acknowledgement waits for it.
        .set("socket.nagle.disable", "true");
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    // Applied after the operator's properties: these are the delivery contract, not tuning.
    c.set("enable.idempotence", "true").set("acks", "all");
    c
}

impl Pipeline {
    /// Creates the producer. Connecting is lazy: this succeeds with Kafka down.
    pub fn new(kafka: &KafkaConfig, delivery: &DeliveryConfig) -> Result<Self, KafkaError> {
        let metrics = Arc::new(Metrics::default());
        let mut config = producer_config(kafka, delivery);
        config.set(
            "statistics.interval.ms",
            kafka.statistics_interval_ms.to_string(),
        );
        let renewal = Renewal {
            config,
            fatal: Arc::new(Notify::new()),
            flush: Duration::from_millis(kafka.message_timeout_ms),
        };
        let producer = renewal.create(&metrics)?;
        Ok(Self {
            producer: CurrentProducer(Arc::new(ArcSwap::from_pointee(producer))),
            renewal: Arc::new(renewal),
            permits: Arc::new(Semaphore::new(delivery.queue_capacity)),
            redelivery: Arc::new(Semaphore::new(delivery.redelivery_in_flight)),
            config: delivery.clone(),
            circuit: Arc::new(Circuit::new(delivery.probe_interval_ms)),
            stats: Arc::default(),
            metrics,
        })
    }

    /// A handle that always reaches the producer in use, for metadata requests.
    pub fn current_producer(&self) -> CurrentProducer {
        self.producer.clone()
    }

    /// Replaces the producer each time librdkafka declares it unusable (a fatal error; see
    /// the module's documentation), at most once a second; returns when `shutdown` fires.
    /// Sends go to the new producer as soon as it is in place. The old one is flushed off the
    /// runtime, so the events it still has in flight get their real outcome, then dropped:
    /// what it still held fails back to its senders.
    pub async fn renew_on_fatal(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.renewal.fatal.notified() => {}
            }
            let old = self.producer.get();
            // Any error of librdkafka's wakes this task; most leave the producer usable.
            let Some((code, reason)) = old.client().fatal_error() else {
                continue;
            };
            tracing::error!(%code, reason, "the producer is unusable (fatal error); replacing it");
            match self.renewal.create(&self.metrics) {
                Ok(fresh) => {
                    self.producer.0.store(Arc::new(fresh));
                    self.metrics.producers_replaced.inc();
                    tracing::warn!("a new producer replaced the unusable one");
                    let flush = self.renewal.flush;
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = old.flush(flush) {
                            // Dropping it fails what it still holds back to the senders.
                            tracing::warn!(error = %e, "the replaced producer did not flush in time");
                        }
                        drop(old);
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, "creating a new producer failed; trying again");
                    self.renewal.fatal.notify_one();
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// What the pipeline currently believes about Kafka's health.
    pub fn circuit(&self) -> &Circuit {
        &self.circuit
    }

    /// The proxy's Prometheus metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// What happened to events so far.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Events in the intake queue (handed to the producer, not yet acknowledged).
    pub fn queue_depth(&self) -> usize {
        self.config.queue_capacity - self.permits.available_permits()
    }

    /// Sends all events at once and waits for each acknowledgement (up to the ack timeout);
    /// results in input order. Either the whole set gets room in the queue or none of it is
    /// sent.
    pub async fn deliver_all(
        &self,
        events: &[Outgoing<'_>],
    ) -> Vec<Result<Delivered, DeliveryError>> {
        self.deliver_all_within(events, Duration::from_millis(self.config.ack_timeout_ms))
            .await
    }

    /// [`Self::deliver_all`], waiting at most `ack_timeout` for the acknowledgements (a probe
    /// of an open circuit waits less than live traffic does).
    pub async fn deliver_all_within(
        &self,
        events: &[Outgoing<'_>],
        ack_timeout: Duration,
    ) -> Vec<Result<Delivered, DeliveryError>> {
        if events.is_empty() {
            return Vec::new();
        }
        let n = u32::try_from(events.len()).unwrap_or(u32::MAX);
        let wait = Duration::from_millis(self.config.enqueue_wait_ms);
        let permits =
            match tokio::time::timeout(wait, self.permits.clone().acquire_many_owned(n)).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_closed)) => return vec![Err(DeliveryError::ShuttingDown); events.len()],
                Err(_elapsed) => return vec![Err(DeliveryError::QueueFull); events.len()],
            };
        self.send_all(events, permits, ack_timeout).await
    }

    /// Sends stored events again, within the redelivery budget (apart from the intake queue,
    /// so a backlog never takes live traffic's room); waits for room rather than refusing.
    pub async fn redeliver(
        &self,
        events: &[Outgoing<'_>],
        ack_timeout: Duration,
    ) -> Vec<Result<Delivered, DeliveryError>> {
        let n = u32::try_from(events.len()).unwrap_or(u32::MAX);
        match self.redelivery.clone().acquire_many_owned(n).await {
            Ok(permits) => self.send_all(events, permits, ack_timeout).await,
            Err(_closed) => vec![Err(DeliveryError::ShuttingDown); events.len()],
        }
    }

    async fn send_all(
        &self,
        events: &[Outgoing<'_>],
        mut permits: OwnedSemaphorePermit,
        ack_timeout: Duration,
    ) -> Vec<Result<Delivered, DeliveryError>> {
        // Every send is issued before any acknowledgement is awaited, and the whole set waits
        // under one deadline for one wake-up (a timer per event cost more than the rest of
        // its wait, and a channel per event a wake-up each).
        let acks = Arc::new(Acks {
            slots: events.iter().map(|_| OnceLock::new()).collect(),
            waiting: AtomicUsize::new(events.len()),
            waker: AtomicWaker::new(),
            sent_at: Instant::now(),
            metrics: self.metrics.clone(),
            laggards: Mutex::new(None),
        });
        let producer = self.producer.0.load();
        for (slot, event) in events.iter().enumerate() {
            let ticket = Box::new(Ticket {
                acks: acks.clone(),
                slot,
            });
            if let Err((e, record)) = producer.send(base_record(event.topic, event.record, ticket))
            {
                record.delivery_opaque.settle(Err(match e {
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                        DeliveryError::QueueFull
                    }
                    other => DeliveryError::Kafka(other),
                }));
            }
        }
        drop(producer);
        let all_acknowledged = std::future::poll_fn(|cx| {
            acks.waker.register(cx.waker());
            if acks.waiting.load(Ordering::Acquire) == 0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        let _ = tokio::time::timeout(ack_timeout, all_acknowledged).await;
        let mut unreported = 0;
        let results: Vec<_> = acks
            .slots
            .iter()
            .map(|slot| {
                slot.get().cloned().unwrap_or_else(|| {
                    unreported += 1;
                    Err(DeliveryError::Timeout(ack_timeout))
                })
            })
            .collect();
        if unreported > 0 {
            *acks
                .laggards
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = permits.split(unreported);
        }
        drop(permits);
        if results.iter().any(Result::is_ok) {
            self.circuit.record_success();
        } else if results
            .iter()
            .any(|r| matches!(r, Err(e) if e.means_kafka_down()))
        {
            self.circuit.record_failure();
        }
        results
    }

    /// Refuses new events and waits (off the runtime) for the producer to flush what it holds.
    pub async fn close(&self) -> Result<(), KafkaError> {
        self.permits.close();
        self.redelivery.close();
        let producer = self.producer.get();
        let deadline = Duration::from_millis(self.config.shutdown_flush_ms);
        tokio::task::spawn_blocking(move || producer.flush(deadline))
            .await
            .unwrap_or(Err(KafkaError::Canceled))
    }
}

/// A circuit breaker on Kafka's health. After a delivery fails because Kafka is down — no
/// acknowledgement, or none it can give, as below `min.insync.replicas` while the cluster
/// still answers — new events skip the wait for an acknowledgement that will not come and go
/// straight to the store. One request per probe interval still tries Kafka, with a short
/// deadline of its own, so the probing client is not held for the whole ack timeout; any
/// success (live or from the retry scheduler) closes the circuit again.
#[derive(Debug)]
pub struct Circuit {
    open_since_ms: AtomicI64,
    last_probe_ms: AtomicI64,
    probe_interval_ms: i64,
}

/// How a request's events go while the circuit is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Kafka is up: send, and wait for the acknowledgement up to the ack timeout.
    Send,
    /// Kafka is believed down; this request tries it, within the probe's deadline.
    Probe,
    /// Kafka is believed down: do not send, store.
    Bypass,
}

impl Circuit {
    fn new(probe_interval_ms: u64) -> Self {
        Self {
            open_since_ms: AtomicI64::new(0),
            last_probe_ms: AtomicI64::new(0),
            probe_interval_ms: i64::try_from(probe_interval_ms).unwrap_or(i64::MAX),
        }
    }

    /// Kafka acknowledged something: it is up.
    pub fn record_success(&self) {
        if self.open_since_ms.swap(0, Ordering::Relaxed) != 0 {
            tracing::info!("Kafka acknowledges again; live traffic goes to Kafka");
        }
    }

    /// A delivery failed because Kafka is down.
    pub fn record_failure(&self) {
        let now = crate::store::now_ms();
        if self
            .open_since_ms
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.last_probe_ms.store(now, Ordering::Relaxed);
            tracing::warn!("Kafka is not acknowledging; new events go to the store");
        }
    }

    /// How the next request's events go: sent while Kafka is believed up; otherwise stored,
    /// but for one request per probe interval, which probes Kafka.
    pub fn route(&self) -> Route {
        if self.open_since_ms.load(Ordering::Relaxed) == 0 {
            return Route::Send;
        }
        let now = crate::store::now_ms();
        let last = self.last_probe_ms.load(Ordering::Relaxed);
        let probe = now - last >= self.probe_interval_ms
            && self
                .last_probe_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if probe { Route::Probe } else { Route::Bypass }
    }
}

#[cfg(test)]
mod circuit_tests {
    use super::*;

    #[test]
    fn an_open_circuit_stores_and_probes_once_per_interval() {
        let circuit = Circuit::new(60_000);
        assert_eq!(circuit.route(), Route::Send);
        circuit.record_failure();
        // Just opened: the failure itself was the probe of this interval.
        assert_eq!(circuit.route(), Route::Bypass);
        circuit.last_probe_ms.store(0, Ordering::Relaxed);
        assert_eq!(circuit.route(), Route::Probe, "the interval is over");
        assert_eq!(circuit.route(), Route::Bypass, "one probe per interval");
        circuit.record_success();
        assert_eq!(circuit.route(), Route::Send);
    }
}

/// A fatal error cannot be provoked on demand on a real cluster (a whole cluster restarted
/// raises one now and then; `e2e/tests/containers.rs` restarts one under load). librdkafka's
/// mock cluster answers a produce request with the error that raises it.
#[cfg(test)]
mod renewal_tests {
    use super::*;
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    fn record() -> KafkaRecord {
        KafkaRecord {
            key: Some(b"k".to_vec()),
            value: Some(b"{}".to_vec()),
            headers: Default::default(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_producer_declared_unusable_is_replaced_and_sends_go_on() {
        let cluster = MockCluster::new(3).unwrap();
        cluster.create_topic("renewal", 1, 3).unwrap();
        let kafka = KafkaConfig {
            bootstrap_servers: cluster.bootstrap_servers(),
            linger_ms: 0,
            ..KafkaConfig::default()
        };
        let pipeline = Pipeline::new(&kafka, &DeliveryConfig::default()).unwrap();
        let shutdown = CancellationToken::new();
        let renewing = tokio::spawn(pipeline.clone().renew_on_fatal(shutdown.clone()));
        let record = record();
        let send = || async {
            pipeline
                .deliver_all_within(
                    &[Outgoing {
                        topic: "renewal",
                        record: &record,
                    }],
                    Duration::from_secs(10),
                )
                .await
                .remove(0)
        };
        send().await.expect("delivered before the fault");
        let first = pipeline.current_producer().get();

        // The head-of-line request refused for a sequence the producer cannot reconcile:
        // librdkafka declares the idempotent producer unusable.
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
        );
        let failed = send().await.expect_err("refused by the broker");
        assert!(failed.is_storable(), "{failed}: goes to the store");

        let deadline = Instant::now() + Duration::from_secs(10);
        while pipeline.metrics().producers_replaced.get() == 0 {
            assert!(Instant::now() < deadline, "no new producer within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            first.client().fatal_error().is_some(),
            "the old producer was unusable"
        );
        let now = pipeline.current_producer().get();
        assert!(!Arc::ptr_eq(&first, &now));
        assert!(now.client().fatal_error().is_none());
        drop(now);
        drop(first);
        send().await.expect("delivered by the new producer");
        assert!(
            pipeline
                .metrics()
                .encode()
                .contains("courier_kafka_producers_replaced_total 1"),
        );
        shutdown.cancel();
        renewing.await.unwrap();
    }
}
