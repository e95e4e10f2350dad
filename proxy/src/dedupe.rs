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
//!
//! The window is a least-recently-used map per shard (16 shards, each a mutex over an
//! `lru::LruCache` with its share of the byte budget), the time-to-live checked when an entry
//! is read. It replaced a `moka` cache, whose bookkeeping (frequency sketch, write buffers,
//! timer wheel) took a fifth of the proxy's CPU per batched event: the window needs none of
//! it — always admit the newest event, forget the least recently used.

use std::hash::{BuildHasher as _, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::delivery::Delivered;

/// What the first send of an event came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remembered {
    /// Acknowledged by Kafka at this position.
    Delivered {
        /// Partition and offset.
        at: Delivered,
    },
    /// Committed to the store.
    Stored,
}

/// Outcomes of recently accepted events, by (topic, source, id).
#[derive(Debug, Clone)]
pub struct DedupeWindow {
    window: Option<Arc<Window>>,
}

/// An event's identity in the window: topic, source and id in one string, each of the first
/// two prefixed by its length so no two identities share a key. Built once per event (one
/// allocation) and used for both the lookup and the remembering.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

    /// The bytes this key takes in the window, with its entry.
    fn weight(&self) -> u64 {
        (self.0.len() + ENTRY_OVERHEAD) as u64
    }
}

/// What one remembered event costs beyond its key: the map's slot and list links, the
/// outcome, its time, and the key's header.
const ENTRY_OVERHEAD: usize = 128;

/// Shards of the window: requests on different workers rarely wait for each other.
const SHARDS: usize = 16;

#[derive(Debug)]
struct Window {
    shards: Box<[Mutex<Shard>]>,
    ttl: Duration,
    shard_bytes: u64,
    hasher: RandomState,
}

#[derive(Debug)]
struct Shard {
    entries: LruCache<DedupeKey, (Remembered, Instant)>,
    bytes: u64,
}

impl Window {
    fn shard(&self, key: &DedupeKey) -> std::sync::MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(&key.0) as usize) % self.shards.len();
        // A panic while holding a shard cannot leave it inconsistent in a way that matters
        // here (at worst a byte count off): keep using it.
        self.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl DedupeWindow {
    /// A window of `ttl` taking at most about `max_bytes` of memory; a zero `ttl` or size
    /// disables it.
    pub fn new(ttl: Duration, max_bytes: u64) -> Self {
        let window = (!ttl.is_zero() && max_bytes > 0).then(|| {
            Arc::new(Window {
                shards: (0..SHARDS)
                    .map(|_| {
                        Mutex::new(Shard {
                            entries: LruCache::unbounded(),
                            bytes: 0,
                        })
                    })
                    .collect(),
                ttl,
                shard_bytes: (max_bytes / SHARDS as u64).max(1),
                hasher: RandomState::new(),
            })
        });
        Self { window }
    }

    /// True when the window is on (a zero time-to-live or size turns it off).
    pub fn is_on(&self) -> bool {
        self.window.is_some()
    }

    /// The first outcome of this event, if it was accepted within the window.
    pub fn get(&self, key: &DedupeKey) -> Option<Remembered> {
        let window = self.window.as_ref()?;
        let mut shard = window.shard(key);
        let (outcome, at) = shard.entries.get(key)?.clone();
        if at.elapsed() < window.ttl {
            return Some(outcome);
        }
        shard.entries.pop(key);
        shard.bytes -= key.weight();
        None
    }

    /// Remembers an accepted event's outcome, forgetting the least recently used events of
    /// its shard while the shard is over its share of the budget.
    pub fn remember(&self, key: DedupeKey, outcome: Remembered) {
        let Some(window) = &self.window else {
            return;
        };
        let weight = key.weight();
        let mut shard = window.shard(&key);
        if shard.entries.put(key, (outcome, Instant::now())).is_none() {
            shard.bytes += weight;
        }
        while shard.bytes > window.shard_bytes {
            let Some((old, _)) = shard.entries.pop_lru() else {
                break;
            };
            shard.bytes -= old.weight();
        }
    }

    /// Bytes the remembered events take, as the budget counts them.
    pub fn weighted_size(&self) -> u64 {
        self.window.as_ref().map_or(0, |w| {
            w.shards
                .iter()
                .map(|s| s.lock().map_or(0, |s| s.bytes))
                .sum()
        })
    }

    /// Events remembered.
    pub fn len(&self) -> usize {
        self.window.as_ref().map_or(0, |w| {
            w.shards
                .iter()
                .map(|s| s.lock().map_or(0, |s| s.entries.len()))
                .sum()
        })
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_bounded_by_bytes_not_entries() {
        let window = DedupeWindow::new(Duration::from_secs(60), 1024 * 1024);
        // 1,000 events with 10 KiB ids would take 10 MiB: the window keeps about 1 MiB.
        let long = "x".repeat(10 * 1024);
        for i in 0..1_000 {
            window.remember(
                DedupeKey::new("t", "/s", &format!("{i}{long}")),
                Remembered::Stored,
            );
        }
        assert!(
            window.weighted_size() <= 1024 * 1024,
            "{}",
            window.weighted_size()
        );
        assert!(window.len() < 110, "{}", window.len());
        // Short ids: many fit, and the newest is always remembered.
        for i in 0..1_000 {
            window.remember(
                DedupeKey::new("t", "/s", &format!("short-{i}")),
                Remembered::Stored,
            );
        }
        assert!(
            window
                .get(&DedupeKey::new("t", "/s", "short-999"))
                .is_some()
        );
        assert!(window.weighted_size() <= 1024 * 1024);
        assert!(window.len() >= 1_000, "{}", window.len());
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

    #[test]
    fn entries_expire_after_the_time_to_live() {
        let window = DedupeWindow::new(Duration::from_millis(50), 1024 * 1024);
        let key = DedupeKey::new("t", "/a", "1");
        window.remember(key.clone(), Remembered::Stored);
        assert!(window.get(&key).is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(window.get(&key), None);
        assert!(window.is_empty(), "an expired entry read is dropped");
        assert_eq!(window.weighted_size(), 0);
    }

    #[test]
    fn remembering_again_keeps_the_budget_exact() {
        let window = DedupeWindow::new(Duration::from_secs(60), 1024 * 1024);
        let key = DedupeKey::new("t", "/a", "1");
        window.remember(key.clone(), Remembered::Stored);
        let once = window.weighted_size();
        window.remember(key.clone(), Remembered::Stored);
        assert_eq!(window.weighted_size(), once);
        assert_eq!(window.len(), 1);
    }
}
