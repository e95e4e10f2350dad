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
//! The window is 16 shards, each a mutex over a hash map of the remembered events and a ring
//! of their keys in the order they were remembered. A shard forgets from the front of its
//! ring: the oldest events first, when the shard is full or when they are older than the
//! time-to-live. Both tables are allocated once, at the size the byte budget allows, and
//! never grow. The map is indexed by the digest itself (it is already uniform and secret), so
//! a lookup hashes nothing.
//!
//! Before, the window was a least-recently-used list per shard (`lru`), and before that a
//! `moka` cache. Neither bought anything here: an event is looked up once, when it is sent
//! again, so recency of use is its age. The list took an allocation per event, a node to
//! unlink per forgotten event and a SipHash per lookup — about 8 % of the proxy's CPU per
//! batched event, most of it cache misses on nodes scattered over the heap.

use std::collections::{HashMap, VecDeque, hash_map};
use std::hash::{BuildHasher as _, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// A key hashes to the second half of its digest (the first half picks the shard): equal
/// keys have equal halves, and the halves are already uniform.
impl Hash for DedupeKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.1);
    }
}

/// The hasher of a shard's map: it keeps the one `u64` a [`DedupeKey`] writes.
#[derive(Debug, Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `DedupeKey`s are hashed here, and they write one u64; fold anything else in
        // rather than lose it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A remembered event, packed into 24 bytes: the partition and offset Kafka acknowledged it
/// at (partition -1: committed to the store; Kafka's partitions start at 0), and when it
/// was remembered, in milliseconds since the window began.
#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: i64,
    at: u64,
    partition: i32,
}

/// The partition an entry gives an event committed to the store.
const STORED: i32 = -1;

impl Entry {
    fn new(outcome: Remembered, at: u64) -> Self {
        match outcome {
            Remembered::Delivered { at: d } => Self {
                offset: d.offset,
                at,
                partition: d.partition,
            },
            Remembered::Stored => Self {
                offset: 0,
                at,
                partition: STORED,
            },
        }
    }

    fn outcome(&self) -> Remembered {
        match self.partition {
            STORED => Remembered::Stored,
            partition => Remembered::Delivered {
                at: Delivered {
                    partition,
                    offset: self.offset,
                },
            },
        }
    }
}

type EntryMap = HashMap<DedupeKey, Entry, BuildHasherDefault<DigestHasher>>;

/// Bytes of one slot of a shard's map: key and entry, and the control byte the table keeps
/// per slot.
const SLOT_BYTES: u64 = (size_of::<(DedupeKey, Entry)>() + 1) as u64;
/// Bytes of one item of a shard's ring.
const ORDER_BYTES: u64 = size_of::<(DedupeKey, u64)>() as u64;

/// Shards of the window: requests on different workers rarely wait for each other.
const SHARDS: usize = 16;

#[derive(Debug)]
struct Window {
    shards: Box<[Mutex<Shard>]>,
    /// The time-to-live, in milliseconds.
    ttl: u64,
    /// When the window began: entries keep their time as milliseconds since.
    epoch: Instant,
    /// Events one shard remembers at most.
    shard_entries: usize,
}

#[derive(Debug)]
struct Shard {
    /// The remembered events.
    entries: EntryMap,
    /// Keys in the order they were remembered, oldest first, each with the time it was. An
    /// item whose time is not its entry's any more (the entry was dropped when read after
    /// its time-to-live, or remembered again later) is skipped when it reaches the front.
    order: VecDeque<(DedupeKey, u64)>,
}

/// How many events a shard of `bytes` holds. The map's table is a power of two of slots, at
/// most seven eighths of them used: the largest table whose slots and the ring items of
/// seven eighths of it fit the budget (at least 8 slots, whatever the budget).
fn shard_entries(bytes: u64) -> usize {
    let fits = |slots: u64| slots * SLOT_BYTES + slots / 8 * 7 * ORDER_BYTES <= bytes;
    let mut slots = 8_u64;
    while fits(slots * 2) {
        slots *= 2;
    }
    usize::try_from(slots / 8 * 7).unwrap_or(usize::MAX)
}

impl Window {
    /// Milliseconds since the window began.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn shard(&self, key: &DedupeKey) -> std::sync::MutexGuard<'_, Shard> {
        // The digest is uniform: its high bits pick the shard (the map uses the other half).
        let i = (key.0 >> 60) as usize % self.shards.len();
        // A panic while holding a shard cannot leave it inconsistent in a way that matters
        // here (at worst an event forgotten early): keep using it.
        self.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Shard {
    /// Forgets the front of the ring: its entry too, unless that entry is a later one (one
    /// lookup in the map either way).
    fn forget_oldest(&mut self) {
        if let Some((key, at)) = self.order.pop_front()
            && let hash_map::Entry::Occupied(slot) = self.entries.entry(key)
            && slot.get().at == at
        {
            slot.remove();
        }
    }
}

impl DedupeWindow {
    /// A window of `ttl` taking at most about `max_bytes` of memory; a zero `ttl` or size
    /// disables it.
    pub fn new(ttl: Duration, max_bytes: u64) -> Self {
        let window = (!ttl.is_zero() && max_bytes > 0).then(|| {
            let shard_entries = shard_entries(max_bytes / SHARDS as u64);
            Arc::new(Window {
                shards: (0..SHARDS)
                    .map(|_| {
                        Mutex::new(Shard {
                            entries: EntryMap::with_capacity_and_hasher(
                                shard_entries,
                                BuildHasherDefault::default(),
                            ),
                            order: VecDeque::with_capacity(shard_entries),
                        })
                    })
                    .collect(),
                ttl: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1),
                epoch: Instant::now(),
                shard_entries,
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
        let entry = shard.entries.get(key)?;
        if window.now().saturating_sub(entry.at) < window.ttl {
            return Some(entry.outcome());
        }
        shard.entries.remove(key);
        None
    }

    /// Remembers an accepted event's outcome, forgetting the oldest events of its shard
    /// while the shard is full or they are older than the time-to-live.
    #[cfg(test)]
    pub fn remember(&self, key: DedupeKey, outcome: Remembered) {
        self.remember_all([(key, outcome)]);
    }

    /// [`Self::remember`] for the accepted events of one request, under one reading of the
    /// clock (a reading per event was a third of the cost of remembering it).
    pub fn remember_all(&self, events: impl IntoIterator<Item = (DedupeKey, Remembered)>) {
        let Some(window) = &self.window else {
            return;
        };
        let now = window.now();
        for (key, outcome) in events {
            let mut shard = window.shard(&key);
            while shard.order.len() >= window.shard_entries
                || shard
                    .order
                    .front()
                    .is_some_and(|(_, at)| now.saturating_sub(*at) >= window.ttl)
            {
                shard.forget_oldest();
            }
            shard.entries.insert(key, Entry::new(outcome, now));
            shard.order.push_back((key, now));
        }
    }

    /// Bytes the remembered events take, as the budget counts them: a slot of the map and an
    /// item of the ring each.
    #[cfg(test)]
    pub fn weighted_size(&self) -> u64 {
        (self.len() as u64) * (SLOT_BYTES + ORDER_BYTES)
    }

    /// Events remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.window.as_ref().map_or(0, |w| {
            w.shards
                .iter()
                .map(|s| s.lock().map_or(0, |s| s.entries.len()))
                .sum()
        })
    }

    /// True when nothing is remembered.
    #[cfg(test)]
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
        let most = SHARDS * shard_entries(budget / SHARDS as u64);
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
    fn the_tables_fit_the_budget_and_never_grow() {
        for budget in [1024 * 1024, 16 * 1024 * 1024, 1_000_000, 12_345] {
            let entries = shard_entries(budget);
            let slots = (entries as u64 / 7 * 8).next_power_of_two();
            assert!(
                budget < 8 * (SLOT_BYTES + ORDER_BYTES)
                    || slots * SLOT_BYTES + entries as u64 * ORDER_BYTES <= budget,
                "{budget}: {entries} entries in {slots} slots"
            );
            // At least half of the budget is used (the table is a power of two).
            assert!(
                budget < 16 * (SLOT_BYTES + ORDER_BYTES)
                    || slots * SLOT_BYTES + entries as u64 * ORDER_BYTES > budget / 2,
                "{budget}: {entries} entries"
            );
        }
        // The default budget (16 MiB) remembers 229,376 events, about 71 bytes each, as the
        // README and the configuration say.
        let default = 16 * 1024 * 1024;
        let events = SHARDS * shard_entries(default / SHARDS as u64);
        assert_eq!(events, 229_376);
        let slots = (events as u64 / 7 * 8).next_power_of_two();
        assert_eq!(
            (slots * SLOT_BYTES + events as u64 * ORDER_BYTES) / events as u64,
            70
        );
        let window = DedupeWindow::new(Duration::from_secs(60), 1024 * 1024);
        let shard = window.window.as_ref().unwrap().shards[0].lock().unwrap();
        assert!(shard.entries.capacity() >= shard_entries(1024 * 1024 / SHARDS as u64));
        assert!(shard.order.capacity() >= shard_entries(1024 * 1024 / SHARDS as u64));
    }

    #[test]
    fn an_event_remembered_again_outlives_its_first_place_in_line() {
        let window = DedupeWindow::new(Duration::from_millis(50), 1024 * 1024);
        let key = DedupeKey::new("t", "/a", "1");
        window.remember(key, Remembered::Stored);
        std::thread::sleep(Duration::from_millis(80));
        // Read after its time-to-live: dropped. Remembered again: a new entry, which the
        // first item of the ring must not take with it when the ring forgets that item.
        assert_eq!(window.get(&key), None);
        window.remember(key, Remembered::Stored);
        let shard = window.window.as_ref().unwrap().shard(&key);
        assert_eq!(shard.order.len(), 1, "the expired item was forgotten first");
        drop(shard);
        assert_eq!(window.get(&key), Some(Remembered::Stored));
    }

    #[test]
    fn a_full_shard_forgets_its_oldest_events_first() {
        let window =
            DedupeWindow::new(Duration::from_secs(60), 16 * 8 * (SLOT_BYTES + ORDER_BYTES));
        let keys: Vec<_> = (0..2_000)
            .map(|i| DedupeKey::new("t", "/a", &i.to_string()))
            .collect();
        for k in &keys {
            window.remember(*k, Remembered::Stored);
        }
        let per_shard = window.window.as_ref().unwrap().shard_entries;
        // In every shard, exactly the last `per_shard` keys it was given are remembered.
        let mut seen = [0_usize; SHARDS];
        for k in keys.iter().rev() {
            let i = (k.0 >> 60) as usize % SHARDS;
            let remembered = window.get(k).is_some();
            assert_eq!(
                remembered,
                seen[i] < per_shard,
                "shard {i}, {} newer",
                seen[i]
            );
            seen[i] += 1;
        }
    }

    #[test]
    fn outcomes_come_back_as_remembered() {
        let window = DedupeWindow::new(Duration::from_secs(60), 1024 * 1024);
        let delivered = Remembered::Delivered {
            at: Delivered {
                partition: 0,
                offset: i64::MAX,
            },
        };
        let key = |i| DedupeKey::new("t", "/a", i);
        window.remember(key("1"), delivered.clone());
        window.remember(key("2"), Remembered::Stored);
        assert_eq!(window.get(&key("1")), Some(delivered));
        assert_eq!(window.get(&key("2")), Some(Remembered::Stored));
        assert_eq!(size_of::<Entry>(), 24);
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
