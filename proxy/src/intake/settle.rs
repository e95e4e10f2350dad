//! Settling a request's admitted events: make sure of their topics, the first attempt to
//! Kafka, the store for what Kafka did not take, the scheduler woken, the outcomes remembered
//! in the dedupe window. The retry scheduler makes sure of its topics and sends through the
//! same [`ensure_topics`] and [`attempt`].

use std::collections::HashMap;
use std::time::Duration;

use courier_shared::ProblemKind;
use futures::future::join_all;
use tracing::Instrument as _;

use super::admit::Admitted;
use super::{Ledger, Outcome};
use crate::dedupe::Remembered;
use crate::delivery::{Delivered, DeliveryError, Outgoing, Pipeline, Route};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::NewEntry;
use crate::store::now_ms;
use crate::topics::{Creation, EnsureError, TopicManager};

/// Makes sure each topic of `wanted` exists (creating it as its [`Creation`] allows), all
/// concurrently; the topics that could not be made sure of, with why.
pub async fn ensure_topics<'a>(
    topics: &TopicManager,
    wanted: &[(&'a str, Creation<'a>)],
) -> HashMap<&'a str, EnsureError> {
    let checks = join_all(
        wanted
            .iter()
            .map(|(topic, creation)| topics.ensure(topic, *creation)),
    )
    .await;
    wanted
        .iter()
        .zip(checks)
        .filter_map(|((t, _), r)| r.err().map(|e| (*t, e)))
        .collect()
}

/// How an attempt goes to Kafka.
#[derive(Debug, Clone, Copy)]
pub enum Lane {
    /// Live traffic, as the circuit routes it, within the intake queue.
    Live(Route),
    /// Stored events, within the redelivery budget (waiting for room rather than refusing).
    Redelivery,
}

/// One attempt to write `outgoing` to Kafka, waiting at most `ack_timeout`; results in input
/// order. A bypassing live lane sends nothing: every event fails with
/// [`DeliveryError::CircuitOpen`].
pub async fn attempt(
    pipeline: &Pipeline,
    outgoing: &[Outgoing<'_>],
    lane: Lane,
    ack_timeout: Duration,
) -> Vec<Result<Delivered, DeliveryError>> {
    match lane {
        Lane::Live(Route::Bypass) => vec![Err(DeliveryError::CircuitOpen); outgoing.len()],
        Lane::Live(_) => {
            let span = traced(|| tracing::info_span!("kafka.produce", events = outgoing.len()));
            pipeline
                .deliver_all_within(outgoing, ack_timeout)
                .instrument(span)
                .await
        }
        Lane::Redelivery => pipeline.redeliver(outgoing, ack_timeout).await,
    }
}

/// Settles `admitted` (events of one request), writing each outcome into `ledger`.
pub(super) async fn settle(
    state: &AppState,
    ledger: &mut Ledger,
    mut admitted: Vec<Admitted>,
    explicit_topic: Option<&str>,
) {
    // Each distinct topic is checked (and created) once; a new topic counts against the
    // creation limit of the service of its first event.
    let create = explicit_topic.is_none();
    let mut wanted: Vec<(&str, Creation<'_>)> = admitted
        .iter()
        .map(|a| {
            let creation = if create {
                Creation::ForService(ledger.labels[a.index].0.as_str())
            } else {
                Creation::Never
            };
            (a.topic.as_str(), creation)
        })
        .collect();
    wanted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    wanted.dedup_by(|a, b| a.0 == b.0);
    let unavailable: HashMap<&str, ApiError> = ensure_topics(state.topics(), &wanted)
        .await
        .into_iter()
        .map(|(t, e)| (t, ensure_error(state, e)))
        .collect();

    let mut sendable = Vec::with_capacity(admitted.len());
    let mut to_store: Vec<(&Admitted, String)> = Vec::new();
    let mut outcomes: Vec<(usize, Outcome)> = Vec::new();
    for a in &admitted {
        match unavailable.get(a.topic.as_str()) {
            // Kafka cannot be asked about a routed topic right now: the event is still
            // durable in the store, and the scheduler makes sure of the topic before sending
            // (unless the service has no topic creation left: it must not slip past the limit).
            Some(err)
                if create
                    && state.event_store().is_some()
                    && err.kind == ProblemKind::KafkaUnavailable
                    && state.topics().creation_allowed(&ledger.labels[a.index].0) =>
            {
                to_store.push((a, err.detail.clone()));
            }
            Some(err) => outcomes.push((
                a.index,
                Outcome::Refused {
                    id: Some(a.id.clone()),
                    error: err.clone(),
                },
            )),
            None => sendable.push(a),
        }
    }
    let outgoing: Vec<Outgoing<'_>> = sendable
        .iter()
        .map(|a| Outgoing {
            topic: &a.topic,
            record: &a.record,
        })
        .collect();
    // While Kafka is known to be down, waiting for an acknowledgement only delays the 202: the
    // events are stored at once, but for one probing request per interval, which waits only
    // the probe's deadline.
    let route = match state.event_store() {
        Some(_) => state.pipeline().circuit().route(),
        None => Route::Send,
    };
    let delivery = state.delivery();
    let ack_timeout = Duration::from_millis(match route {
        Route::Probe => delivery.probe_ack_timeout_ms,
        _ => delivery.ack_timeout_ms,
    });
    let results = attempt(state.pipeline(), &outgoing, Lane::Live(route), ack_timeout).await;
    for (a, result) in sendable.iter().zip(results) {
        match result {
            Ok(at) => outcomes.push((
                a.index,
                Outcome::Delivered {
                    id: a.id.clone(),
                    topic: a.topic.clone(),
                    at,
                },
            )),
            Err(e) => {
                if e.is_unknown_topic() {
                    state.topics().forget(&a.topic);
                }
                if route != Route::Bypass {
                    *ledger.failures.entry(e.to_string()).or_default() += 1;
                }
                if state.event_store().is_some() && e.is_storable() {
                    to_store.push((a, e.to_string()));
                } else {
                    outcomes.push((
                        a.index,
                        Outcome::Refused {
                            id: Some(a.id.clone()),
                            error: delivery_error(state, &e),
                        },
                    ));
                }
            }
        }
    }
    if !to_store.is_empty() {
        outcomes.extend(store(state, &to_store).await);
    }
    for (index, outcome) in outcomes {
        ledger.outcomes[index] = Some(outcome);
    }
    for a in &mut admitted {
        let Some(key) = a.dedupe.take() else {
            continue;
        };
        let remembered = match &ledger.outcomes[a.index] {
            Some(Outcome::Delivered { at, .. }) => Remembered::Delivered { at: *at },
            Some(Outcome::Stored { .. }) => Remembered::Stored,
            _ => continue,
        };
        state.dedupe().remember(key, remembered);
    }
}

/// Commits events Kafka did not take to the store and wakes the scheduler: `Stored` for each,
/// or, if the store refuses, a retriable refusal for each (nothing of them was accepted).
async fn store(state: &AppState, to_store: &[(&Admitted, String)]) -> Vec<(usize, Outcome)> {
    let Some(dlq) = state.event_store() else {
        return Vec::new();
    };
    let first_attempt =
        now_ms() + i64::try_from(state.dlq_config().backoff_initial_ms).unwrap_or(0);
    let entries = to_store
        .iter()
        .map(|(a, e)| NewEntry {
            event_id: a.id.clone(),
            event_source: a.source.clone(),
            topic: a.topic.clone(),
            record: a.record.clone(),
            error: e.clone(),
            next_attempt_ms: first_attempt,
        })
        .collect();
    let span = traced(|| tracing::info_span!("dlq.store", events = to_store.len()));
    match dlq.store(entries).instrument(span).await {
        Ok(()) => {
            state.wake_scheduler();
            to_store
                .iter()
                .map(|(a, _)| {
                    (
                        a.index,
                        Outcome::Stored {
                            id: a.id.clone(),
                            topic: a.topic.clone(),
                        },
                    )
                })
                .collect()
        }
        Err(e) => {
            tracing::error!(error = %e, events = to_store.len(), "could not store events");
            let error = state.retriable(
                ProblemKind::StoreUnavailable,
                format!(
                    "Kafka did not acknowledge and the store refused: {e}; nothing was accepted"
                ),
            );
            to_store
                .iter()
                .map(|(a, _)| {
                    (
                        a.index,
                        Outcome::Refused {
                            id: Some(a.id.clone()),
                            error: error.clone(),
                        },
                    )
                })
                .collect()
        }
    }
}

/// A span of its own for a step of the request when traces are exported; otherwise none (the
/// logs have the request's span, and the hot path saves the allocation).
fn traced(span: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if courier_telemetry::traces_on() {
        span()
    } else {
        tracing::Span::none()
    }
}

fn ensure_error(state: &AppState, e: EnsureError) -> ApiError {
    match e {
        EnsureError::Name(e) => ApiError::new(ProblemKind::InvalidTopic, e.to_string()),
        EnsureError::Policy(r) => ApiError::new(ProblemKind::TopicNotAllowed, r.to_string()),
        EnsureError::Unknown(t) => ApiError::new(
            ProblemKind::UnknownTopic,
            format!("topic `{t}` does not exist; create it first or publish to /v1/events"),
        ),
        EnsureError::Kafka(m) => state.retriable(
            ProblemKind::KafkaUnavailable,
            format!("could not make sure the topic exists: {m}"),
        ),
        e @ EnsureError::CreationLimited {
            retry_after_secs, ..
        } => ApiError::new(ProblemKind::TopicCreationLimited, e.to_string())
            .retry_after(retry_after_secs),
    }
}

fn delivery_error(state: &AppState, e: &DeliveryError) -> ApiError {
    match e {
        DeliveryError::QueueFull => state.retriable(
            ProblemKind::Overloaded,
            "the intake queue is full; nothing of this event was accepted",
        ),
        DeliveryError::ShuttingDown => state.retriable(ProblemKind::ShuttingDown, e.to_string()),
        e if e.is_retriable() => state.retriable(
            ProblemKind::KafkaUnavailable,
            format!("{e}; nothing was accepted, send it again"),
        ),
        e => ApiError::new(ProblemKind::KafkaRejected, e.to_string()),
    }
}
