//! Drops duplicates by event id: the proxy delivers at least once, so after a crash or a
//! retry through another proxy an event may arrive twice.

use moka::sync::Cache;

/// A bounded memory of handled events, keyed by `source` and `id` (an id is unique per
/// source). Bounded by count; the oldest entries go first.
#[derive(Debug, Clone)]
pub struct Dedupe {
    seen: Option<Cache<String, ()>>,
}

impl Dedupe {
    /// Remembers up to `capacity` events; 0 remembers none.
    pub fn new(capacity: u64) -> Self {
        Self {
            seen: (capacity > 0).then(|| Cache::new(capacity)),
        }
    }

    fn key(source: &str, id: &str) -> String {
        format!("{source}\u{0}{id}")
    }

    /// True when this event was handled already.
    pub fn seen(&self, source: &str, id: &str) -> bool {
        self.seen
            .as_ref()
            .is_some_and(|c| c.contains_key(&Self::key(source, id)))
    }

    /// Records a handled event.
    pub fn mark(&self, source: &str, id: &str) {
        if let Some(c) = &self.seen {
            c.insert(Self::key(source, id), ());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_by_source_and_id() {
        let d = Dedupe::new(10);
        assert!(!d.seen("/a", "1"));
        d.mark("/a", "1");
        assert!(d.seen("/a", "1"));
        assert!(!d.seen("/b", "1"));
        let off = Dedupe::new(0);
        off.mark("/a", "1");
        assert!(!off.seen("/a", "1"));
    }
}
