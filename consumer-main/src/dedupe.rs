//! Drops duplicates by event id: the proxy delivers at least once, so after a crash or a
//! retry through another proxy an event may arrive twice.

use moka::sync::Cache;

/// A bounded memory of handled (or being handled) events, keyed by `source` and `id` (an id is unique per
/// source). Bounded by count; the oldest entries go first.
#[derive(Debug, Clone)]
pub struct Dedupe {
    seen: Option<Cache<String, ()>>,
    /// Striped locks making check-and-insert one step per key (the cache's own entry API
    /// does not promise that two racing callers cannot both see the key as new).
    stripes: std::sync::Arc<[std::sync::Mutex<()>; STRIPES]>,
}

const STRIPES: usize = 64;

impl Dedupe {
    /// Remembers up to `capacity` events; 0 remembers none.
    pub fn new(capacity: u64) -> Self {
        Self {
            seen: (capacity > 0).then(|| Cache::new(capacity)),
            stripes: std::sync::Arc::new(std::array::from_fn(|_| std::sync::Mutex::new(()))),
        }
    }

    fn key(source: &str, id: &str) -> String {
        format!("{source}\u{0}{id}")
    }

    /// Claims this event for handling: false when it was handled already or is being
    /// handled (on another partition) right now. Atomic, so two copies never both pass.
    pub fn claim(&self, source: &str, id: &str) -> bool {
        let Some(cache) = &self.seen else {
            return true;
        };
        let key = Self::key(source, id);
        let stripe = {
            use std::hash::{BuildHasher, RandomState};
            static HASHER: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
            HASHER.get_or_init(RandomState::new).hash_one(&key) as usize % STRIPES
        };
        let _guard = self.stripes[stripe]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if cache.contains_key(&key) {
            return false;
        }
        cache.insert(key, ());
        true
    }

    /// Gives a claim back (the event was not handled), so a later copy is handled.
    pub fn release(&self, source: &str, id: &str) {
        if let Some(c) = &self.seen {
            c.invalidate(&Self::key(source, id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_by_source_and_id() {
        let d = Dedupe::new(10);
        assert!(d.claim("/a", "1"));
        assert!(!d.claim("/a", "1"));
        assert!(d.claim("/b", "1"));
        d.release("/a", "1");
        assert!(d.claim("/a", "1"));
        let off = Dedupe::new(0);
        assert!(off.claim("/a", "1"));
        assert!(off.claim("/a", "1"));
    }

    #[test]
    fn of_concurrent_copies_exactly_one_is_claimed() {
        let d = Dedupe::new(1000);
        for round in 0..50 {
            let id = round.to_string();
            let winners: usize = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4)
                    .map(|_| s.spawn(|| usize::from(d.claim("/a", &id))))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            });
            assert_eq!(winners, 1, "round {round}");
        }
    }
}
