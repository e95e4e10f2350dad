//! What `/readyz` answers from: the consumer's place in its group, its brokers, the store
//! behind a sink, and whether it is shutting down.

use std::sync::atomic::{AtomicBool, Ordering};

/// Readiness of one consumer: ready once it has joined its group (an assignment was
/// received, possibly empty), while librdkafka sees a broker up, the sink's store (when there
/// is one) answers, and it is not shutting down.
#[derive(Debug)]
pub struct Health {
    assigned: AtomicBool,
    brokers_up: AtomicBool,
    sink_ready: AtomicBool,
    stopping: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            assigned: AtomicBool::new(false),
            // Known from the first statistics on; until then the assignment speaks for them.
            brokers_up: AtomicBool::new(true),
            // No sink: nothing to wait for.
            sink_ready: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
        }
    }
}

/// A snapshot of [`Health`], as `/readyz` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Readiness {
    /// The group gave this member an assignment.
    pub assigned: bool,
    /// librdkafka has a connection up to at least one broker.
    pub brokers_up: bool,
    /// The sink's store answered its last request (always true without a sink).
    pub sink_ready: bool,
    /// Shutdown began.
    pub stopping: bool,
}

impl Readiness {
    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.assigned && self.brokers_up && self.sink_ready && !self.stopping
    }
}

impl Health {
    /// The group assigned partitions to this member (or none: it is a member all the same).
    pub fn set_assigned(&self) {
        self.assigned.store(true, Ordering::Relaxed);
    }

    /// Whether librdkafka sees a broker up.
    pub fn set_brokers_up(&self, up: bool) {
        self.brokers_up.store(up, Ordering::Relaxed);
    }

    /// Whether the sink's store answers.
    pub fn set_sink_ready(&self, ready: bool) {
        self.sink_ready.store(ready, Ordering::Relaxed);
    }

    /// Shutdown began: not ready any more.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// The current state.
    pub fn readiness(&self) -> Readiness {
        Readiness {
            assigned: self.assigned.load(Ordering::Relaxed),
            brokers_up: self.brokers_up.load(Ordering::Relaxed),
            sink_ready: self.sink_ready.load(Ordering::Relaxed),
            stopping: self.stopping.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_assigned_connected_and_not_stopping() {
        let h = Health::default();
        assert!(
            !h.readiness().is_ready(),
            "not ready before joining the group"
        );
        h.set_assigned();
        assert!(h.readiness().is_ready());
        h.set_sink_ready(false);
        assert!(!h.readiness().is_ready(), "the sink's store is away");
        h.set_sink_ready(true);
        h.set_brokers_up(false);
        assert!(!h.readiness().is_ready(), "no broker up");
        h.set_brokers_up(true);
        h.set_stopping();
        assert!(!h.readiness().is_ready(), "shutting down");
    }
}
