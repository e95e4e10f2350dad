//! The Kafka client settings of an at-least-once consumer, its rebalance hooks, and the
//! mapping of a received record back to a CloudEvent.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use courier_shared::binding::{KafkaRecord, from_record};
use courier_shared::envelope::{Event, EventError};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::{ClientContext, Statistics};

use crate::config::KafkaConsumerConfig;
use crate::handler::Origin;
use crate::ops::Ops;

/// A partition of a topic.
pub type PartitionKey = (String, i32);

/// The partitions whose records are being processed right now, so that a revocation can
/// wait for them, and a generation per partition, so that work queued before a revocation
/// is never started after it.
#[derive(Debug, Default)]
pub struct InFlight {
    state: Mutex<InFlightState>,
    idle: Condvar,
}

#[derive(Debug, Default)]
struct InFlightState {
    busy: HashSet<PartitionKey>,
    generation: HashMap<PartitionKey, u64>,
}

/// A record of a partition being processed; dropping it (done, or the task cancelled)
/// marks the partition idle.
#[derive(Debug)]
pub struct Processing<'a> {
    registry: &'a InFlight,
    key: PartitionKey,
}

impl Drop for Processing<'_> {
    fn drop(&mut self) {
        let mut state = self.registry.lock();
        state.busy.remove(&self.key);
        drop(state);
        self.registry.idle.notify_all();
    }
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, InFlightState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The partition's current generation (it changes on every revocation).
    pub fn generation(&self, key: &PartitionKey) -> u64 {
        self.lock().generation.get(key).copied().unwrap_or(0)
    }

    /// Starts processing a record of `key`, unless the partition was revoked since
    /// `generation` was read.
    pub fn begin(&self, key: &PartitionKey, generation: u64) -> Option<Processing<'_>> {
        let mut state = self.lock();
        if state.generation.get(key).copied().unwrap_or(0) != generation {
            return None;
        }
        state.busy.insert(key.clone());
        Some(Processing {
            registry: self,
            key: key.clone(),
        })
    }

    /// Revokes `keys` (no record queued before is started any more) and waits up to
    /// `within` for the records being processed to finish. False when some did not.
    pub fn revoke_and_wait(&self, keys: &[PartitionKey], within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut state = self.lock();
        for key in keys {
            *state.generation.entry(key.clone()).or_insert(0) += 1;
        }
        loop {
            if !keys.iter().any(|k| state.busy.contains(k)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .idle
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Tracks partitions taken away by a rebalance, so their workers stop; before they go, it
/// waits (bounded) for their records in flight and commits the stored offsets. It reports
/// assignments, partition lag and broker state into `ops`.
#[derive(Debug)]
pub struct GroupContext {
    revoked: Mutex<Vec<PartitionKey>>,
    in_flight: Arc<InFlight>,
    drain: Duration,
    ops: Ops,
}

impl GroupContext {
    /// A context whose revocations wait up to `drain` for the records in flight.
    pub fn new(drain: Duration, ops: Ops) -> Self {
        Self {
            revoked: Mutex::default(),
            in_flight: Arc::default(),
            drain,
            ops,
        }
    }

    /// Partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<PartitionKey> {
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The records being processed.
    pub fn in_flight(&self) -> &Arc<InFlight> {
        &self.in_flight
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        let up = self.ops.metrics().record_kafka(&statistics);
        self.ops.health().set_brokers_up(up);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let keys: Vec<PartitionKey> = tpl
                .elements()
                .iter()
                .map(|el| (el.topic().to_owned(), el.partition()))
                .collect();
            // What is being handled finishes here and is committed now, so the next owner
            // neither redoes it nor runs it at the same time as this one.
            // The callback runs on the thread polling the consumer, which may be a worker of
            // a multi-threaded runtime holding the very handler tasks waited for: hand its
            // queued tasks to another worker while blocking.
            let wait = || self.in_flight.revoke_and_wait(&keys, self.drain);
            let multi_thread = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            let drained = if multi_thread {
                tokio::task::block_in_place(wait)
            } else {
                wait()
            };
            if !drained {
                tracing::warn!(
                    drain_ms = self.drain.as_millis() as u64,
                    "records of revoked partitions still in flight; their next owner redoes them"
                );
            }
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(error = %e, "no offsets to commit on revoke");
            }
            self.revoked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(keys);
            tracing::info!(partitions = tpl.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // An empty assignment too: this member is in the group (the partitions are fewer
            // than the members).
            self.ops.health().set_assigned();
            tracing::info!(partitions = tpl.count(), "partitions assigned");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!(error = %e, "offset commit");
        }
    }
}

/// The consumer type every Courier consumer uses.
pub type GroupConsumer = StreamConsumer<GroupContext>;

/// The librdkafka settings of an at-least-once consumer: offsets stored by the application
/// after processing, committed in the background.
pub fn client_config(config: &KafkaConsumerConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap_servers)
        .set("group.id", &config.group_id)
        .set("auto.offset.reset", &config.auto_offset_reset)
        .set(
            "auto.commit.interval.ms",
            config.commit_interval_ms.to_string(),
        )
        .set(
            "topic.metadata.refresh.interval.ms",
            config.metadata_refresh_ms.to_string(),
        )
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set(
            "statistics.interval.ms",
            config.statistics_interval_ms.to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (config.session_timeout_ms / 4).max(100).to_string(),
        )
        .set_log_level(RDKafkaLogLevel::Warning);
    for (k, v) in &config.properties {
        c.set(k, v);
    }
    // The at-least-once contract: never store an offset before the record was processed.
    c.set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false");
    c
}

/// Creates a group consumer subscribed to `patterns` (`^regex` or literal topic names),
/// reporting into `ops`.
pub fn subscribe(
    config: &KafkaConsumerConfig,
    patterns: &[String],
    ops: &Ops,
) -> KafkaResult<GroupConsumer> {
    let context = GroupContext::new(Duration::from_millis(config.revoke_drain_ms), ops.clone());
    let consumer: GroupConsumer = client_config(config).create_with_context(context)?;
    let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
    consumer.subscribe(&refs)?;
    Ok(consumer)
}

/// Where `m` came from.
pub fn origin(m: &OwnedMessage) -> Origin {
    Origin {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis(),
    }
}

/// Reads the CloudEvent a record carries (Kafka binding, binary mode).
pub fn event_of(m: &OwnedMessage) -> Result<Event, EventError> {
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h.key.to_owned().into(),
                        h.value.unwrap_or_default().to_vec().into(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    from_record(&KafkaRecord {
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers,
    })
}

/// Stores the position after the record at `offset` (librdkafka's `rd_kafka_offset_store`
/// adds the 1 itself); a partition revoked meanwhile refuses, and its new owner handles the
/// record again.
pub fn store_after<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    topic: &str,
    partition: i32,
    offset: i64,
) {
    if let Err(e) = consumer.store_offset(topic, partition, offset) {
        tracing::debug!(topic, partition, offset, error = %e, "offset not stored (partition revoked?)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> PartitionKey {
        ("t".to_owned(), p)
    }

    #[test]
    fn a_revocation_waits_for_the_record_in_flight_and_stops_queued_work() {
        let registry = Arc::new(InFlight::default());
        let generation = registry.generation(&key(0));
        let processing = registry.begin(&key(0), generation).unwrap();
        // Another partition is not waited for.
        assert!(registry.revoke_and_wait(&[key(1)], Duration::ZERO));
        // The record in flight holds the revocation back until it is done…
        assert!(!registry.revoke_and_wait(&[key(0)], Duration::from_millis(20)));
        let r = registry.clone();
        let waiter =
            std::thread::spawn(move || r.revoke_and_wait(&[key(0)], Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(50));
        drop(processing);
        assert!(waiter.join().unwrap());
        // …and work queued before it never starts; work of the next assignment does.
        assert!(registry.begin(&key(0), generation).is_none());
        let next = registry.generation(&key(0));
        assert!(registry.begin(&key(0), next).is_some());
    }
}
