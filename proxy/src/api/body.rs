//! Turning a request body into events: which format the `Content-Type` names, and the
//! whole-request refusals (wrong media type, unreadable or oversized body, empty or oversized
//! batch). Per-event refusals are left to the caller, so one bad event does not sink a batch.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use courier_shared::binding::media_type_essence;
use courier_shared::{Event, EventError, ProblemKind};

use crate::error::{ApiError, event_error};

/// The body formats the publish endpoints accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/cloudevents+json`: one event.
    Single,
    /// `application/cloudevents-batch+json`: a JSON array of events.
    Batch,
    /// `application/json`: one event, or an array of them.
    Json,
    /// `application/x-ndjson` (or `application/ndjson`): one event per line.
    Ndjson,
    /// CloudEvents HTTP binary mode: attributes in `ce-*` headers, the body is `data` of any
    /// media type (`Content-Type`, if any, is its `datacontenttype`).
    Binary,
}

/// The media types accepted, for error messages and the API docs.
pub const ACCEPTED_MEDIA_TYPES: &str = "application/cloudevents+json, application/cloudevents-batch+json, application/json, application/x-ndjson (or any, with the event's attributes in ce-* headers: binary mode)";

impl BodyFormat {
    /// Reads the format from `Content-Type` (parameters such as `charset` are ignored), or
    /// binary mode when a `ce-specversion` header is present and the body is not a structured
    /// CloudEvent (the HTTP binding: structured media types take precedence).
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let binary = courier_shared::http_binding::is_binary_mode(
            headers.keys().map(axum::http::HeaderName::as_str),
        );
        let essence = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(media_type_essence);
        let structured = essence.is_some_and(|e| {
            e.eq_ignore_ascii_case("application/cloudevents+json")
                || e.eq_ignore_ascii_case("application/cloudevents-batch+json")
        });
        if binary && !structured {
            return Ok(Self::Binary);
        }
        let unsupported = |got: &str| {
            ApiError::new(
                ProblemKind::UnsupportedMediaType,
                format!("Content-Type `{got}` is not accepted; use one of: {ACCEPTED_MEDIA_TYPES}"),
            )
        };
        let value = headers
            .get(header::CONTENT_TYPE)
            .ok_or_else(|| unsupported("(none)"))?
            .to_str()
            .map_err(|_| unsupported("(not text)"))?;
        let essence = media_type_essence(value);
        let is = |name: &str| essence.eq_ignore_ascii_case(name);
        if is("application/cloudevents+json") {
            Ok(Self::Single)
        } else if is("application/cloudevents-batch+json") {
            Ok(Self::Batch)
        } else if is("application/json") {
            Ok(Self::Json)
        } else if is("application/x-ndjson") || is("application/ndjson") || is("application/jsonl")
        {
            Ok(Self::Ndjson)
        } else {
            Err(unsupported(value))
        }
    }
}

/// A parsed body: one event (answered as a single event) or a batch (answered per event).
#[derive(Debug)]
pub enum Parsed {
    /// One event; its refusal is the response.
    Single(Box<Event>),
    /// Several events; each gets its own status.
    Batch(Vec<Result<Event, EventError>>),
}

/// Reads the whole body within `timeout` and `limit`: too slow is 408, too large is 413,
/// anything else (a client that hung up, a broken chunked encoding) is 400.
pub async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Err(_elapsed) => Err(ApiError::new(
            ProblemKind::RequestTimeout,
            format!(
                "the body did not arrive within {} ms; nothing was accepted",
                timeout.as_millis()
            ),
        )),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if is_length_limit(&e) => Err(ApiError::new(
            ProblemKind::PayloadTooLarge,
            format!("the body exceeds {limit} bytes"),
        )),
        Ok(Err(e)) => Err(ApiError::new(
            ProblemKind::MalformedJson,
            format!("the body could not be read: {e}"),
        )),
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Parses a binary-mode event: its attributes from `headers`, its data from `body`.
pub fn parse_binary(headers: &HeaderMap, body: &[u8]) -> Result<Parsed, ApiError> {
    let content_type = match headers.get(header::CONTENT_TYPE) {
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::new(
                ProblemKind::InvalidEvent,
                "Content-Type (the event's datacontenttype) is not text",
            )
        })?),
        None => None,
    };
    courier_shared::http_binding::from_http_binary(
        headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
        content_type,
        body,
    )
    .map(|e| Parsed::Single(Box::new(e)))
    .map_err(|e| event_error(&e))
}

/// Parses `body` as `format`, refusing what cannot be answered per event. Binary mode needs
/// the headers too: see [`parse_binary`].
pub fn parse(format: BodyFormat, body: &[u8], max_events: usize) -> Result<Parsed, ApiError> {
    let format = match format {
        BodyFormat::Json if first_non_space(body) == Some(b'[') => BodyFormat::Batch,
        BodyFormat::Json => BodyFormat::Single,
        other => other,
    };
    let events = match format {
        BodyFormat::Single => {
            return Event::from_json(body)
                .map(|e| Parsed::Single(Box::new(e)))
                .map_err(|e| event_error(&e));
        }
        BodyFormat::Batch => Event::batch_from_json(body).map_err(|e| match e {
            EventError::Syntax(_) => event_error(&e),
            other => ApiError::new(
                ProblemKind::InvalidEvent,
                format!("a batch is a JSON array of events: {other}"),
            ),
        })?,
        BodyFormat::Ndjson => Event::batch_from_ndjson(body),
        BodyFormat::Json => unreachable!("resolved above"),
        BodyFormat::Binary => {
            return Err(ApiError::new(
                ProblemKind::Internal,
                "binary mode is parsed with its headers",
            ));
        }
    };
    if events.is_empty() {
        return Err(ApiError::new(
            ProblemKind::EmptyBatch,
            "the body holds no event",
        ));
    }
    if events.len() > max_events {
        return Err(ApiError::new(
            ProblemKind::TooManyEvents,
            format!(
                "{} events in one request; the limit is {max_events}",
                events.len()
            ),
        ));
    }
    Ok(Parsed::Batch(events))
}

fn first_non_space(body: &[u8]) -> Option<u8> {
    body.iter().copied().find(|b| !b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn media_types() {
        assert_eq!(
            BodyFormat::from_headers(&headers("application/json; charset=utf-8")).unwrap(),
            BodyFormat::Json
        );
        assert_eq!(
            BodyFormat::from_headers(&headers("Application/CloudEvents-Batch+JSON")).unwrap(),
            BodyFormat::Batch
        );
        let err = BodyFormat::from_headers(&headers("text/plain")).unwrap_err();
        assert_eq!(err.kind, ProblemKind::UnsupportedMediaType);
        assert!(BodyFormat::from_headers(&HeaderMap::new()).is_err());
    }

    #[test]
    fn whole_body_refusals() {
        let ev = r#"{"specversion":"1.0","source":"s","type":"t"}"#;
        assert!(matches!(
            parse(BodyFormat::Json, format!(" [{ev}]").as_bytes(), 10).unwrap(),
            Parsed::Batch(v) if v.len() == 1
        ));
        assert!(matches!(
            parse(BodyFormat::Json, ev.as_bytes(), 10).unwrap(),
            Parsed::Single(_)
        ));
        let kind = |f, b: &str, n| parse(f, b.as_bytes(), n).unwrap_err().kind;
        assert_eq!(kind(BodyFormat::Batch, "[]", 10), ProblemKind::EmptyBatch);
        assert_eq!(
            kind(BodyFormat::Ndjson, "\n \n", 10),
            ProblemKind::EmptyBatch
        );
        assert_eq!(
            kind(BodyFormat::Batch, "[1,2,3]", 2),
            ProblemKind::TooManyEvents
        );
        assert_eq!(kind(BodyFormat::Batch, "{}", 2), ProblemKind::InvalidEvent);
        assert_eq!(kind(BodyFormat::Batch, "[{", 2), ProblemKind::MalformedJson);
        assert_eq!(kind(BodyFormat::Single, "{", 2), ProblemKind::MalformedJson);
        assert_eq!(kind(BodyFormat::Single, "{}", 2), ProblemKind::InvalidEvent);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Event-shaped JSON: sometimes valid, sometimes missing or mistyping attributes.
    fn event_like() -> impl Strategy<Value = serde_json::Value> {
        (
            proptest::option::of(prop_oneof![
                Just(serde_json::json!("1.0")),
                Just(serde_json::json!(1))
            ]),
            proptest::option::of("[a-z/]{0,8}"),
            proptest::option::of("[a-z.]{0,8}"),
            proptest::option::of(prop_oneof![Just("event"), Just("error"), Just("x")]),
        )
            .prop_map(|(sv, source, ty, category)| {
                let mut o = serde_json::Map::new();
                if let Some(v) = sv {
                    o.insert("specversion".into(), v);
                }
                if let Some(v) = source {
                    o.insert("source".into(), v.into());
                }
                if let Some(v) = ty {
                    o.insert("type".into(), v.into());
                }
                if let Some(v) = category {
                    o.insert("category".into(), v.into());
                }
                serde_json::Value::Object(o)
            })
    }

    proptest! {
        /// Whatever the bytes, parsing answers without panicking, and a body that is not JSON
        /// is always told apart (400) from JSON that is not a valid event (422).
        #[test]
        fn any_bytes_get_the_right_class_of_answer(body in proptest::collection::vec(any::<u8>(), 0..256), which in 0..3usize) {
            let format = [BodyFormat::Single, BodyFormat::Batch, BodyFormat::Json][which];
            // JSON text, as the parser decides it (a number beyond f64 is still JSON).
            let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok();
            match parse(format, &body, 5) {
                Ok(Parsed::Batch(events)) => prop_assert!(!events.is_empty() && events.len() <= 5),
                Ok(Parsed::Single(_)) => prop_assert!(is_json),
                Err(e) if !is_json => prop_assert_eq!(e.kind, ProblemKind::MalformedJson),
                Err(e) => prop_assert_ne!(e.kind, ProblemKind::MalformedJson),
            }
        }

        /// A batch keeps one result per element, in order, valid or not.
        #[test]
        fn batches_answer_every_element(events in proptest::collection::vec(event_like(), 1..8)) {
            let body = serde_json::to_vec(&events).unwrap();
            let Ok(Parsed::Batch(results)) = parse(BodyFormat::Batch, &body, 10) else {
                return Err(TestCaseError::fail("a non-empty array is a batch"));
            };
            prop_assert_eq!(results.len(), events.len());
            for (e, r) in events.iter().zip(&results) {
                let valid = e.get("specversion") == Some(&serde_json::json!("1.0"))
                    && e.get("source").and_then(|s| s.as_str()).is_some_and(|s| !s.is_empty())
                    && e.get("type").and_then(|s| s.as_str()).is_some_and(|s| !s.is_empty())
                    && matches!(e.get("category").and_then(|c| c.as_str()), None | Some("event"));
                prop_assert_eq!(r.is_ok(), valid, "{}", e);
            }
        }
    }
}
