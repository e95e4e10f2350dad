//! The consumers' Prometheus metrics (names in [`super::names`]): what happened to each
//! record, the lag of each assigned partition from librdkafka's statistics, how long handlers
//! and batches take, and how the store behind a sink fails.
//!
//! One registry per [`super::Ops`] (not a process-global one), so consumers started side by
//! side in one process count apart.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rdkafka::Statistics;

use super::names;

/// What became of a record.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Its handler succeeded, or the sink's store has it.
    Handled,
    /// Written to the dead-letter topic.
    DeadLettered,
    /// Dropped as a duplicate of an event already handled (same `source` and `id`).
    Deduplicated,
    /// A record of a dead-letter topic a pattern happened to match: passed over.
    Skipped,
}

impl RecordOutcome {
    /// Its label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Handled => "handled",
            Self::DeadLettered => "dead_lettered",
            Self::Deduplicated => "deduplicated",
            Self::Skipped => "skipped",
        }
    }
}

impl EncodeLabelValue for RecordOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// How the store behind a sink failed.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum SinkErrorKind {
    /// No answer: connection refused or reset, timeout.
    Unavailable,
    /// A whole request answered with an error status that may pass (5xx, 429, 401/403).
    Status,
    /// A whole request refused as such (400, 413): it is split to find the document to blame.
    RequestRefused,
    /// An item refused for now (429, 5xx): retried.
    ItemRetried,
    /// An item refused for good (a mapping or parse failure): dead-lettered.
    ItemRejected,
    /// The store did not take the sink's preparation (an index template).
    Prepare,
}

impl SinkErrorKind {
    /// Its label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Status => "status",
            Self::RequestRefused => "request_refused",
            Self::ItemRetried => "item_retried",
            Self::ItemRejected => "item_rejected",
            Self::Prepare => "prepare",
        }
    }
}

impl EncodeLabelValue for SinkErrorKind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// Labels of [`names::RECORDS`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordLabels {
    /// The record's topic.
    pub topic: String,
    /// What became of it.
    pub outcome: RecordOutcome,
}

/// Labels of [`names::DEAD_LETTERS`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLetterLabels {
    /// The original topic.
    pub topic: String,
    /// The error's class.
    pub class: String,
}

/// A topic label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// The topic.
    pub topic: String,
}

/// Labels of [`names::LAG`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

/// Labels of [`names::SINK_ERRORS`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkErrorLabels {
    /// The sink (`elasticsearch`, `splunk`).
    pub sink: String,
    /// How it failed.
    pub kind: SinkErrorKind,
}

fn duration_histogram() -> Histogram {
    // 1 ms to ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric of one consumer.
#[derive(Debug)]
pub struct ConsumerMetrics {
    registry: Mutex<Registry>,
    records: Family<RecordLabels, Counter>,
    retries: Family<TopicLabels, Counter>,
    dead_letters: Family<DeadLetterLabels, Counter>,
    lag: Family<PartitionLabels, Gauge>,
    /// Partitions [`Self::lag`] holds, so that those no longer assigned are removed.
    lag_partitions: Mutex<HashSet<PartitionLabels>>,
    assigned: Gauge,
    handler_duration: Histogram,
    batch_duration: Histogram,
    sink_errors: Family<SinkErrorLabels, Counter>,
}

impl Default for ConsumerMetrics {
    fn default() -> Self {
        let m = Self {
            registry: Mutex::new(Registry::with_prefix("courier")),
            records: Family::default(),
            retries: Family::default(),
            dead_letters: Family::default(),
            lag: Family::default(),
            lag_partitions: Mutex::default(),
            assigned: Gauge::default(),
            handler_duration: duration_histogram(),
            batch_duration: duration_histogram(),
            sink_errors: Family::default(),
        };
        m.register();
        m
    }
}

impl ConsumerMetrics {
    fn register(&self) {
        let mut r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        r.register(
            names::RECORDS,
            "Records done with, by topic and outcome",
            self.records.clone(),
        );
        r.register(
            names::RETRIES,
            "Handler attempts that failed with a retriable error and were tried again",
            self.retries.clone(),
        );
        r.register(
            names::DEAD_LETTERS,
            "Records written to the dead-letter topic, by original topic and error class",
            self.dead_letters.clone(),
        );
        r.register(
            names::LAG,
            "Records between the committed offset and the high watermark, per assigned partition",
            self.lag.clone(),
        );
        r.register(
            names::ASSIGNED_PARTITIONS,
            "Partitions assigned to this member of the group",
            self.assigned.clone(),
        );
        r.register(
            names::HANDLER_DURATION,
            "One record through its handler, retries and dead-lettering included",
            self.handler_duration.clone(),
        );
        r.register(
            names::BATCH_DURATION,
            "One batch from being cut to being stored, refused records dead-lettered",
            self.batch_duration.clone(),
        );
        r.register(
            names::SINK_ERRORS,
            "Failures of the store behind a sink, by kind",
            self.sink_errors.clone(),
        );
    }

    /// Counts `n` records of `topic` with `outcome`.
    pub fn record(&self, topic: &str, outcome: RecordOutcome, n: u64) {
        self.records
            .get_or_create(&RecordLabels {
                topic: topic.to_owned(),
                outcome,
            })
            .inc_by(n);
    }

    /// Counts a retried handler attempt.
    pub fn retry(&self, topic: &str) {
        self.retries
            .get_or_create(&TopicLabels {
                topic: topic.to_owned(),
            })
            .inc();
    }

    /// Counts a record written to its dead-letter topic (and the record's outcome).
    pub fn dead_letter(&self, topic: &str, class: &str) {
        self.dead_letters
            .get_or_create(&DeadLetterLabels {
                topic: topic.to_owned(),
                class: class.to_owned(),
            })
            .inc();
        self.record(topic, RecordOutcome::DeadLettered, 1);
    }

    /// Observes one record's time in its handler.
    pub fn handler_took(&self, took: Duration) {
        self.handler_duration.observe(took.as_secs_f64());
    }

    /// Observes one batch's time.
    pub fn batch_took(&self, took: Duration) {
        self.batch_duration.observe(took.as_secs_f64());
    }

    /// Counts `n` failures of `sink`'s store of one kind.
    pub fn sink_error(&self, sink: &str, kind: SinkErrorKind, n: u64) {
        self.sink_errors
            .get_or_create(&SinkErrorLabels {
                sink: sink.to_owned(),
                kind,
            })
            .inc_by(n);
    }

    /// Takes in librdkafka's statistics: the lag of every assigned partition. True when some
    /// broker of the cluster is up.
    pub fn record_kafka(&self, stats: &Statistics) -> bool {
        let mut seen = HashSet::new();
        for (topic, t) in &stats.topics {
            for p in t.partitions.values() {
                // -1 is librdkafka's internal "unassigned" partition; `desired` marks the
                // partitions of this member's assignment.
                if p.partition < 0 || !p.desired {
                    continue;
                }
                let labels = PartitionLabels {
                    topic: topic.clone(),
                    partition: p.partition,
                };
                seen.insert(labels.clone());
                // -1 until the partition has a committed offset and a known high watermark.
                if p.consumer_lag >= 0 {
                    self.lag.get_or_create(&labels).set(p.consumer_lag);
                }
            }
        }
        let mut known = self
            .lag_partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for gone in known.difference(&seen) {
            self.lag.remove(gone);
        }
        self.assigned
            .set(i64::try_from(seen.len()).unwrap_or(i64::MAX));
        *known = seen;
        // librdkafka's bootstrap entries (nodeid -1) are not brokers of the cluster.
        stats
            .brokers
            .values()
            .any(|b| b.nodeid >= 0 && b.state == "UP")
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_appear_in_the_exposition_under_their_names() {
        let m = ConsumerMetrics::default();
        m.record("shop.events", RecordOutcome::Handled, 2);
        m.record("shop.events", RecordOutcome::Handled, 1);
        m.dead_letter("shop.events", "shop.InvalidOrder");
        m.retry("shop.events");
        m.handler_took(Duration::from_millis(3));
        m.batch_took(Duration::from_millis(40));
        m.sink_error("elasticsearch", SinkErrorKind::ItemRejected, 2);
        let text = m.encode();
        for line in [
            r#"courier_consumer_records_total{topic="shop.events",outcome="handled"} 3"#,
            r#"courier_consumer_records_total{topic="shop.events",outcome="dead_lettered"} 1"#,
            r#"courier_consumer_dead_letters_total{topic="shop.events",class="shop.InvalidOrder"} 1"#,
            r#"courier_consumer_retries_total{topic="shop.events"} 1"#,
            "courier_consumer_handler_duration_seconds_count 1",
            "courier_consumer_batch_duration_seconds_count 1",
            r#"courier_sink_errors_total{sink="elasticsearch",kind="item_rejected"} 2"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    fn statistics(partitions: &[(i32, bool, i64)], broker_state: &str) -> Statistics {
        use rdkafka::statistics::{Broker, Partition, Topic};
        let mut stats = Statistics::default();
        let topic = Topic {
            topic: "shop.events".into(),
            partitions: partitions
                .iter()
                .map(|&(partition, desired, consumer_lag)| {
                    let p = Partition {
                        partition,
                        desired,
                        consumer_lag,
                        ..Partition::default()
                    };
                    (partition, p)
                })
                .collect(),
            ..Topic::default()
        };
        stats.topics.insert("shop.events".into(), topic);
        for (name, nodeid, state) in [
            ("127.0.0.1:9092/bootstrap", -1, "UP"),
            ("127.0.0.1:9092/1", 1, broker_state),
        ] {
            let broker = Broker {
                name: name.into(),
                nodeid,
                state: state.into(),
                ..Broker::default()
            };
            stats.brokers.insert(name.into(), broker);
        }
        stats
    }

    #[test]
    fn lag_follows_the_assignment() {
        let m = ConsumerMetrics::default();
        assert!(m.record_kafka(&statistics(
            &[(-1, false, -1), (0, true, 5), (1, true, -1)],
            "UP"
        )));
        let text = m.encode();
        assert!(
            text.contains(r#"courier_consumer_lag_records{topic="shop.events",partition="0"} 5"#),
            "{text}"
        );
        assert!(
            !text.contains(r#"partition="1""#),
            "no committed offset yet: left out\n{text}"
        );
        assert!(!text.contains(r#"partition="-1""#), "{text}");
        assert!(
            text.contains("courier_consumer_assigned_partitions 2"),
            "{text}"
        );
        // Partition 0 revoked, and the broker down.
        assert!(!m.record_kafka(&statistics(&[(0, false, 5), (1, true, 0)], "DOWN")));
        let text = m.encode();
        assert!(
            !text.contains(r#"partition="0""#),
            "a revoked partition is removed\n{text}"
        );
        assert!(
            text.contains(r#"courier_consumer_lag_records{topic="shop.events",partition="1"} 0"#),
            "{text}"
        );
        assert!(
            text.contains("courier_consumer_assigned_partitions 1"),
            "{text}"
        );
    }
}
