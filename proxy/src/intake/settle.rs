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

/// What became of an admitted event, before it has its outcome.
enum Fate {
    Delivered(Delivered),
    /// To the store, for this reason.
    Store(String),
    Refused(ApiError),
}

/// Settles `admitted` (events of one request), writing each outcome into `ledger`.
pub(super) async fn settle(
    state: &AppState,
    ledger: &mut Ledger,
    admitted: Vec<Admitted>,
    explicit_topic: Option<&str>,
) {
    // Each distinct topic is checked (and created) once; a new topic counts against the
    // creation limit of the service of its first event.
    let create = explicit_topic.is_none();
    let mut wanted: Vec<(&str, Creation<'_>)> = admitted
        .iter()
        .map(|a| {
            let creation = if create {
                Creation::ForService(ledger.labels[a.index].service())
            } else {
                Creation::Never
            };
            (&*a.topic, creation)
        })
        .collect();
    wanted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    wanted.dedup_by(|a, b| a.0 == b.0);
    let unavailable: HashMap<&str, ApiError> = ensure_topics(state.topics(), &wanted)
        .await
        .into_iter()
        .map(|(t, e)| (t, ensure_error(state, e)))
        .collect();

    // `None` while the event is still to be sent.
    let mut fates: Vec<Option<Fate>> = admitted
        .iter()
        .map(|a| match unavailable.get(&*a.topic) {
            // Kafka cannot be asked about a routed topic right now: the event is still
            // durable in the store, and the scheduler makes sure of the topic before sending
            // (unless the service has no topic creation left: it must not slip past the limit).
            Some(err)
                if create
                    && state.event_store().is_some()
                    && err.kind == ProblemKind::KafkaUnavailable
                    && state
                        .topics()
                        .creation_allowed(ledger.labels[a.index].service()) =>
            {
                Some(Fate::Store(err.detail.clone()))
            }
            Some(err) => Some(Fate::Refused(err.clone())),
            None => None,
        })
        .collect();
    let outgoing: Vec<Outgoing<'_>> = admitted
        .iter()
        .zip(&fates)
        .filter(|(_, fate)| fate.is_none())
        .map(|(a, _)| Outgoing {
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
    let mut results = attempt(state.pipeline(), &outgoing, Lane::Live(route), ack_timeout)
        .await
        .into_iter();
    for (a, fate) in admitted.iter().zip(&mut fates) {
        if fate.is_some() {
            continue;
        }
        // One result per event sent; an event without one keeps no fate, and the observer
        // refuses it as lost track of.
        let Some(result) = results.next() else {
            break;
        };
        *fate = Some(match result {
            Ok(at) => Fate::Delivered(at),
            Err(e) => {
                if e.is_unknown_topic() {
                    state.topics().forget(&a.topic);
                }
                if route != Route::Bypass {
                    *ledger.failures.entry(e.to_string()).or_default() += 1;
                }
                if state.event_store().is_some() && e.is_storable() {
                    Fate::Store(e.to_string())
                } else {
                    Fate::Refused(delivery_error(state, &e))
                }
            }
        });
    }
    let to_store: Vec<(&Admitted, &str)> = admitted
        .iter()
        .zip(&fates)
        .filter_map(|(a, fate)| match fate {
            Some(Fate::Store(reason)) => Some((a, reason.as_str())),
            _ => None,
        })
        .collect();
    let stored = match to_store.is_empty() {
        true => Ok(()),
        false => store(state, &to_store).await,
    };

    // The outcomes take each event's id and topic from its record, which is done with; the
    // outcomes accepted are remembered for resends, under one reading of the clock.
    let mut remembered = Vec::new();
    for (a, fate) in admitted.into_iter().zip(fates) {
        let (index, dedupe, topic) = (a.index, a.dedupe, a.topic.clone());
        let (outcome, first) = match fate {
            Some(Fate::Delivered(at)) => (
                Outcome::Delivered {
                    id: a.into_id(),
                    topic,
                    at,
                },
                Some(Remembered::Delivered { at }),
            ),
            Some(Fate::Store(_)) => match &stored {
                Ok(()) => (
                    Outcome::Stored {
                        id: a.into_id(),
                        topic,
                    },
                    Some(Remembered::Stored),
                ),
                Err(error) => (
                    Outcome::Refused {
                        id: Some(a.into_id()),
                        error: error.clone(),
                    },
                    None,
                ),
            },
            Some(Fate::Refused(error)) => (
                Outcome::Refused {
                    id: Some(a.into_id()),
                    error,
                },
                None,
            ),
            None => continue,
        };
        if let (Some(key), Some(first)) = (dedupe, first) {
            remembered.push((key, first));
        }
        ledger.outcomes[index] = Some(outcome);
    }
    state.dedupe().remember_all(remembered);
}

/// Commits events Kafka did not take to the store (each with why) and wakes the scheduler; a
/// retriable refusal if the store refuses (nothing of them was accepted).
async fn store(state: &AppState, to_store: &[(&Admitted, &str)]) -> Result<(), ApiError> {
    let Some(dlq) = state.event_store() else {
        return Err(ApiError::new(
            ProblemKind::Internal,
            "no store to keep the events in; nothing was accepted",
        ));
    };
    let first_attempt =
        now_ms() + i64::try_from(state.dlq_config().backoff_initial_ms).unwrap_or(0);
    let entries = to_store
        .iter()
        .map(|(a, reason)| NewEntry {
            event_id: a.id().to_owned(),
            event_source: a.source().to_owned(),
            topic: a.topic.to_string(),
            record: a.record.clone(),
            error: (*reason).to_owned(),
            next_attempt_ms: first_attempt,
        })
        .collect();
    let span = traced(|| tracing::info_span!("dlq.store", events = to_store.len()));
    match dlq.store(entries).instrument(span).await {
        Ok(()) => {
            state.wake_scheduler();
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, events = to_store.len(), "could not store events");
            Err(state.retriable(
                ProblemKind::StoreUnavailable,
                format!(
                    "Kafka did not acknowledge and the store refused: {e}; nothing was accepted"
                ),
            ))
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
