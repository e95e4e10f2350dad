//! Observing a request: one call that records what became of its events in the metrics
//! (counted per distinct label set, not per event: a batch to one topic is one update), the
//! statistics behind the admin page, and the log — as Vector's `internal_events` do, so the
//! steps before it only decide, and every count is made in one place.

use std::collections::HashMap;

use courier_shared::ProblemKind;

use super::{Ledger, Outcome};
use crate::error::ApiError;
use crate::metrics::EventOutcome;
use crate::state::AppState;

/// Records `ledger` and returns the outcomes in input order.
pub(super) fn observe(state: &AppState, ledger: Ledger) -> Vec<Outcome> {
    let Ledger {
        outcomes,
        labels,
        auth_refusals,
        failures,
    } = ledger;
    for (error, count) in failures {
        tracing::warn!(%error, count, "events not delivered");
    }
    // Counted per distinct label set, not per event: a batch to one topic is one update. Runs
    // of events with the same labels (the usual batch) are counted without hashing them.
    let (mut delivered, mut stored, mut duplicates) = (0, 0, 0);
    let mut counts: HashMap<(&str, &str, EventOutcome), u64> = HashMap::new();
    let mut run: Option<((&str, &str, EventOutcome), u64)> = None;
    let mut refusals: HashMap<(&str, &'static str), u64> = HashMap::new();
    for (o, event_labels) in outcomes.iter().zip(&labels) {
        let service = event_labels.service();
        let outcome = match o {
            Some(Outcome::Delivered { .. }) => {
                delivered += 1;
                EventOutcome::Delivered
            }
            Some(Outcome::Stored { .. }) => {
                stored += 1;
                EventOutcome::Stored
            }
            Some(Outcome::Duplicate { .. }) => {
                duplicates += 1;
                EventOutcome::Duplicate
            }
            Some(Outcome::Refused { error, .. }) => {
                *refusals.entry((service, error.kind.code())).or_default() += 1;
                EventOutcome::Refused
            }
            None => EventOutcome::Refused,
        };
        let labels = (service, event_labels.topic(), outcome);
        match &mut run {
            Some((same, n)) if *same == labels => *n += 1,
            _ => {
                if let Some((labels, n)) = run.replace((labels, 1)) {
                    *counts.entry(labels).or_default() += n;
                }
            }
        }
    }
    if let Some((labels, n)) = run {
        *counts.entry(labels).or_default() += n;
    }
    let metrics = state.pipeline().metrics();
    for ((service, topic, outcome), n) in counts {
        metrics.record_events(service, topic, outcome, n);
    }
    for ((service, reason), n) in refusals {
        metrics.record_refusals(service, reason, n);
    }
    for ((service, reason), n) in auth_refusals {
        metrics.record_auth_refusals(&service, reason, n);
    }
    state.pipeline().stats().record_requests(
        delivered,
        stored,
        duplicates,
        outcomes.len() - delivered - stored - duplicates,
    );
    outcomes
        .into_iter()
        .enumerate()
        .map(|(index, o)| {
            o.unwrap_or_else(|| {
                // A bug, not a state of Kafka or the store: nothing of the event was accepted,
                // and the log says so rather than the answer alone.
                tracing::error!(index, "an event of the request got no outcome; refused");
                Outcome::Refused {
                    id: None,
                    error: ApiError::new(ProblemKind::Internal, "event lost track of"),
                }
            })
        })
        .collect()
}
