//! The Kafka client settings of an at-least-once consumer, its rebalance hooks, and the
//! mapping of a received record back to a CloudEvent.

use std::sync::Mutex;

use courier_shared::binding::{KafkaRecord, from_record};
use courier_shared::envelope::{Event, EventError};
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::topic_partition_list::TopicPartitionList;

use crate::config::KafkaConsumerConfig;
use crate::handler::Origin;

/// Tracks partitions taken away by a rebalance, so their workers stop, and commits stored
/// offsets before they go.
#[derive(Debug, Default)]
pub struct GroupContext {
    revoked: Mutex<Vec<(String, i32)>>,
}

impl GroupContext {
    /// Partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // What was handled before the revocation is committed now, not redone elsewhere.
            // Async: the group does not wait on it, and librdkafka commits stored offsets
            // on unassign as well.
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
                tracing::debug!(error = %e, "no offsets to commit on revoke");
            }
            let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
            for el in tpl.elements() {
                revoked.push((el.topic().to_owned(), el.partition()));
            }
            tracing::info!(partitions = tpl.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
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

/// Creates a group consumer subscribed to `patterns` (`^regex` or literal topic names).
pub fn subscribe(config: &KafkaConsumerConfig, patterns: &[String]) -> KafkaResult<GroupConsumer> {
    let consumer: GroupConsumer =
        client_config(config).create_with_context(GroupContext::default())?;
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
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
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
