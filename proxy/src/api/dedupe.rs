//! Idempotent publish: a client that sends an event again with the same `source` and `id`
//! to the same topic within the dedupe window gets the first outcome back instead of a second
//! copy in Kafka. The topic is part of the key: the same event sent to another explicit topic
//! is a different write, checked and answered on its own.
//!
//! The window lives in memory (bounded, with time-to-live) and covers one proxy: retries
//! through another proxy are deduplicated by consumers by event id, as the delivery contract
//! is at least once. The DLQ store refuses a second copy of a (topic, id) on its own.

use std::time::Duration;

use moka::sync::Cache;

use crate::delivery::Delivered;

/// What the first send of an event came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remembered {
    /// Acknowledged by Kafka at this position.
    Delivered {
        /// Partition and offset.
        at: Delivered,
    },
    /// Committed to the DLQ store.
    Stored,
}

/// Outcomes of recently accepted events, by (topic, source, id).
#[derive(Debug, Clone)]
pub struct DedupeWindow {
    cache: Option<Cache<(String, String, String), Remembered>>,
}

impl DedupeWindow {
    /// A window of `ttl` holding at most `capacity` events; a zero `ttl` disables it.
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        let cache = (!ttl.is_zero()).then(|| {
            Cache::builder()
                .time_to_live(ttl)
                .max_capacity(capacity)
                .build()
        });
        Self { cache }
    }

    /// The first outcome of this event, if it was accepted within the window.
    pub fn get(&self, topic: &str, source: &str, id: &str) -> Option<Remembered> {
        self.cache
            .as_ref()?
            .get(&(topic.to_owned(), source.to_owned(), id.to_owned()))
    }

    /// Remembers an accepted event's outcome.
    pub fn remember(&self, topic: &str, source: &str, id: &str, outcome: Remembered) {
        if let Some(cache) = &self.cache {
            cache.insert(
                (topic.to_owned(), source.to_owned(), id.to_owned()),
                outcome,
            );
        }
    }
}
