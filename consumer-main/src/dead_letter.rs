//! Dead-letter topics: a record that cannot be processed is written, unchanged, to
//! `<topic>.dlt` with headers saying why and where it came from, after Spring Kafka's
//! `DeadLetterPublishingRecoverer` (`kafka_dlt-*`; partition as a 4-byte big-endian int,
//! offset and timestamp as 8-byte big-endian longs, the rest UTF-8). It is produced with
//! `acks=all` and the write is awaited before the original offset may be stored.
//!
//! The producer is idempotent. One that librdkafka declares unusable (a fatal error, as after
//! a whole cluster was restarted) refuses every later write, so the publisher replaces it
//! with a new one and the write is tried again with the usual backoff.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

use crate::config::{KafkaConsumerConfig, RetryPolicy};

/// Header: the error's class.
pub const EXCEPTION_FQCN: &str = "kafka_dlt-exception-fqcn";
/// Header: the error's message.
pub const EXCEPTION_MESSAGE: &str = "kafka_dlt-exception-message";
/// Header: the original topic.
pub const ORIGINAL_TOPIC: &str = "kafka_dlt-original-topic";
/// Header: the original partition (4-byte big-endian int).
pub const ORIGINAL_PARTITION: &str = "kafka_dlt-original-partition";
/// Header: the original offset (8-byte big-endian long).
pub const ORIGINAL_OFFSET: &str = "kafka_dlt-original-offset";
/// Header: the consumer group that gave up.
pub const ORIGINAL_CONSUMER_GROUP: &str = "kafka_dlt-original-consumer-group";
/// Header: the original record timestamp (8-byte big-endian long, ms).
pub const ORIGINAL_TIMESTAMP: &str = "kafka_dlt-original-timestamp";
/// Header: the original timestamp's type (`CreateTime`, `LogAppendTime`).
pub const ORIGINAL_TIMESTAMP_TYPE: &str = "kafka_dlt-original-timestamp-type";

/// Why a record is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterReason {
    /// The error's class (`kafka_dlt-exception-fqcn`).
    pub class: String,
    /// The error's message.
    pub message: String,
}

/// The headers of a dead-lettered record: the original ones (earlier `kafka_dlt-*` ones
/// dropped), then the reason and the origin.
pub fn dead_letter_headers(
    original: &[(String, Vec<u8>)],
    reason: &DeadLetterReason,
    topic: &str,
    partition: i32,
    offset: i64,
    group: &str,
    timestamp: Option<(i64, &'static str)>,
) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = original
        .iter()
        .filter(|(k, _)| !k.starts_with("kafka_dlt-"))
        .cloned()
        .collect();
    out.push((EXCEPTION_FQCN.into(), reason.class.as_bytes().to_vec()));
    out.push((EXCEPTION_MESSAGE.into(), reason.message.as_bytes().to_vec()));
    out.push((ORIGINAL_TOPIC.into(), topic.as_bytes().to_vec()));
    out.push((ORIGINAL_PARTITION.into(), partition.to_be_bytes().to_vec()));
    out.push((ORIGINAL_OFFSET.into(), offset.to_be_bytes().to_vec()));
    out.push((ORIGINAL_CONSUMER_GROUP.into(), group.as_bytes().to_vec()));
    if let Some((ts, kind)) = timestamp {
        out.push((ORIGINAL_TIMESTAMP.into(), ts.to_be_bytes().to_vec()));
        out.push((ORIGINAL_TIMESTAMP_TYPE.into(), kind.as_bytes().to_vec()));
    }
    out
}

/// Writes records to dead-letter topics, creating each topic on first use (partitions as
/// the original, replication factor min(3, brokers), `min.insync.replicas` 2 at RF 3).
pub struct DeadLetterPublisher {
    producer: ArcSwap<FutureProducer>,
    /// What a replacement producer is made from.
    producer_config: ClientConfig,
    admin: AdminClient<DefaultClientContext>,
    group: String,
    suffix: String,
    known: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for DeadLetterPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterPublisher")
            .field("group", &self.group)
            .field("suffix", &self.suffix)
            .finish_non_exhaustive()
    }
}

const SEND_TIMEOUT: Duration = Duration::from_secs(30);

impl DeadLetterPublisher {
    /// A publisher for the group of `config`.
    pub fn new(config: &KafkaConsumerConfig) -> Result<Self, KafkaError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &config.bootstrap_servers);
        // The group's own connection settings (TLS, SASL, …): the dead-letter topics live on
        // the same cluster.
        for (k, v) in &config.properties {
            c.set(k, v);
        }
        let admin = c.create()?;
        let mut producer_config = c.clone();
        producer_config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", SEND_TIMEOUT.as_millis().to_string());
        Ok(Self {
            producer: ArcSwap::from_pointee(producer_config.create()?),
            producer_config,
            admin,
            group: config.group_id.clone(),
            suffix: config.dead_letter_suffix.clone(),
            known: Mutex::new(HashSet::new()),
        })
    }

    /// The dead-letter topic of `topic`.
    pub fn topic_for(&self, topic: &str) -> String {
        format!("{topic}{}", self.suffix)
    }

    /// True for a dead-letter topic (never handled by a pattern subscription: a pattern
    /// like `^billing\..*` matches `billing.events.dlt` too).
    pub fn is_dead_letter_topic(&self, topic: &str) -> bool {
        topic.ends_with(&self.suffix)
    }

    async fn ensure_topic(&self, original: &str, dlt: &str) -> Result<(), KafkaError> {
        if self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(dlt)
        {
            return Ok(());
        }
        let producer = self.producer.load_full();
        let (orig, dl) = (original.to_owned(), dlt.to_owned());
        // Metadata requests block: off the async threads.
        let (partitions, brokers, exists) = tokio::task::spawn_blocking(move || {
            let client = producer.client();
            let md = client.fetch_metadata(None, Duration::from_secs(10))?;
            let partitions = md
                .topics()
                .iter()
                .find(|t| t.name() == orig)
                .map_or(1, |t| t.partitions().len().max(1));
            let exists = md
                .topics()
                .iter()
                .any(|t| t.name() == dl && t.error().is_none());
            Ok::<_, KafkaError>((partitions, md.brokers().len(), exists))
        })
        .await
        .map_err(|_| KafkaError::Canceled)??;
        if !exists {
            let rf = brokers.clamp(1, 3) as i32;
            let mut topic = NewTopic::new(dlt, partitions as i32, TopicReplication::Fixed(rf));
            if rf >= 3 {
                topic = topic.set("min.insync.replicas", "2");
            }
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(15)));
            for result in self.admin.create_topics([&topic], &opts).await? {
                match result {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((_, code)) => return Err(KafkaError::AdminOp(code)),
                }
            }
            tracing::info!(
                topic = dlt,
                partitions,
                replication_factor = rf,
                "dead-letter topic created"
            );
        }
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dlt.to_owned());
        Ok(())
    }

    /// Writes `record` to its dead-letter topic once, awaiting the acknowledgement.
    pub async fn publish_once(
        &self,
        record: &OwnedMessage,
        reason: &DeadLetterReason,
    ) -> Result<(), KafkaError> {
        let dlt = self.topic_for(record.topic());
        self.ensure_topic(record.topic(), &dlt).await?;
        let original: Vec<(String, Vec<u8>)> = record
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        let timestamp = match record.timestamp() {
            rdkafka::Timestamp::CreateTime(t) => Some((t, "CreateTime")),
            rdkafka::Timestamp::LogAppendTime(t) => Some((t, "LogAppendTime")),
            rdkafka::Timestamp::NotAvailable => None,
        };
        let headers = dead_letter_headers(
            &original,
            reason,
            record.topic(),
            record.partition(),
            record.offset(),
            &self.group,
            timestamp,
        );
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in &headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&dlt).headers(owned);
        if let Some(k) = record.key() {
            out = out.key(k);
        }
        if let Some(v) = record.payload() {
            out = out.payload(v);
        }
        let producer = self.producer.load_full();
        let sent = producer
            .send(out, Timeout::After(SEND_TIMEOUT))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e);
        if sent.is_err() {
            self.replace_if_unusable(producer);
        }
        sent
    }

    /// Puts a new producer in place of `used` if librdkafka declared it unusable (and no
    /// other write replaced it already). The old one is dropped off the async threads:
    /// dropping a producer joins its polling thread and flushes.
    fn replace_if_unusable(&self, used: Arc<FutureProducer>) {
        let Some((code, reason)) = used.client().fatal_error() else {
            return;
        };
        match self.producer_config.create::<FutureProducer>() {
            Ok(fresh) => {
                let before = self.producer.compare_and_swap(&used, Arc::new(fresh));
                if Arc::ptr_eq(&before, &used) {
                    tracing::warn!(%code, reason, "a new dead-letter producer replaced the unusable one");
                }
                drop(before);
                tokio::task::spawn_blocking(move || drop(used));
            }
            Err(e) => tracing::error!(error = %e, "creating a new dead-letter producer failed"),
        }
    }

    /// Writes `record` to its dead-letter topic, trying again with backoff until it is
    /// acknowledged; false when `cancel` fired first (the offset must then not be stored).
    pub async fn publish(
        &self,
        record: &OwnedMessage,
        reason: &DeadLetterReason,
        backoff: &RetryPolicy,
        cancel: &CancellationToken,
    ) -> bool {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.publish_once(record, reason).await {
                Ok(()) => {
                    tracing::warn!(
                        topic = record.topic(), partition = record.partition(), offset = record.offset(),
                        class = %reason.class, message = %reason.message, "record dead-lettered"
                    );
                    return true;
                }
                Err(e) => {
                    tracing::error!(topic = record.topic(), attempt, error = %e, "dead-letter write failed; retrying");
                    if !crate::retry::sleep_unless_cancelled(backoff.backoff(attempt), cancel).await
                    {
                        return false;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_the_spring_convention() {
        let original = vec![
            ("ce_id".to_owned(), b"42".to_vec()),
            (EXCEPTION_FQCN.to_owned(), b"old".to_vec()),
        ];
        let reason = DeadLetterReason {
            class: "x.Boom".into(),
            message: "it broke".into(),
        };
        let h = dead_letter_headers(
            &original,
            &reason,
            "billing.events",
            3,
            77,
            "g",
            Some((1_700_000_000_000, "CreateTime")),
        );
        let get = |name: &str| {
            h.iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("ce_id"), vec![b"42".to_vec()]);
        assert_eq!(get(EXCEPTION_FQCN), vec![b"x.Boom".to_vec()]);
        assert_eq!(get(EXCEPTION_MESSAGE), vec![b"it broke".to_vec()]);
        assert_eq!(get(ORIGINAL_TOPIC), vec![b"billing.events".to_vec()]);
        assert_eq!(get(ORIGINAL_PARTITION), vec![vec![0, 0, 0, 3]]);
        assert_eq!(get(ORIGINAL_OFFSET), vec![77i64.to_be_bytes().to_vec()]);
        assert_eq!(get(ORIGINAL_CONSUMER_GROUP), vec![b"g".to_vec()]);
        assert_eq!(
            get(ORIGINAL_TIMESTAMP),
            vec![1_700_000_000_000i64.to_be_bytes().to_vec()]
        );
        assert_eq!(get(ORIGINAL_TIMESTAMP_TYPE), vec![b"CreateTime".to_vec()]);
    }

    /// A fatal error cannot be provoked on demand on a real cluster; librdkafka's mock
    /// cluster answers a produce request with the error that raises one.
    #[tokio::test]
    async fn an_unusable_producer_is_replaced_and_the_next_write_goes_through() {
        use rdkafka::mocking::MockCluster;
        use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

        let cluster = MockCluster::new(3).unwrap();
        cluster.create_topic("billing.events", 1, 3).unwrap();
        cluster.create_topic("billing.events.dlt", 1, 3).unwrap();
        let config = KafkaConsumerConfig {
            bootstrap_servers: cluster.bootstrap_servers(),
            ..KafkaConsumerConfig::default()
        };
        let publisher = DeadLetterPublisher::new(&config).unwrap();
        let record = OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(b"k".to_vec()),
            "billing.events".into(),
            rdkafka::Timestamp::NotAvailable,
            0,
            7,
            None,
        );
        let reason = DeadLetterReason {
            class: "x.Boom".into(),
            message: "it broke".into(),
        };
        publisher.publish_once(&record, &reason).await.unwrap();
        let first = publisher.producer.load_full();
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
        );
        publisher
            .publish_once(&record, &reason)
            .await
            .expect_err("refused by the broker");
        assert!(first.client().fatal_error().is_some(), "unusable");
        let now = publisher.producer.load_full();
        assert!(!Arc::ptr_eq(&first, &now), "replaced");
        assert!(now.client().fatal_error().is_none());
        publisher
            .publish_once(&record, &reason)
            .await
            .expect("written by the new producer");
    }
}
