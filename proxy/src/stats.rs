//! Live counters of what the proxy does with events, and a short history of them for the
//! admin page's throughput chart (one sample per second, the last five minutes).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Samples kept: five minutes at one per second.
pub const HISTORY: usize = 300;

/// Counters since the process started.
#[derive(Debug, Default)]
pub struct Stats {
    received: AtomicU64,
    delivered: AtomicU64,
    stored: AtomicU64,
    refused: AtomicU64,
    duplicates: AtomicU64,
    redelivered: AtomicU64,
    parked: AtomicU64,
    history: Mutex<VecDeque<Sample>>,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Events received in publish requests (valid or not).
    pub received: u64,
    /// Events Kafka acknowledged on the request path (answered 200).
    pub delivered: u64,
    /// Events committed to the store (answered 202).
    pub stored: u64,
    /// Events refused (4xx/5xx).
    pub refused: u64,
    /// Events sent again within the dedupe window, answered with their first outcome and not
    /// written again (neither delivered nor stored a second time).
    pub duplicates: u64,
    /// Stored events the retry scheduler delivered.
    pub redelivered: u64,
    /// Stored events the retry scheduler parked.
    pub parked: u64,
}

fn add(counter: &AtomicU64, n: usize) {
    if n > 0 {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Stats {
    /// Counts the outcomes of one publish request.
    pub fn record_requests(
        &self,
        delivered: usize,
        stored: usize,
        duplicates: usize,
        refused: usize,
    ) {
        add(&self.received, delivered + stored + duplicates + refused);
        add(&self.delivered, delivered);
        add(&self.stored, stored);
        add(&self.duplicates, duplicates);
        add(&self.refused, refused);
    }

    /// Counts one retry round.
    pub fn record_redelivery(&self, delivered: usize, parked: usize) {
        add(&self.redelivered, delivered);
        add(&self.parked, parked);
    }

    /// The counters now.
    pub fn snapshot(&self) -> Sample {
        Sample {
            at_ms: crate::store::now_ms(),
            received: self.received.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            stored: self.stored.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            redelivered: self.redelivered.load(Ordering::Relaxed),
            parked: self.parked.load(Ordering::Relaxed),
        }
    }

    /// Samples of the last five minutes, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        self.history
            .lock()
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }

    fn push_sample(&self) {
        let sample = self.snapshot();
        if let Ok(mut h) = self.history.lock() {
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(sample);
        }
    }

    /// Takes a sample every second until `shutdown`.
    pub async fn sample(self: std::sync::Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => self.push_sample(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_bounded_history() {
        let s = Stats::default();
        s.record_requests(3, 2, 4, 1);
        s.record_redelivery(2, 1);
        let now = s.snapshot();
        assert_eq!(
            (
                now.received,
                now.delivered,
                now.stored,
                now.duplicates,
                now.refused
            ),
            (10, 3, 2, 4, 1)
        );
        assert_eq!((now.redelivered, now.parked), (2, 1));
        for _ in 0..HISTORY + 10 {
            s.push_sample();
        }
        assert_eq!(s.history().len(), HISTORY);
    }
}
