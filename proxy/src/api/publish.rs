//! `POST /v1/events` and `POST /v1/topics/{topic}/events`: validate, route, make sure the
//! topic exists, hand every event to the pipeline at once, and answer only when each event
//! has its outcome. 200 means Kafka acknowledged (`acks=all`); a batch answers per event.
//!
//! Authentication comes first: without a valid API key (when `auth.enabled`) nothing of the
//! request is read. The key names the service; an event whose `source` names another one is
//! refused (403 `source-not-allowed`), and the topic policy decides for the key's service.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use courier_shared::topic::service_of;
use courier_shared::{Event, EventError, KafkaRecord, Problem, ProblemKind, Refusal, to_record};
use futures::future::join_all;
use serde::Serialize;
use tracing::Instrument as _;

use super::AppState;
use super::body::{BodyFormat, Parsed, event_error, parse, parse_binary, read_body};
use super::dedupe::{DedupeKey, Remembered};
use crate::auth::Identity;
use crate::delivery::{Delivered, DeliveryError, Outgoing, Route};
use crate::dlq::NewEntry;
use crate::dlq::store::now_ms;
use crate::error::ApiError;
use crate::metrics::EventOutcome;
use crate::topics::{Creation, EnsureError};

/// What happened to one event.
#[derive(Debug)]
pub enum Outcome {
    /// Kafka did not acknowledge it in time; it is committed to the DLQ store and the retry
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

/// Response body for one delivered event, and per event in a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventResult {
    /// Position in the batch (0 for a single event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Event id (assigned by the proxy when the client sent none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `delivered`, `stored` (durable, delivered later), `invalid` (do not resend) or
    /// `failed` (resend later).
    pub status: &'static str,
    /// The HTTP status this event alone would have got.
    pub code: u16,
    /// Topic written to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Partition written to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// Offset written at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Why the event was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
    /// True when this was a resend of an event accepted within the dedupe window: the answer
    /// is the first copy's, and nothing was written again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(required = false)]
    pub duplicate: bool,
}

/// Response body of a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchResult {
    /// Events acknowledged by Kafka.
    pub delivered: usize,
    /// Events committed to the DLQ store, to be delivered by the retry scheduler.
    pub stored: usize,
    /// Events refused for good.
    pub invalid: usize,
    /// Events that may succeed when sent again.
    pub failed: usize,
    /// One entry per event, in request order.
    pub results: Vec<EventResult>,
}

impl Outcome {
    fn result(&self, index: Option<usize>) -> EventResult {
        match self {
            Self::Delivered { id, topic, at } => EventResult {
                index,
                id: Some(id.clone()),
                status: "delivered",
                code: 200,
                topic: Some(topic.clone()),
                partition: Some(at.partition),
                offset: Some(at.offset),
                problem: None,
                duplicate: false,
            },
            Self::Stored { id, topic } => EventResult {
                index,
                id: Some(id.clone()),
                status: "stored",
                code: 202,
                topic: Some(topic.clone()),
                partition: None,
                offset: None,
                problem: None,
                duplicate: false,
            },
            Self::Refused { id, error } => EventResult {
                index,
                id: id.clone(),
                status: if error.kind.is_retriable() {
                    "failed"
                } else {
                    "invalid"
                },
                code: error.kind.status(),
                topic: None,
                partition: None,
                offset: None,
                problem: Some(error.problem()),
                duplicate: false,
            },
            Self::Duplicate { id, topic, first } => {
                let first = match first {
                    Remembered::Delivered { at } => Self::Delivered {
                        id: id.clone(),
                        topic: topic.clone(),
                        at: *at,
                    },
                    Remembered::Stored => Self::Stored {
                        id: id.clone(),
                        topic: topic.clone(),
                    },
                };
                EventResult {
                    duplicate: true,
                    ..first.result(index)
                }
            }
        }
    }
}

/// Bodies up to this size are parsed on the async worker (a few tens of microseconds).
const PARSE_INLINE_BYTES: usize = 64 * 1024;

/// `POST /v1/events`: topics from the naming policy.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "publish",
    summary = "Publish one event, a batch or NDJSON; topics from the naming policy",
    description = "200: every event acknowledged by Kafka (`acks=all`); 202: every event durable \
        (delivered or committed to the DLQ store); 207: a status per event; 4xx/5xx: nothing \
        accepted, a problem document (or, for a batch, a status per event).",
    request_body(content(
        (super::openapi::CloudEvent = "application/cloudevents+json"),
        (super::openapi::CloudEventBatch = "application/cloudevents-batch+json"),
        (super::openapi::CloudEventBatch = "application/json"),
        (String = "application/x-ndjson"),
    )),
    responses(
        (status = 200, description = "Delivered: Kafka has every event", body = super::openapi::PublishAnswer),
        (status = 202, description = "Durable: stored events are delivered later", body = super::openapi::PublishAnswer),
        (status = 207, description = "A batch with mixed outcomes", body = BatchResult),
        (status = 422, description = "Every event invalid: a problem, or for a batch a status per event",
            content((BatchResult = "application/json"), (Problem = "application/problem+json"))),
        (status = 429, description = "Over capacity or rate: nothing accepted, retry after `Retry-After`",
            content((BatchResult = "application/json"), (Problem = "application/problem+json"))),
        (status = 503, description = "Neither Kafka nor the DLQ store took the events: nothing accepted",
            content((BatchResult = "application/json"), (Problem = "application/problem+json"))),
    ),
    security(("api_key" = []))
)]
pub async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    handle(&state, &headers, body, None).await
}

/// `POST /v1/topics/{topic}/events`: an explicit, existing topic.
#[utoipa::path(
    post,
    path = "/v1/topics/{topic}/events",
    tag = "publish",
    summary = "Publish to an explicit topic, which must exist",
    params(("topic" = String, Path, description = "An existing topic the key's service may publish to")),
    request_body(content(
        (super::openapi::CloudEvent = "application/cloudevents+json"),
        (super::openapi::CloudEventBatch = "application/cloudevents-batch+json"),
        (super::openapi::CloudEventBatch = "application/json"),
        (String = "application/x-ndjson"),
    )),
    responses(
        (status = 200, description = "Delivered: Kafka has every event", body = super::openapi::PublishAnswer),
        (status = 202, description = "Durable: stored events are delivered later", body = super::openapi::PublishAnswer),
        (status = 207, description = "A batch with mixed outcomes", body = BatchResult),
        (status = 422, description = "Every event invalid: a problem, or for a batch a status per event",
            content((BatchResult = "application/json"), (Problem = "application/problem+json"))),
        (status = 429, description = "Over capacity or rate: nothing accepted, retry after `Retry-After`",
            content((BatchResult = "application/json"), (Problem = "application/problem+json"))),
        (status = 503, description = "Neither Kafka nor the DLQ store took the events: nothing accepted",
            content((BatchResult = "application/json"), (Problem = "application/problem+json"))),
    ),
    security(("api_key" = []))
)]
pub async fn publish_to_topic(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    courier_shared::topic::validate_topic_name(&topic)
        .map_err(|e| ApiError::new(ProblemKind::InvalidTopic, e.to_string()))?;
    handle(&state, &headers, body, Some(topic)).await
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    topic: Option<String>,
) -> Result<Response, ApiError> {
    let identity = match state.keys().authenticate(headers) {
        Ok(identity) => identity,
        Err(e) => {
            state
                .pipeline()
                .metrics()
                .record_auth_refusals("unknown", "unauthenticated", 1);
            tracing::info!(reason = %e, "publish refused: not authenticated");
            return Ok(e.response());
        }
    };
    if state.is_shutting_down() {
        return Err(state.retriable(ProblemKind::ShuttingDown, "not accepting new events"));
    }
    let format = BodyFormat::from_headers(headers)?;
    let limits = state.limits();
    let body = read_body(
        body,
        limits.max_body_bytes,
        std::time::Duration::from_millis(limits.body_read_timeout_ms),
    )
    .await?;
    let max_events = limits.max_batch_events;
    let body_len = body.len();
    let parse = move |headers: &HeaderMap| match format {
        BodyFormat::Binary => parse_binary(headers, &body),
        format => parse(format, &body, max_events),
    };
    let parsed = if body_len > PARSE_INLINE_BYTES {
        // Parsing a large body takes milliseconds: keep it off the async workers.
        let headers = headers.clone();
        tokio::task::spawn_blocking(move || parse(&headers))
            .await
            .map_err(|e| ApiError::new(ProblemKind::Internal, format!("parser failed: {e}")))??
    } else {
        parse(headers)?
    };
    match parsed {
        Parsed::Single(event) => {
            let outcome = process(
                state,
                vec![Ok(*event)],
                topic.as_deref(),
                identity.as_deref(),
            )
            .await
            .pop()
            .ok_or_else(|| ApiError::new(ProblemKind::Internal, "no outcome"))?;
            if let Outcome::Refused { error, .. } = outcome {
                return Err(error);
            }
            let result = outcome.result(None);
            let status = StatusCode::from_u16(result.code).unwrap_or(StatusCode::OK);
            Ok((status, Json(result)).into_response())
        }
        Parsed::Batch(events) => {
            let outcomes = process(state, events, topic.as_deref(), identity.as_deref()).await;
            Ok(batch_response(state, &outcomes))
        }
    }
}

fn batch_response(state: &AppState, outcomes: &[Outcome]) -> Response {
    let mut body = BatchResult {
        delivered: 0,
        stored: 0,
        invalid: 0,
        failed: 0,
        results: Vec::with_capacity(outcomes.len()),
    };
    let mut all_overloaded = true;
    for (i, outcome) in outcomes.iter().enumerate() {
        let r = outcome.result(Some(i));
        match r.status {
            "delivered" => body.delivered += 1,
            "stored" => body.stored += 1,
            "failed" => body.failed += 1,
            _ => body.invalid += 1,
        }
        all_overloaded &= r.code == 429;
        body.results.push(r);
    }
    let n = outcomes.len();
    let status = if body.delivered == n {
        StatusCode::OK
    } else if body.delivered + body.stored == n {
        StatusCode::ACCEPTED
    } else if body.invalid == n {
        StatusCode::UNPROCESSABLE_ENTITY
    } else if body.failed == n && all_overloaded {
        StatusCode::TOO_MANY_REQUESTS
    } else if body.failed == n {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::MULTI_STATUS
    };
    let mut response = (status, Json(body)).into_response();
    if outcomes
        .iter()
        .any(|o| matches!(o, Outcome::Refused { error, .. } if error.kind.is_retriable()))
    {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, state.retry_after().into());
    }
    response
}

/// A valid event on its way, with everything needed to answer for it.
struct Routed {
    index: usize,
    id: String,
    /// With `id`, the event's identity.
    source: String,
    /// The event's key in the dedupe window, when the client chose its id (only such events
    /// are deduplicated) and the window is on.
    dedupe: Option<DedupeKey>,
    topic: String,
    record: KafkaRecord,
}

/// Runs events through routing, topic creation and delivery; outcomes in input order.
/// `identity` is the caller's, when authentication is on: each event's `source` must name
/// its service, and the policy decides for that service.
pub async fn process(
    state: &AppState,
    events: Vec<Result<Event, EventError>>,
    explicit_topic: Option<&str>,
    identity: Option<&Identity>,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(events.len());
    // (service, topic) of each event, as far as it got: the metrics' labels.
    let mut labels: Vec<(String, String)> = Vec::with_capacity(events.len());
    let mut routed: Vec<Routed> = Vec::with_capacity(events.len());
    let mut auth_refusals: HashMap<(String, &'static str), u64> = HashMap::new();
    let max_event_bytes = state.limits().max_event_bytes;
    // One policy for the whole request, even if an operator changes it meanwhile.
    let policy = state.topics().policy();
    // When traces are on, each record carries the request's trace context (`traceparent`), and
    // so does its copy in the dead-letter store.
    let trace_headers = courier_telemetry::record_headers(&tracing::Span::current());
    for (index, event) in events.into_iter().enumerate() {
        outcomes.push(None);
        labels.push(("unknown".to_owned(), String::new()));
        let refuse = |id: Option<String>, error: ApiError| Some(Outcome::Refused { id, error });
        let mut event = match event {
            Ok(e) => e,
            Err(e) => {
                outcomes[index] = refuse(None, event_error(&e));
                continue;
            }
        };
        // The service is read once and serves routing, the policy check and the rate limit.
        let service = match service_of(&event.source) {
            Ok(service) => service,
            Err(e) => {
                let err = ApiError::new(ProblemKind::InvalidTopic, e.to_string());
                if let Some(identity) = identity {
                    labels[index].0.clone_from(&identity.service);
                }
                outcomes[index] = refuse(Some(event.id), err);
                continue;
            }
        };
        if let Some(identity) = identity
            && identity.service != service
        {
            let err = ApiError::new(
                ProblemKind::SourceNotAllowed,
                format!(
                    "the API key is service `{}`'s; source `{}` names service `{service}`",
                    identity.service, event.source
                ),
            );
            labels[index].0.clone_from(&identity.service);
            *auth_refusals
                .entry((identity.service.clone(), "spoofed_source"))
                .or_default() += 1;
            outcomes[index] = refuse(Some(event.id), err);
            continue;
        }
        // The JSON Schema of (service, type), when one is registered: an invalid event is
        // refused, or goes to its service's error topic under a proxy-chosen errortype.
        let to_error_topic = match state
            .schemas()
            .check(&service, &event, explicit_topic.is_none())
        {
            Ok(annotation) => annotation.is_some_and(|a| a.apply(&mut event)),
            Err(err) => {
                labels[index].0 = service;
                outcomes[index] = refuse(Some(event.id), err);
                continue;
            }
        };
        let topic = match explicit_topic {
            Some(t) => t.to_owned(),
            None => match policy.route_for(&service, &event) {
                Ok(t) => t,
                Err(e) => {
                    let err = ApiError::new(ProblemKind::InvalidTopic, e.to_string());
                    labels[index].0 = service;
                    outcomes[index] = refuse(Some(event.id), err);
                    continue;
                }
            },
        };
        let errortype_allowed = match to_error_topic {
            true => Ok(()),
            false => policy.check_errortype(&service, &event),
        };
        let allowed = errortype_allowed
            .and_then(|()| policy.check(&service, &topic))
            .map_err(|r| {
                let reason = match r {
                    Refusal::NotOwner { .. } => "acl",
                    _ => "policy",
                };
                *auth_refusals.entry((service.clone(), reason)).or_default() += 1;
                ApiError::new(ProblemKind::TopicNotAllowed, r.to_string())
            })
            .and_then(|()| rate_limit(state, &service));
        labels[index] = (service, topic.clone());
        if let Err(err) = allowed {
            outcomes[index] = refuse(Some(event.id), err);
            continue;
        }
        let dedupe = (!event.id_assigned && state.dedupe().is_on())
            .then(|| DedupeKey::new(&topic, &event.source, &event.id));
        if let Some(first) = dedupe.as_ref().and_then(|k| state.dedupe().get(k)) {
            outcomes[index] = Some(Outcome::Duplicate {
                id: event.id,
                topic,
                first,
            });
            continue;
        }
        let mut record = to_record(&event);
        record.headers.extend(trace_headers.iter().cloned());
        let size = record_size(&record);
        if size > max_event_bytes {
            let err = ApiError::new(
                ProblemKind::EventTooLarge,
                format!("the event takes {size} bytes in Kafka; the limit is {max_event_bytes}"),
            );
            outcomes[index] = refuse(Some(event.id), err);
            continue;
        }
        routed.push(Routed {
            index,
            dedupe,
            source: event.source,
            id: event.id,
            topic,
            record,
        });
    }

    // Each distinct topic is checked (and created) once, all of them concurrently; a new
    // topic counts against the creation limit of the service of its first event.
    let mut topics: Vec<(&str, &str)> = routed
        .iter()
        .map(|r| (r.topic.as_str(), labels[r.index].0.as_str()))
        .collect();
    topics.sort_unstable();
    topics.dedup_by(|a, b| a.0 == b.0);
    let create = explicit_topic.is_none();
    let checks = join_all(topics.iter().map(|(topic, service)| {
        let creation = if create {
            Creation::ForService(service)
        } else {
            Creation::Never
        };
        state.topics().ensure(topic, creation)
    }))
    .await;
    let unavailable: HashMap<&str, ApiError> = topics
        .iter()
        .zip(checks)
        .filter_map(|((t, _), r)| r.err().map(|e| (*t, ensure_error(state, e))))
        .collect();

    let mut sendable = Vec::with_capacity(routed.len());
    let mut to_store: Vec<(&Routed, String)> = Vec::new();
    for r in &routed {
        match unavailable.get(r.topic.as_str()) {
            // Kafka cannot be asked about a routed topic right now: the event is still
            // durable in the store, and the scheduler makes sure of the topic before sending
            // (unless the service has no topic creation left: it must not slip past the limit).
            Some(err)
                if create
                    && state.event_store().is_some()
                    && err.kind == ProblemKind::KafkaUnavailable
                    && state.topics().creation_allowed(&labels[r.index].0) =>
            {
                to_store.push((r, err.detail.clone()));
            }
            Some(err) => {
                outcomes[r.index] = Some(Outcome::Refused {
                    id: Some(r.id.clone()),
                    error: err.clone(),
                });
            }
            None => sendable.push(r),
        }
    }
    let outgoing: Vec<Outgoing<'_>> = sendable
        .iter()
        .map(|r| Outgoing {
            topic: &r.topic,
            record: &r.record,
        })
        .collect();
    // While Kafka is known to be down, waiting for an acknowledgement only delays the 202: the
    // events are stored at once, but for one probing request per interval, which waits only
    // the probe's deadline.
    let route = match state.event_store() {
        Some(_) => state.pipeline().circuit().route(),
        None => Route::Send,
    };
    let bypass = route == Route::Bypass;
    let results = if bypass {
        vec![Err(DeliveryError::CircuitOpen); outgoing.len()]
    } else {
        let span = traced(|| tracing::info_span!("kafka.produce", events = outgoing.len()));
        let delivery = state.delivery();
        let ack_timeout = match route {
            Route::Probe => delivery.probe_ack_timeout_ms,
            _ => delivery.ack_timeout_ms,
        };
        state
            .pipeline()
            .deliver_all_within(&outgoing, std::time::Duration::from_millis(ack_timeout))
            .instrument(span)
            .await
    };
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for (r, result) in sendable.iter().zip(results) {
        match result {
            Ok(at) => {
                outcomes[r.index] = Some(Outcome::Delivered {
                    id: r.id.clone(),
                    topic: r.topic.clone(),
                    at,
                });
            }
            Err(e) => {
                if e.is_unknown_topic() {
                    state.topics().forget(&r.topic);
                }
                if !bypass {
                    *failures.entry(e.to_string()).or_default() += 1;
                }
                if state.event_store().is_some() && e.is_storable() {
                    to_store.push((r, e.to_string()));
                } else {
                    outcomes[r.index] = Some(Outcome::Refused {
                        id: Some(r.id.clone()),
                        error: delivery_error(state, &e),
                    });
                }
            }
        }
    }
    if let Some(dlq) = state.event_store().filter(|_| !to_store.is_empty()) {
        let first_attempt =
            now_ms() + i64::try_from(state.dlq_config().backoff_initial_ms).unwrap_or(0);
        let entries = to_store
            .iter()
            .map(|(r, e)| NewEntry {
                event_id: r.id.clone(),
                event_source: r.source.clone(),
                topic: r.topic.clone(),
                record: r.record.clone(),
                error: e.clone(),
                next_attempt_ms: first_attempt,
            })
            .collect();
        let span = traced(|| tracing::info_span!("dlq.store", events = to_store.len()));
        match dlq.store(entries).instrument(span).await {
            Ok(()) => {
                state.wake_scheduler();
                for (r, _) in &to_store {
                    outcomes[r.index] = Some(Outcome::Stored {
                        id: r.id.clone(),
                        topic: r.topic.clone(),
                    });
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = to_store.len(), "could not store events");
                let error = state.retriable(
                    ProblemKind::StoreUnavailable,
                    format!("Kafka did not acknowledge and the DLQ store refused: {e}; nothing was accepted"),
                );
                for (r, _) in &to_store {
                    outcomes[r.index] = Some(Outcome::Refused {
                        id: Some(r.id.clone()),
                        error: error.clone(),
                    });
                }
            }
        }
    }
    for r in &mut routed {
        let Some(key) = r.dedupe.take() else {
            continue;
        };
        let remembered = match &outcomes[r.index] {
            Some(Outcome::Delivered { at, .. }) => Remembered::Delivered { at: *at },
            Some(Outcome::Stored { .. }) => Remembered::Stored,
            _ => continue,
        };
        state.dedupe().remember(key, remembered);
    }
    for (error, count) in failures {
        tracing::warn!(%error, count, "events not delivered");
    }
    // Counted per distinct label set, not per event: a batch to one topic is one update.
    let (mut delivered, mut stored, mut duplicates) = (0, 0, 0);
    let mut counts: HashMap<(&str, &str, EventOutcome), u64> = HashMap::new();
    let mut refusals: HashMap<(&str, &'static str), u64> = HashMap::new();
    for (o, (service, topic)) in outcomes.iter().zip(&labels) {
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
        *counts.entry((service, topic, outcome)).or_default() += 1;
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
        .map(|o| {
            o.unwrap_or_else(|| Outcome::Refused {
                id: None,
                error: ApiError::new(ProblemKind::Internal, "event lost track of"),
            })
        })
        .collect()
}

/// Takes one event from `service`'s rate limit, if there is one.
/// A span of its own for a step of the request when traces are exported; otherwise none (the
/// logs have the request's span, and the hot path saves the allocation).
fn traced(span: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if courier_telemetry::traces_on() {
        span()
    } else {
        tracing::Span::none()
    }
}

fn rate_limit(state: &AppState, service: &str) -> Result<(), ApiError> {
    let Some(limits) = state.rate_limits() else {
        return Ok(());
    };
    limits.check(service).map_err(|wait| {
        ApiError::new(
            ProblemKind::RateLimited,
            format!(
                "service `{service}` is over its limit of {} events/s; nothing of this event was accepted",
                state.limits().service_events_per_sec
            ),
        )
        .retry_after(wait.as_secs().max(1))
    })
}

/// Bytes the record takes in a Kafka batch, near enough for a limit check.
fn record_size(r: &KafkaRecord) -> usize {
    r.key.as_ref().map_or(0, Vec::len)
        + r.value.as_ref().map_or(0, Vec::len)
        + r.headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>()
        + 32
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
