//! The intake: what happens to the events of one publish request between the HTTP handler
//! (`api::publish`, which reads and parses the body and writes the answer) and their outcomes.
//! Three steps, one file each:
//!
//! - [`admit`]: each event alone — valid, its service and the caller's key agree (ACL), its
//!   schema, its topic, the policy, the service's rate, the dedupe window, its size;
//! - [`settle`]: the admitted events together — their topics made sure of, one attempt to
//!   Kafka (as the circuit routes it), the store for what Kafka did not take, the scheduler
//!   woken, the outcomes remembered for resends;
//! - [`observe`]: one call that records what became of every event in the metrics, the
//!   statistics and the log.
//!
//! Every event ends with exactly one [`Outcome`]; a 2xx answer is given only for events
//! Kafka acknowledged or the store committed (the delivery contract in the README).

mod admit;
mod observe;
mod settle;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use courier_shared::{Event, EventError};

pub use settle::{Lane, attempt, ensure_topics};

use crate::auth::Identity;
use crate::dedupe::Remembered;
use crate::delivery::Delivered;
use crate::error::ApiError;
use crate::state::AppState;

/// What happened to one event.
#[derive(Debug)]
pub enum Outcome {
    /// Kafka did not acknowledge it in time; it is committed to the store and the retry
    /// scheduler will deliver it.
    Stored {
        /// Event id.
        id: String,
        /// Topic it will be written to.
        topic: Arc<str>,
    },
    /// Kafka acknowledged it.
    Delivered {
        /// Event id.
        id: String,
        /// Topic written to.
        topic: Arc<str>,
        /// Partition and offset.
        at: Delivered,
    },
    /// The same event (topic, source, id) was accepted within the dedupe window: answered
    /// with that first outcome, and not written again.
    Duplicate {
        /// Event id.
        id: String,
        /// Topic.
        topic: Arc<str>,
        /// What the first copy came to.
        first: Remembered,
    },
    /// It was not accepted; the error says whether sending it again may help.
    Refused {
        /// Event id, when the event was valid enough to have one.
        id: Option<String>,
        /// Why.
        error: ApiError,
    },
}

/// What the steps learn about a request's events, in input order.
struct Ledger {
    /// Each event's outcome, once it has one.
    outcomes: Vec<Option<Outcome>>,
    /// Each event's labels in the metrics.
    labels: Vec<Labels>,
    /// Authentication and authorisation refusals by (service, reason).
    auth_refusals: HashMap<(String, &'static str), u64>,
    /// Delivery failures by error, for one log line each.
    failures: BTreeMap<String, usize>,
}

/// An event's labels in the metrics, as far as it got: its service and topic. The events of
/// a request with the same service or topic share one string (a batch is usually one of each).
#[derive(Debug, Clone, Default)]
struct Labels {
    /// `None` until the service was read.
    service: Option<Arc<str>>,
    /// `None` until the event was routed.
    topic: Option<Arc<str>>,
}

impl Labels {
    /// The service, or `unknown`.
    fn service(&self) -> &str {
        self.service.as_deref().unwrap_or("unknown")
    }

    /// The topic, or empty.
    fn topic(&self) -> &str {
        self.topic.as_deref().unwrap_or("")
    }
}

/// Runs events through admission, settling and observation; outcomes in input order.
/// `identity` is the caller's, when authentication is on: each event's `source` must name
/// its service, and the policy decides for that service.
pub async fn process(
    state: &AppState,
    events: Vec<Result<Event, EventError>>,
    explicit_topic: Option<&str>,
    identity: Option<&Identity>,
) -> Vec<Outcome> {
    let mut ledger = Ledger {
        outcomes: Vec::with_capacity(events.len()),
        labels: Vec::with_capacity(events.len()),
        auth_refusals: HashMap::new(),
        failures: BTreeMap::new(),
    };
    let mut admission = admit::Admission::new(state, explicit_topic, identity, events.len());
    let mut admitted = Vec::with_capacity(events.len());
    for (index, event) in events.into_iter().enumerate() {
        admitted.extend(admission.admit(&mut ledger, index, event));
    }
    settle::settle(state, &mut ledger, admitted, explicit_topic).await;
    observe::observe(state, ledger)
}
