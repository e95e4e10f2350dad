//! The client a service holds: a bounded buffer in front of a batching task that sends
//! batches to the proxies with a bounded number of requests in flight.
//!
//! The bound counts every event the client holds — queued, in a forming batch, in flight or
//! waiting for a retry — so memory stays bounded whatever the proxies do. A slot is freed when
//! the event has a final outcome.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::config::{BuildError, ClientBuilder, FullBuffer};
use crate::error::{Delivery, Error};
use crate::event::Event;
use crate::transport::Transport;

/// One buffered event, serialised.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) id: String,
    pub(crate) json: Vec<u8>,
    pub(crate) waiter: Option<oneshot::Sender<Result<Delivery, Error>>>,
}

enum Msg {
    Event(Pending),
    /// Send what is batched now; answer with the number of batches dispatched so far.
    Flush(oneshot::Sender<u64>),
}

/// A monotonic counter.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    published: Counter,
    delivered: Counter,
    stored: Counter,
    refused: Counter,
    undelivered: Counter,
    pub(crate) resent: Counter,
    buffer_full: Counter,
}

/// What a client has done since it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Events taken into the buffer.
    pub published: u64,
    /// Events acknowledged by Kafka (HTTP 200 for the event).
    pub delivered: u64,
    /// Events committed to a proxy's store (HTTP 202 for the event).
    pub stored: u64,
    /// Events refused for good (invalid; never retried).
    pub refused: u64,
    /// Events no proxy accepted within the retry deadline.
    pub undelivered: u64,
    /// Event sends repeated after a failure (same ids; the proxy dedupes them).
    pub resent: u64,
    /// Publishes turned away because the buffer was full.
    pub buffer_full: u64,
}

impl Stats {
    /// Events with a final outcome.
    pub fn finished(&self) -> u64 {
        self.delivered + self.stored + self.refused + self.undelivered
    }
}

/// Batches in flight, so that `flush` can wait for the ones dispatched before it.
#[derive(Debug)]
struct Tracker {
    open: Mutex<BTreeSet<u64>>,
    /// The lowest batch number not yet finished (`u64::MAX` when none is open).
    lowest_open: watch::Sender<u64>,
}

impl Tracker {
    fn open(&self, batch: u64) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.insert(batch);
        let low = open.first().copied().unwrap_or(u64::MAX);
        self.lowest_open.send_replace(low);
    }

    fn close(&self, batch: u64) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.remove(&batch);
        let low = open.first().copied().unwrap_or(u64::MAX);
        self.lowest_open.send_replace(low);
    }
}

/// State shared by the client handles, the batcher and the batch tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) stats: Counters,
    permits: Semaphore,
    tracker: Tracker,
}

impl Shared {
    /// Reports an event the proxy accepted; the delivery result is only built for a waiter.
    pub(crate) fn accept(&self, p: Pending, status: crate::DeliveryStatus, topic: Option<String>) {
        if p.waiter.is_none() {
            match status {
                crate::DeliveryStatus::Delivered { .. } => self.stats.delivered.add(1),
                crate::DeliveryStatus::Stored => self.stats.stored.add(1),
            }
            self.permits.add_permits(1);
            return;
        }
        let delivery = Delivery {
            id: p.id.clone(),
            topic: topic.unwrap_or_default(),
            status,
        };
        self.complete(p, Ok(delivery));
    }

    /// Reports an event's final outcome and frees its slot in the buffer.
    pub(crate) fn complete(&self, p: Pending, outcome: Result<Delivery, Error>) {
        match &outcome {
            Ok(d) => match d.status {
                crate::DeliveryStatus::Delivered { .. } => self.stats.delivered.add(1),
                crate::DeliveryStatus::Stored => self.stats.stored.add(1),
            },
            Err(Error::Undelivered { .. }) => self.stats.undelivered.add(1),
            Err(e) => {
                self.stats.refused.add(1);
                if p.waiter.is_none() {
                    tracing::warn!(event_id = %p.id, error = %e, "event refused by the proxy");
                }
            }
        }
        if let Some(waiter) = p.waiter {
            let _ = waiter.send(outcome);
        }
        self.permits.add_permits(1);
    }
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    capacity: usize,
    on_full: FullBuffer,
    source: String,
    closed: AtomicBool,
    lowest_open: watch::Receiver<u64>,
}

/// A handle to the client: cheap to clone, one per service is enough.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use courier::{Client, Event};
///
/// let client = Client::builder("billing")
///     .proxy("http://courier-1:8080")
///     .proxy("http://courier-2:8080")
///     .build()?;
/// client.publish(Event::new("invoice.paid").data(&serde_json::json!({"invoice": 42}))).await?;
/// let delivery = client
///     .publish_and_wait(Event::error("payment-declined", "card expired"))
///     .await?;
/// println!("in {} as {:?}", delivery.topic, delivery.status);
/// client.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// Settings for a client of `service`: events get the source `/{service}` unless they
    /// set their own, and so go to `{service}.events`, `{service}.logs` and
    /// `{service}.error.{errortype}`.
    pub fn builder(service: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(service)
    }

    pub(crate) fn from_builder(b: ClientBuilder) -> Result<Self, BuildError> {
        b.validate()?;
        let source = b
            .source
            .clone()
            .unwrap_or_else(|| format!("/{}", b.service));
        courier_shared::topic::service_of(&source)
            .map_err(|_| BuildError::BadService(source.clone()))?;
        for url in &b.urls {
            let parsed = url::Url::parse(url).map_err(|e| BuildError::BadUrl {
                url: url.clone(),
                reason: e.to_string(),
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(BuildError::BadUrl {
                    url: url.clone(),
                    reason: "the scheme must be http or https".into(),
                });
            }
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = &b.api_key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.0))
                .map_err(|e| BuildError::Invalid(format!("api_key: {e}")))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(b.request_timeout)
            .pool_max_idle_per_host(b.max_in_flight)
            .user_agent(concat!("courier-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BuildError::Http(e.to_string()))?;
        let transport = Arc::new(Transport::new(
            http,
            &b.urls,
            b.backoff_initial,
            b.backoff_max,
            b.retry_for,
        ));
        let (lowest_open, lowest_rx) = watch::channel(u64::MAX);
        let shared = Arc::new(Shared {
            stats: Counters::default(),
            permits: Semaphore::new(b.buffer_capacity),
            tracker: Tracker {
                open: Mutex::new(BTreeSet::new()),
                lowest_open,
            },
        });
        // Room for every buffered event plus flush requests; the permits are the real bound.
        let (tx, rx) = mpsc::channel(b.buffer_capacity + 64);
        let batcher = Batcher {
            rx,
            shared: shared.clone(),
            transport,
            in_flight: Arc::new(Semaphore::new(b.max_in_flight)),
            max_events: b.max_batch_events,
            max_bytes: b.max_batch_bytes,
            linger: b.linger,
            next_batch: 0,
        };
        runtime.spawn(batcher.run());
        Ok(Self {
            inner: Arc::new(Inner {
                tx,
                shared,
                capacity: b.buffer_capacity,
                on_full: b.on_full,
                source,
                closed: AtomicBool::new(false),
                lowest_open: lowest_rx,
            }),
        })
    }

    /// The default source of this client's events.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Buffers `event` for delivery and returns; it is sent in the next batch. When the buffer
    /// is full it waits for room or fails with [`Error::BufferFull`], as configured with
    /// [`ClientBuilder::on_full`]. The client sets `id` (UUIDv7), `time` and `source` when the
    /// event has none.
    pub async fn publish(&self, event: Event) -> Result<(), Error> {
        self.enqueue(event, None, self.inner.on_full).await
    }

    /// Buffers `event` without ever waiting: [`Error::BufferFull`] when there is no room,
    /// whatever [`ClientBuilder::on_full`] says. Usable from synchronous code.
    pub fn try_publish(&self, event: Event) -> Result<(), Error> {
        let (permit, pending) = self.prepare(event, None)?;
        if !permit {
            return Err(self.full());
        }
        match self.inner.tx.try_send(Msg::Event(pending)) {
            Ok(()) => {
                self.inner.shared.stats.published.add(1);
                Ok(())
            }
            Err(e) => {
                self.inner.shared.permits.add_permits(1);
                Err(match e {
                    mpsc::error::TrySendError::Full(_) => self.full(),
                    mpsc::error::TrySendError::Closed(_) => Error::Closed,
                })
            }
        }
    }

    /// Publishes `event` and waits for its outcome: delivered to Kafka (partition and offset)
    /// or stored by the proxy, or why not.
    pub async fn publish_and_wait(&self, event: Event) -> Result<Delivery, Error> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(event, Some(tx), self.inner.on_full).await?;
        rx.await.unwrap_or_else(|_| {
            Err(Error::Undelivered {
                last: "the client stopped before the event had an outcome".into(),
            })
        })
    }

    /// Sends what is buffered now and waits until every event published before the call has
    /// its outcome (delivered, stored, refused, or out of retry time).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Msg::Flush(tx)).await.is_err() {
            return;
        }
        let Ok(dispatched) = rx.await else { return };
        let mut lowest = self.inner.lowest_open.clone();
        let _ = lowest.wait_for(|low| *low >= dispatched).await;
    }

    /// Flushes like [`Client::flush`], waiting at most `timeout`; true when everything was
    /// finished in time.
    pub async fn flush_timeout(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.flush()).await.is_ok()
    }

    /// Stops accepting events ([`Error::Closed`] from then on, also for publishers waiting for
    /// room) and delivers everything buffered, as [`Client::flush`] does.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.shared.permits.close();
        self.flush().await;
    }

    /// Counters since the client was built.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.shared.stats;
        Stats {
            published: c.published.get(),
            delivered: c.delivered.get(),
            stored: c.stored.get(),
            refused: c.refused.get(),
            undelivered: c.undelivered.get(),
            resent: c.resent.get(),
            buffer_full: c.buffer_full.get(),
        }
    }

    /// Events held now (buffered, batched, in flight or waiting for a retry).
    pub fn buffered(&self) -> usize {
        self.inner.capacity - self.inner.shared.permits.available_permits()
    }

    async fn enqueue(
        &self,
        event: Event,
        waiter: Option<oneshot::Sender<Result<Delivery, Error>>>,
        policy: FullBuffer,
    ) -> Result<(), Error> {
        let (permit, pending) = self.prepare(event, waiter)?;
        if !permit {
            if policy == FullBuffer::Error {
                return Err(self.full());
            }
            // Slots free up as events finish, within the retry deadline; `shutdown` closes
            // the semaphore and so ends the wait.
            match self.inner.shared.permits.acquire().await {
                Ok(p) => p.forget(),
                Err(_) => return Err(Error::Closed),
            }
        }
        self.send(pending).await
    }

    async fn send(&self, pending: Pending) -> Result<(), Error> {
        match self.inner.tx.send(Msg::Event(pending)).await {
            Ok(()) => {
                self.inner.shared.stats.published.add(1);
                Ok(())
            }
            Err(_) => {
                self.inner.shared.permits.add_permits(1);
                Err(Error::Closed)
            }
        }
    }

    /// Checks and serialises the event and takes a slot if one is free (the bool).
    fn prepare(
        &self,
        event: Event,
        waiter: Option<oneshot::Sender<Result<Delivery, Error>>>,
    ) -> Result<(bool, Pending), Error> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let (id, json) = event.into_json(&self.inner.source)?;
        let permit = match self.inner.shared.permits.try_acquire() {
            Ok(p) => {
                p.forget();
                true
            }
            Err(_) => false,
        };
        Ok((permit, Pending { id, json, waiter }))
    }

    fn full(&self) -> Error {
        self.inner.shared.stats.buffer_full.add(1);
        Error::BufferFull {
            capacity: self.inner.capacity,
        }
    }
}

/// Turns the buffer into batches and hands each to a task of its own.
struct Batcher {
    rx: mpsc::Receiver<Msg>,
    shared: Arc<Shared>,
    transport: Arc<Transport>,
    in_flight: Arc<Semaphore>,
    max_events: usize,
    max_bytes: usize,
    linger: Duration,
    next_batch: u64,
}

impl Batcher {
    async fn run(mut self) {
        let mut batch: Vec<Pending> = Vec::new();
        let mut bytes = 0;
        let mut incoming: Vec<Msg> = Vec::with_capacity(256);
        // One timer, re-armed for each new batch: the linger of its first event.
        let linger = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(linger);
        let mut armed = false;
        loop {
            tokio::select! {
                biased;
                received = self.rx.recv_many(&mut incoming, 256) => {
                    if received == 0 {
                        // Every handle is gone: send what is left, then stop.
                        self.dispatch(&mut batch, &mut bytes).await;
                        return;
                    }
                    for msg in incoming.drain(..) {
                        match msg {
                            Msg::Event(p) => {
                                if !batch.is_empty() && bytes + p.json.len() + 1 > self.max_bytes {
                                    self.dispatch(&mut batch, &mut bytes).await;
                                    armed = false;
                                }
                                bytes += p.json.len() + 1;
                                batch.push(p);
                                if batch.len() >= self.max_events || bytes >= self.max_bytes {
                                    self.dispatch(&mut batch, &mut bytes).await;
                                    armed = false;
                                } else if !armed {
                                    linger.as_mut().reset(Instant::now() + self.linger);
                                    armed = true;
                                }
                            }
                            Msg::Flush(reply) => {
                                self.dispatch(&mut batch, &mut bytes).await;
                                armed = false;
                                let _ = reply.send(self.next_batch);
                            }
                        }
                    }
                }
                () = &mut linger, if armed => {
                    self.dispatch(&mut batch, &mut bytes).await;
                    armed = false;
                }
            }
        }
    }

    /// Waits for a request slot, then sends the batch on a task of its own.
    async fn dispatch(&mut self, batch: &mut Vec<Pending>, bytes: &mut usize) {
        if batch.is_empty() {
            return;
        }
        let events = std::mem::take(batch);
        *bytes = 0;
        let number = self.next_batch;
        self.next_batch += 1;
        self.shared.tracker.open(number);
        // The semaphore is never closed; without a slot the batch is sent all the same.
        let slot = self.in_flight.clone().acquire_owned().await.ok();
        let (shared, transport) = (self.shared.clone(), self.transport.clone());
        tokio::spawn(async move {
            transport.deliver(&shared, events).await;
            shared.tracker.close(number);
            drop(slot);
        });
    }
}
