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

use super::store::{DlqStore, Entry, now_ms};
use crate::config::DlqConfig;
use crate::delivery::{Outgoing, Pipeline};

/// When to try an event again after `attempts` failed attempts, or `None` to park it.
pub fn next_attempt(config: &DlqConfig, attempts: u32, now: i64, jitter: f64) -> Option<i64> {
    if attempts >= config.max_attempts {
        return None;
    }
    let factor = config.backoff_factor.max(1.0).powi(i32::try_from(attempts).unwrap_or(i32::MAX) - 1);
    let base = (config.backoff_initial_ms as f64 * factor).min(config.backoff_max_ms as f64);
    // ±20 % so that events stored together do not all retry in the same instant.
    let delay = base * (0.8 + 0.4 * jitter.clamp(0.0, 1.0));
    Some(now + delay as i64)
}

/// The scheduler's loop; returns when `shutdown` fires.
#[derive(Debug)]
pub struct RetryScheduler {
    store: DlqStore,
    pipeline: Pipeline,
    config: DlqConfig,
    wake: Arc<Notify>,
}

impl RetryScheduler {
    /// A scheduler over `store`, sending through `pipeline`'s producer.
    pub fn new(store: DlqStore, pipeline: Pipeline, config: DlqConfig, wake: Arc<Notify>) -> Self {
        Self {
            store,
            pipeline,
            config,
            wake,
        }
    }

    /// Runs rounds until `shutdown`: a round claims due events, sends them all, and settles
    /// each. A full round runs the next one at once; otherwise it waits for the poll interval
    /// or a wake-up from the intake.
    pub async fn run(self, shutdown: CancellationToken) {
        let interval = Duration::from_millis(self.config.poll_interval_ms);
        loop {
            let claimed = match self.round().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "retry round failed");
                    0
                }
            };
            if claimed >= self.config.batch {
                if shutdown.is_cancelled() {
                    return;
                }
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// One round; returns how many events it claimed.
    pub async fn round(&self) -> Result<usize, super::store::StoreError> {
        let lease = Duration::from_millis(self.config.ack_timeout_ms * 2 + 5_000);
        let entries = self
            .store
            .claim_due(i64::try_from(self.config.batch).unwrap_or(i64::MAX), lease)
            .await?;
        if entries.is_empty() {
            return Ok(0);
        }
        let outgoing: Vec<Outgoing<'_>> = entries
            .iter()
            .map(|e| Outgoing {
                topic: &e.topic,
                record: &e.record,
            })
            .collect();
        let results = self
            .pipeline
            .redeliver(&outgoing, Duration::from_millis(self.config.ack_timeout_ms))
            .await;
        let mut delivered = Vec::new();
        let mut failed = 0usize;
        let mut parked = 0usize;
        for (entry, result) in entries.iter().zip(results) {
            match result {
                Ok(_) => delivered.push(entry.seq),
                Err(e) => {
                    let next = if e.is_retriable() {
                        next_attempt(&self.config, attempts_after(entry), now_ms(), rand::random::<f64>())
                    } else {
                        None
                    };
                    if next.is_none() {
                        parked += 1;
                    }
                    failed += 1;
                    self.store
                        .record_failure(entry.seq, &e.to_string(), next)
                        .await?;
                }
            }
        }
        if !delivered.is_empty() {
            self.store.delete(&delivered).await?;
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
        assert_eq!(at(1), Some(1_000));
        assert_eq!(at(2), Some(4_000));
        assert_eq!(at(3), Some(16_000));
        assert_eq!(at(4), Some(60_000));
        assert_eq!(at(5), None, "the fifth failure parks the event");
        let low = next_attempt(&c, 1, 0, 0.0).unwrap();
        let high = next_attempt(&c, 1, 0, 1.0).unwrap();
        assert!(low == 800 && high == 1_200, "{low} {high}");
    }
}
