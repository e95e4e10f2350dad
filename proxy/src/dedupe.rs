//! Idempotent publish: a client that sends an event again with the same `source` and `id`
//! to the same topic within the dedupe window gets the first outcome back instead of a second
//! copy in Kafka. The topic is part of the key: the same event sent to another explicit topic
//! is a different write, checked and answered on its own.
//!
//! The window lives in memory, bounded by bytes and by time-to-live, and covers one proxy:
//! retries through another proxy are deduplicated by consumers by (source, id), as the
//! delivery contract is at least once. The store keeps one copy of a (topic, source, id) on
//! its own.
//!
//! An event's identity is kept as a 128-bit digest of (topic, source, id): two SipHash-1-3
//! runs under random keys drawn when the process starts. Every entry then takes the same few
//! bytes whatever the caller's ids and sources are, and building a key allocates nothing. Two
//! different identities share a digest with a probability of about 2⁻¹²⁸ per pair, so a
//! window of a million entries mistakes one event for another about once in 10²⁶ windows;
//! the keys are secret, so a caller cannot aim for a collision.
//!
//! The window is a least-recently-used map per shard (16 shards, each a mutex over an
//! `lru::LruCache` with its share of the byte budget), the time-to-live checked when an entry
//! is read. It replaced a `moka` cache, whose bookkeeping (frequency sketch, write buffers,
//! timer wheel) took a fifth of the proxy's CPU per batched event: the window needs none of
//! it — always admit the newest event, forget the least recently used.

use std::hash::{BuildHasher as _, RandomState};
use std::sync::{Arc, LazyLock, Mutex};
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

/// The two secret keys of the identity digest, drawn once per process.
static DIGEST_KEYS: LazyLock<(RandomState, RandomState)> =
    LazyLock::new(|| (RandomState::new(), RandomState::new()));

/// An event's identity in the window: a 128-bit keyed digest of topic, source and id (see
/// the module docs). Built once per event, without allocating, and used for both the lookup
/// and the remembering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DedupeKey(u64, u64);

impl DedupeKey {
    /// The key of (topic, source, id). `str`'s `Hash` ends each string with a marker byte,
    /// so no two identities feed the same bytes to the digest.
    pub fn new(topic: &str, source: &str, id: &str) -> Self {
        let identity = (topic, source, id);
        Self(
            DIGEST_KEYS.0.hash_one(identity),
            DIGEST_KEYS.1.hash_one(identity),
        )
    }
}

/// What one remembered event costs in the window: its list node (digest, outcome, time and
/// two links: 64 bytes as the allocator rounds it) and its slot in the map, with room for
/// the map's spare capacity.
const ENTRY_BYTES: u64 = 96;

/// Shards of the window: requests on different workers rarely wait for each other.
const SHARDS: usize = 16;

#[derive(Debug)]
struct Window {
    shards: Box<[Mutex<Shard>]>,
    ttl: Duration,
    shard_bytes: u64,
}

#[derive(Debug)]
struct Shard {
    entries: LruCache<DedupeKey, (Remembered, Instant)>,
    bytes: u64,
}

impl Window {
    fn shard(&self, key: &DedupeKey) -> std::sync::MutexGuard<'_, Shard> {
        // The digest is uniform: its high bits pick the shard (the map hashes all of it).
        let i = (key.0 >> 60) as usize % self.shards.len();
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
        shard.bytes -= ENTRY_BYTES;
        None
    }

    /// Remembers an accepted event's outcome, forgetting the least recently used events of
    /// its shard while the shard is over its share of the budget.
    pub fn remember(&self, key: DedupeKey, outcome: Remembered) {
        let Some(window) = &self.window else {
            return;
        };
        let mut shard = window.shard(&key);
        if shard.entries.put(key, (outcome, Instant::now())).is_none() {
            shard.bytes += ENTRY_BYTES;
        }
        while shard.bytes > window.shard_bytes {
            if shard.entries.pop_lru().is_none() {
                break;
            }
            shard.bytes -= ENTRY_BYTES;
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
    fn the_window_is_bounded_by_bytes_whatever_the_ids() {
        let budget = 1024 * 1024;
        let window = DedupeWindow::new(Duration::from_secs(60), budget);
        // 20,000 events with 10 KiB ids would take 200 MiB as strings: each entry takes
        // the same few bytes, and the window keeps what its budget holds.
        let long = "x".repeat(10 * 1024);
        for i in 0..20_000 {
            window.remember(
                DedupeKey::new("t", "/s", &format!("{i}{long}")),
                Remembered::Stored,
            );
        }
        assert!(
            window.weighted_size() <= budget,
            "{}",
            window.weighted_size()
        );
        let most = usize::try_from(budget / ENTRY_BYTES).unwrap();
        assert!(window.len() <= most, "{}", window.len());
        assert!(window.len() >= most * 3 / 4, "{}", window.len());
        // The newest is remembered, the oldest forgotten.
        let key = |i: usize| DedupeKey::new("t", "/s", &format!("{i}{long}"));
        assert_eq!(window.get(&key(19_999)), Some(Remembered::Stored));
        assert_eq!(window.get(&key(0)), None);
    }

    #[test]
    fn identity_is_topic_source_and_id() {
        let window = DedupeWindow::new(Duration::from_secs(60), 1024 * 1024);
        let key = |t, s, i| DedupeKey::new(t, s, i);
        window.remember(key("t", "/a", "1"), Remembered::Stored);
        assert_eq!(window.get(&key("t", "/a", "1")), Some(Remembered::Stored));
        assert_eq!(window.get(&key("t", "/b", "1")), None);
        assert_eq!(window.get(&key("u", "/a", "1")), None);
        // Identities whose concatenations are equal stay apart.
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
        window.remember(key, Remembered::Stored);
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
        window.remember(key, Remembered::Stored);
        let once = window.weighted_size();
        window.remember(key, Remembered::Stored);
        assert_eq!(window.weighted_size(), once);
        assert_eq!(window.len(), 1);
    }
}
