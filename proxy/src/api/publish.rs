//! `POST /v1/events` and `POST /v1/topics/{topic}/events`: validate, route, make sure the
//! topic exists, hand every event to the pipeline at once, and answer only when each event
//! has its outcome. 200 means Kafka acknowledged (`acks=all`); a batch answers per event.
//!
//! Authentication comes first: without a valid API key (when `auth.enabled`) nothing of the
//! request is read. The key names the service; an event whose `source` names another one is
//! refused (403 `source-not-allowed`), and the topic policy decides for the key's service.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use courier_shared::{Problem, ProblemKind};
use serde::Serialize;

use super::body::{BodyFormat, Parsed, parse, parse_binary, read_body};
use crate::dedupe::Remembered;
use crate::delivery::Delivered;
use crate::error::ApiError;
use crate::intake::{self, Outcome};
use crate::state::AppState;

/// Response body for one delivered event, and per event in a batch (borrowing the id and
/// topic from the event's outcome).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventResult<'a> {
    /// Position in the batch (0 for a single event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Event id (assigned by the proxy when the client sent none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    /// `delivered`, `stored` (durable, delivered later), `invalid` (do not resend) or
    /// `failed` (resend later).
    pub status: &'static str,
    /// The HTTP status this event alone would have got.
    pub code: u16,
    /// Topic written to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<&'a str>,
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
pub struct BatchResult<'a> {
    /// Events acknowledged by Kafka.
    pub delivered: usize,
    /// Events committed to the store, to be delivered by the retry scheduler.
    pub stored: usize,
    /// Events refused for good.
    pub invalid: usize,
    /// Events that may succeed when sent again.
    pub failed: usize,
    /// One entry per event, in request order.
    pub results: Vec<EventResult<'a>>,
}

impl<'a> EventResult<'a> {
    /// An event delivered (200, at its partition and offset) or stored (202).
    fn accepted(index: Option<usize>, id: &'a str, topic: &'a str, at: Option<&Delivered>) -> Self {
        Self {
            index,
            id: Some(id),
            status: if at.is_some() { "delivered" } else { "stored" },
            code: if at.is_some() { 200 } else { 202 },
            topic: Some(topic),
            partition: at.map(|at| at.partition),
            offset: at.map(|at| at.offset),
            problem: None,
            duplicate: false,
        }
    }
}

impl Outcome {
    fn result(&self, index: Option<usize>) -> EventResult<'_> {
        match self {
            Self::Delivered { id, topic, at } => EventResult::accepted(index, id, topic, Some(at)),
            Self::Stored { id, topic } => EventResult::accepted(index, id, topic, None),
            Self::Refused { id, error } => EventResult {
                index,
                id: id.as_deref(),
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
            Self::Duplicate { id, topic, first } => EventResult {
                duplicate: true,
                ..match first {
                    Remembered::Delivered { at } => {
                        EventResult::accepted(index, id, topic, Some(at))
                    }
                    Remembered::Stored => EventResult::accepted(index, id, topic, None),
                }
            },
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
        (delivered or committed to the store); 207: a status per event; 4xx/5xx: nothing \
        accepted, a problem document (or, for a batch, a status per event).",
    request_body(content(
        (super::openapi::CloudEvent = "application/cloudevents+json"),
        (super::openapi::CloudEventBatch = "application/cloudevents-batch+json"),
        (super::openapi::CloudEventBatch = "application/json"),
        (String = "application/x-ndjson"),
    )),
    responses(super::openapi::PublishResponses),
    security(("api_key" = []))
)]
pub async fn publish(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    // The request itself rather than axum's `HeaderMap` extractor, which clones the headers.
    let (parts, body) = request.into_parts();
    handle(&state, &parts.headers, body, None).await
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
    responses(super::openapi::PublishResponses),
    security(("api_key" = []))
)]
pub async fn publish_to_topic(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    courier_shared::topic::validate_topic_name(&topic)
        .map_err(|e| ApiError::new(ProblemKind::InvalidTopic, e.to_string()))?;
    let (parts, body) = request.into_parts();
    handle(&state, &parts.headers, body, Some(topic)).await
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
            let outcome = intake::process(
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
            let outcomes =
                intake::process(state, events, topic.as_deref(), identity.as_deref()).await;
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
