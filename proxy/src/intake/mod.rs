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
        topic: String,
    },
    /// Kafka acknowledged it.
    Delivered {
        /// Event id.
        id: String,
        /// Topic written to.
        topic: String,
        /// Partition and offset.
        at: Delivered,
    },
    /// The same event (topic, source, id) was accepted within the dedupe window: answered
    /// with that first outcome, and not written again.
    Duplicate {
        /// Event id.
        id: String,
        /// Topic.
        topic: String,
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
    /// (service, topic) of each event, as far as it got: the metrics' labels.
    labels: Vec<(String, String)>,
    /// Authentication and authorisation refusals by (service, reason).
    auth_refusals: HashMap<(String, &'static str), u64>,
    /// Delivery failures by error, for one log line each.
    failures: BTreeMap<String, usize>,
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
    let admission = admit::Admission::new(state, explicit_topic, identity);
    let mut admitted = Vec::with_capacity(events.len());
    for (index, event) in events.into_iter().enumerate() {
        admitted.extend(admission.admit(&mut ledger, index, event));
    }
    settle::settle(state, &mut ledger, admitted, explicit_topic).await;
    observe::observe(state, ledger)
}
