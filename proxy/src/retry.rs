//! The retry scheduler: re-sends stored events to Kafka with exponential backoff and jitter,
//! deletes what Kafka acknowledged, and parks what ran out of attempts or was refused for good.
//! Parked events wait for an operator (replay or discard); nothing is ever dropped.
//!
//! Redelivery has its own in-flight budget, apart from the intake queue, so draining a large
//! backlog never starves live traffic of queue room.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::DlqConfig;
use crate::delivery::{Outgoing, Pipeline};
use crate::metrics::Metrics;
use crate::store::{Entry, Failure, Store, StoreError, now_ms};
use crate::topics::{Creation, TopicManager};

/// When to try an event again after the scheduler's `retries` failed attempts, or `None` to
/// park it. The live attempt that stored the event is not one of them: the event is tried
/// `max_attempts` times after that first failure (the decision record's "retry 5 times"), the
/// n-th retry `backoff_initial_ms × backoff_factor^(n-1)` after the one before (the first one
/// `backoff_initial_ms` after it was stored), each delay capped at `backoff_max_ms`. With the
/// defaults (5; 1 s × 4, at most 5 min) the retries come 1, 5, 21, 85 and 341 s after the
/// event was stored, and it is parked when the fifth fails: about six minutes of outage.
pub fn next_attempt(config: &DlqConfig, retries: u32, now: i64, jitter: f64) -> Option<i64> {
    if retries >= config.max_attempts {
        return None;
    }
    let factor = config
        .backoff_factor
        .max(1.0)
        .powi(i32::try_from(retries).unwrap_or(i32::MAX));
    let base = (config.backoff_initial_ms as f64 * factor).min(config.backoff_max_ms as f64);
    // ±20 % so that events stored together do not all retry in the same instant.
    let delay = base * (0.8 + 0.4 * jitter.clamp(0.0, 1.0));
    Some(now + delay as i64)
}

/// Rounds the scheduler keeps in flight at once while it drains a backlog.
pub const ROUNDS_IN_FLIGHT: usize = 3;

/// The scheduler's loop; returns when `shutdown` fires.
#[derive(Debug)]
pub struct RetryScheduler {
    store: Store,
    pipeline: Pipeline,
    topics: Arc<TopicManager>,
    config: DlqConfig,
    wake: Arc<Notify>,
}

impl RetryScheduler {
    /// A scheduler over `store`, sending through `pipeline`'s producer.
    pub fn new(
        store: Store,
        pipeline: Pipeline,
        topics: Arc<TopicManager>,
        config: DlqConfig,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            pipeline,
            topics,
            config,
            wake,
        }
    }

    /// Runs rounds until `shutdown`: a round claims due events, sends them all, and settles
    /// each. Rounds are pipelined: while one waits for Kafka's acknowledgements, the next is
    /// claimed and sent, up to [`ROUNDS_IN_FLIGHT`] at once (each claim leases its events, so
    /// no two rounds hold the same one). A full round claims the next one at once; otherwise
    /// the loop waits for the poll interval, a wake-up from the intake, or a round to settle.
    /// At shutdown the rounds in flight settle before it returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let interval = Duration::from_millis(this.config.poll_interval_ms);
        let mut rounds = tokio::task::JoinSet::new();
        loop {
            let claimed = match this.claim().await {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::warn!(error = %e, "retry round failed");
                    Vec::new()
                }
            };
            let full = claimed.len() >= this.config.batch;
            if !claimed.is_empty() {
                let round = this.clone();
                rounds.spawn(async move { round.settle(claimed).await });
            }
            while let Some(done) = rounds.try_join_next() {
                settled(done);
            }
            // A full disk released the store's reserve: put it back once there is room.
            this.store.restore_reserve().await;
            if full && !shutdown.is_cancelled() {
                if rounds.len() >= ROUNDS_IN_FLIGHT
                    && let Some(done) = rounds.join_next().await
                {
                    settled(done);
                }
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
                () = this.wake.notified() => {}
                Some(done) = rounds.join_next(), if !rounds.is_empty() => settled(done),
            }
        }
        while let Some(done) = rounds.join_next().await {
            settled(done);
        }
    }

    /// One round, claimed and settled before it returns; returns how many events it claimed.
    pub async fn round(&self) -> Result<usize, StoreError> {
        let entries = self.claim().await?;
        if entries.is_empty() {
            return Ok(0);
        }
        self.settle(entries).await
    }

    /// Leases up to `batch` due events to this round.
    async fn claim(&self) -> Result<Vec<Entry>, StoreError> {
        let lease = Duration::from_millis(self.config.ack_timeout_ms * 2 + 5_000);
        self.store
            .claim_due(i64::try_from(self.config.batch).unwrap_or(i64::MAX), lease)
            .await
    }

    /// Sends claimed events and settles each: delivered ones are deleted, failed ones
    /// rescheduled or parked. Returns how many there were.
    async fn settle(&self, entries: Vec<Entry>) -> Result<usize, StoreError> {
        // Events stored while Kafka was unreachable may name topics not created yet: the
        // intake's own topic check, creating each as an accepted event's (never limited).
        let mut wanted: Vec<(&str, Creation<'_>)> = entries
            .iter()
            .map(|e| (e.topic.as_str(), Creation::Accepted))
            .collect();
        wanted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        wanted.dedup_by(|a, b| a.0 == b.0);
        let missing: std::collections::HashMap<&str, String> =
            crate::intake::ensure_topics(&self.topics, &wanted)
                .await
                .into_iter()
                .map(|(t, e)| (t, e.to_string()))
                .collect();
        let (ready, blocked): (Vec<&Entry>, Vec<&Entry>) = entries
            .iter()
            .partition(|e| !missing.contains_key(e.topic.as_str()));
        let mut failures: Vec<Failure> = blocked
            .iter()
            .map(|entry| Failure {
                seq: entry.seq,
                error: missing[entry.topic.as_str()].clone(),
                next_attempt_ms: self.retry_at(entry),
            })
            .collect();
        let outgoing: Vec<Outgoing<'_>> = ready
            .iter()
            .map(|e| Outgoing {
                topic: &e.topic,
                record: &e.record,
            })
            .collect();
        let results = crate::intake::attempt(
            &self.pipeline,
            &outgoing,
            crate::intake::Lane::Redelivery,
            Duration::from_millis(self.config.ack_timeout_ms),
        )
        .await;
        let mut delivered = Vec::new();
        for (entry, result) in ready.iter().zip(results) {
            match result {
                Ok(_) => delivered.push(entry.seq),
                Err(e) => failures.push(Failure {
                    seq: entry.seq,
                    error: e.to_string(),
                    next_attempt_ms: if e.is_retriable() {
                        self.retry_at(entry)
                    } else {
                        None
                    },
                }),
            }
        }
        // Delivered rows go first: if the process dies between the two, the failures are
        // retried after their lease, and nothing delivered is sent twice for that reason.
        if !delivered.is_empty() {
            self.store.delete(&delivered).await?;
        }
        self.store.record_failures(&failures).await?;
        let failed = failures.len();
        let parked = failures
            .iter()
            .filter(|f| f.next_attempt_ms.is_none())
            .count();
        self.pipeline
            .stats()
            .record_redelivery(delivered.len(), parked);
        // One metric update per topic and outcome, not one per event.
        let topic_of: std::collections::HashMap<i64, &str> =
            entries.iter().map(|e| (e.seq, e.topic.as_str())).collect();
        let topic = |seq: &i64| topic_of.get(seq).copied().unwrap_or("unknown");
        let mut per_topic: std::collections::HashMap<&str, [u64; 3]> =
            std::collections::HashMap::new();
        for seq in &delivered {
            per_topic.entry(topic(seq)).or_default()[0] += 1;
        }
        for f in &failures {
            let counts = per_topic.entry(topic(&f.seq)).or_default();
            counts[1] += 1;
            if f.next_attempt_ms.is_none() {
                counts[2] += 1;
            }
        }
        let metrics = self.pipeline.metrics();
        for (topic, [redelivered, failed, parked]) in per_topic {
            Metrics::count_topic(&metrics.redelivered, topic, redelivered);
            Metrics::count_topic(&metrics.redelivery_failures, topic, failed);
            Metrics::count_topic(&metrics.parked, topic, parked);
        }
        tracing::info!(
            claimed = entries.len(),
            delivered = delivered.len(),
            failed,
            parked,
            "retry round"
        );
        Ok(entries.len())
    }
}

/// Logs a round that failed (its events stay leased and are claimed again after the lease).
fn settled(done: Result<Result<usize, StoreError>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "retry round failed"),
        Err(e) => tracing::error!(error = %e, "retry round panicked"),
    }
}

impl RetryScheduler {
    fn retry_at(&self, entry: &Entry) -> Option<i64> {
        next_attempt(
            &self.config,
            attempts_after(entry),
            now_ms(),
            rand::random::<f64>(),
        )
    }
}

fn attempts_after(entry: &Entry) -> u32 {
    u32::try_from(entry.attempts).unwrap_or(0).saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_ends_in_parking() {
        let c = DlqConfig {
            max_attempts: 5,
            backoff_initial_ms: 1_000,
            backoff_factor: 4.0,
            backoff_max_ms: 60_000,
            ..DlqConfig::default()
        };
        let at = |n| next_attempt(&c, n, 0, 0.5);
        // Stored at 0 and first retried at 1 s (the intake's `backoff_initial_ms`); after the
        // n-th failed retry the next one waits 1 s × 4^n, capped.
        assert_eq!(at(1), Some(4_000));
        assert_eq!(at(2), Some(16_000));
        assert_eq!(at(3), Some(60_000));
        assert_eq!(at(4), Some(60_000));
        assert_eq!(at(5), None, "the fifth failed retry parks the event");
        let low = next_attempt(&c, 1, 0, 0.0).unwrap();
        let high = next_attempt(&c, 1, 0, 1.0).unwrap();
        assert!(low == 3_200 && high == 4_800, "{low} {high}");
    }

    #[test]
    fn the_default_budget_is_five_retries_over_about_six_minutes() {
        let c = DlqConfig::default();
        // The first retry is `backoff_initial_ms` after the store; each failure schedules
        // the next from the time it failed (jitter at its middle).
        let mut at = i64::try_from(c.backoff_initial_ms).unwrap();
        let mut retries = 0;
        while let Some(next) = next_attempt(&c, retries + 1, at, 0.5) {
            retries += 1;
            at = next;
        }
        retries += 1; // the last retry, whose failure parks the event
        assert_eq!(retries, c.max_attempts);
        assert_eq!(
            at, 341_000,
            "parked after the retry at 1 + 4 + 16 + 64 + 256 s"
        );
    }
}
