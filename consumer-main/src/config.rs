//! Settings of the consumer runtime: the group's Kafka client, retries, bounds.

use std::collections::BTreeMap;
use std::time::Duration;

/// The Kafka side of a consumer: cluster, group, commit cadence.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConsumerConfig {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// `group.id`.
    pub group_id: String,
    /// Where a group without a committed offset starts (`earliest`: nothing is skipped).
    pub auto_offset_reset: String,
    /// How often stored offsets are committed (`auto.commit.interval.ms`).
    pub commit_interval_ms: u64,
    /// How often topic metadata is refreshed, so that topics created later that match a
    /// `^regex` subscription are picked up (`topic.metadata.refresh.interval.ms`).
    pub metadata_refresh_ms: u64,
    /// `session.timeout.ms`: how soon the partitions of a consumer that died are handed to
    /// the others (or to its own restart).
    pub session_timeout_ms: u64,
    /// How long a revocation waits for the records of the revoked partitions that are being
    /// processed to finish (their offsets are then committed before the partitions go, so
    /// the next owner does not redo them). Past it the group moves on and those records are
    /// redone by their next owner.
    pub revoke_drain_ms: u64,
    /// How often librdkafka's statistics (partition lag, broker state) refresh the metrics
    /// and readiness (`statistics.interval.ms`; 0 turns them off).
    pub statistics_interval_ms: u64,
    /// Suffix of dead-letter topics.
    pub dead_letter_suffix: String,
    /// Extra librdkafka properties, applied last (the offset-store settings are re-applied).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConsumerConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            group_id: "courier-consumer".into(),
            auto_offset_reset: "earliest".into(),
            commit_interval_ms: 1000,
            metadata_refresh_ms: 5000,
            session_timeout_ms: 10_000,
            revoke_drain_ms: 10_000,
            statistics_interval_ms: 5000,
            dead_letter_suffix: ".dlt".into(),
            properties: BTreeMap::new(),
        }
    }
}

/// Exponential backoff for retriable failures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; past them a retriable failure is dead-lettered.
    pub max_attempts: u32,
    /// Wait before the second attempt.
    pub initial_backoff: Duration,
    /// Growth of the wait per attempt.
    pub factor: f64,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            factor: 3.0,
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.factor.powi(attempt.saturating_sub(1).min(30) as i32);
        let ms = (self.initial_backoff.as_millis() as f64 * exp)
            .min(self.max_backoff.as_millis() as f64);
        Duration::from_millis(ms as u64)
    }
}

/// Settings of the handler runtime.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The consumer group.
    pub kafka: KafkaConsumerConfig,
    /// Retries of retriable handler errors.
    pub retry: RetryPolicy,
    /// Records queued per partition ahead of its handler; a full queue stops the intake.
    pub partition_queue: usize,
    /// Event ids remembered to drop duplicates (`source` + `id`); 0 turns dedupe off.
    pub dedupe_capacity: u64,
    /// How long shutdown waits for handlers in flight.
    pub shutdown_timeout: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            kafka: KafkaConsumerConfig::default(),
            retry: RetryPolicy::default(),
            partition_queue: 256,
            dedupe_capacity: 200_000,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            factor: 2.0,
            max_backoff: Duration::from_millis(500),
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(400));
        assert_eq!(p.backoff(4), Duration::from_millis(500));
        assert_eq!(p.backoff(60), Duration::from_millis(500));
    }
}
