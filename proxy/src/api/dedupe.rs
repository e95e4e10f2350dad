//! Idempotent publish: a client that sends an event again with the same `source` and `id`
//! to the same topic within the dedupe window gets the first outcome back instead of a second
//! copy in Kafka. The topic is part of the key: the same event sent to another explicit topic
//! is a different write, checked and answered on its own.
//!
//! The window lives in memory, bounded by bytes (a caller chooses the length of ids and
//! sources, so a bound by entries alone would let a few long ids take gigabytes) and by
//! time-to-live, and covers one proxy: retries
//! through another proxy are deduplicated by consumers by (source, id), as the delivery
//! contract is at least once. The store keeps one copy of a (topic, source, id) on its own.

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
    cache: Option<Cache<Box<str>, Remembered>>,
}

/// An event's identity in the window: topic, source and id in one string, each of the first
/// two prefixed by its length so no two identities share a key. Built once per event (one
/// allocation) and used for both the lookup and the remembering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupeKey(Box<str>);

impl DedupeKey {
    /// The key of (topic, source, id).
    pub fn new(topic: &str, source: &str, id: &str) -> Self {
        use std::fmt::Write as _;
        let mut key = String::with_capacity(topic.len() + source.len() + id.len() + 12);
        // Writing to a String cannot fail.
        let _ = write!(key, "{}:{topic}{}:{source}{id}", topic.len(), source.len());
        Self(key.into_boxed_str())
    }
}

/// What one remembered event costs beyond its key: the cache's own entry, the outcome, and
/// the key's header.
const ENTRY_OVERHEAD: usize = 128;

/// The bytes one remembered event takes (the cache's weigher takes the key as stored).
#[allow(clippy::borrowed_box)]
fn weigh(key: &Box<str>, _: &Remembered) -> u32 {
    u32::try_from(key.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
}

impl DedupeWindow {
    /// A window of `ttl` taking at most about `max_bytes` of memory; a zero `ttl` or size
    /// disables it.
    pub fn new(ttl: Duration, max_bytes: u64) -> Self {
        let cache = (!ttl.is_zero() && max_bytes > 0).then(|| {
            Cache::builder()
                .time_to_live(ttl)
                // The most recent events are the ones a client resends: always remember
                // them, forgetting the least recently used (TinyLFU's admission could turn a
                // new event away).
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .weigher(weigh)
                .max_capacity(max_bytes)
                .build()
        });
        Self { cache }
    }

    /// True when the window is on (a zero time-to-live or size turns it off).
    pub fn is_on(&self) -> bool {
        self.cache.is_some()
    }

    /// The first outcome of this event, if it was accepted within the window.
    pub fn get(&self, key: &DedupeKey) -> Option<Remembered> {
        self.cache.as_ref()?.get(&key.0)
    }

    /// Remembers an accepted event's outcome.
    pub fn remember(&self, key: DedupeKey, outcome: Remembered) {
        if let Some(cache) = &self.cache {
            cache.insert(key.0, outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_bounded_by_bytes_not_entries() {
        let window = DedupeWindow::new(Duration::from_secs(60), 1024 * 1024);
        let cache = window.cache.as_ref().unwrap();
        // 1,000 events with 10 KiB ids would take 10 MiB: the window keeps about 1 MiB.
        let long = "x".repeat(10 * 1024);
        for i in 0..1_000 {
            window.remember(
                DedupeKey::new("t", "/s", &format!("{i}{long}")),
                Remembered::Stored,
            );
        }
        cache.run_pending_tasks();
        assert!(
            cache.weighted_size() <= 1024 * 1024,
            "{}",
            cache.weighted_size()
        );
        assert!(cache.entry_count() < 110, "{}", cache.entry_count());
        // Short ids: many fit.
        for i in 0..1_000 {
            window.remember(
                DedupeKey::new("t", "/s", &format!("short-{i}")),
                Remembered::Stored,
            );
        }
        cache.run_pending_tasks();
        assert!(
            window
                .get(&DedupeKey::new("t", "/s", "short-999"))
                .is_some()
        );
        assert!(cache.weighted_size() <= 1024 * 1024);
    }

    #[test]
    fn identity_is_topic_source_and_id() {
        let window = DedupeWindow::new(Duration::from_secs(60), 1024 * 1024);
        let key = |t, s, i| DedupeKey::new(t, s, i);
        window.remember(key("t", "/a", "1"), Remembered::Stored);
        assert_eq!(window.get(&key("t", "/a", "1")), Some(Remembered::Stored));
        assert_eq!(window.get(&key("t", "/b", "1")), None);
        assert_eq!(window.get(&key("u", "/a", "1")), None);
        // The length prefixes keep apart identities whose concatenations are equal.
        window.remember(key("t", "/a1", "2"), Remembered::Stored);
        assert_eq!(window.get(&key("t", "/a", "12")), None);
        assert!(
            DedupeWindow::new(Duration::ZERO, 1)
                .get(&key("t", "/a", "1"))
                .is_none()
        );
    }
}
