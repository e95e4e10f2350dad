//! RFC 9457 problem details: the one error shape of Courier's HTTP API, with a stable `type`
//! per problem so clients can branch on it.

use serde::{Deserialize, Serialize};

/// Media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every problem the API can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// The body is not valid JSON.
    MalformedJson,
    /// The body is JSON but not a valid CloudEvent (or batch of them).
    InvalidEvent,
    /// The `Content-Type` is not one the endpoint accepts.
    UnsupportedMediaType,
    /// The body is larger than the configured limit.
    PayloadTooLarge,
    /// One event is larger than the configured limit.
    EventTooLarge,
    /// The batch holds more events than allowed.
    TooManyEvents,
    /// The batch holds no event.
    EmptyBatch,
    /// The topic name is illegal, or no topic can be named for the event.
    InvalidTopic,
    /// The explicit topic does not exist and will not be created.
    UnknownTopic,
    /// Kafka refused the event for good (e.g. larger than the topic allows).
    KafkaRejected,
    /// Kafka did not acknowledge the event in time, and it was not stored.
    KafkaUnavailable,
    /// The intake queue is full.
    Overloaded,
    /// The service sent more events per second than its limit.
    RateLimited,
    /// The service had as many topics created on first publish as the policy allows per
    /// interval.
    TopicCreationLimited,
    /// The request body did not arrive in time.
    RequestTimeout,
    /// Kafka did not acknowledge and the DLQ store could not take the event either.
    StoreUnavailable,
    /// The proxy is shutting down.
    ShuttingDown,
    /// A request to the admin API that is not well-formed.
    InvalidRequest,
    /// No or wrong credentials.
    Unauthorized,
    /// The credentials do not allow this.
    Forbidden,
    /// The topic policy refuses this service this topic (ownership, ACL, allow/deny, no
    /// template).
    TopicNotAllowed,
    /// The event's `source` names another service than the API key it was sent with.
    SourceNotAllowed,
    /// The event's `data` does not match the JSON Schema registered for its service and type.
    SchemaViolation,
    /// The event's `dataschema` names no registered version of its service's and type's schema.
    UnknownSchema,
    /// The request conflicts with the current state (e.g. the topic exists already).
    Conflict,
    /// No such route.
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// A bug or unexpected failure inside the proxy.
    Internal,
}

impl ProblemKind {
    /// Stable short code, the last segment of the `type` URI.
    pub fn code(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed-json",
            Self::InvalidEvent => "invalid-event",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::PayloadTooLarge => "payload-too-large",
            Self::EventTooLarge => "event-too-large",
            Self::TooManyEvents => "too-many-events",
            Self::EmptyBatch => "empty-batch",
            Self::InvalidTopic => "invalid-topic",
            Self::UnknownTopic => "unknown-topic",
            Self::KafkaRejected => "kafka-rejected",
            Self::KafkaUnavailable => "kafka-unavailable",
            Self::Overloaded => "overloaded",
            Self::RateLimited => "rate-limited",
            Self::TopicCreationLimited => "topic-creation-limited",
            Self::RequestTimeout => "request-timeout",
            Self::StoreUnavailable => "store-unavailable",
            Self::ShuttingDown => "shutting-down",
            Self::InvalidRequest => "invalid-request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::TopicNotAllowed => "topic-not-allowed",
            Self::SourceNotAllowed => "source-not-allowed",
            Self::SchemaViolation => "schema-violation",
            Self::UnknownSchema => "unknown-schema",
            Self::Conflict => "conflict",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Internal => "internal",
        }
    }

    /// HTTP status.
    pub fn status(self) -> u16 {
        match self {
            Self::MalformedJson | Self::EmptyBatch | Self::InvalidRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden | Self::TopicNotAllowed | Self::SourceNotAllowed => 403,
            Self::Conflict => 409,
            Self::NotFound | Self::UnknownTopic => 404,
            Self::MethodNotAllowed => 405,
            Self::PayloadTooLarge | Self::EventTooLarge | Self::TooManyEvents => 413,
            Self::UnsupportedMediaType => 415,
            Self::InvalidEvent
            | Self::InvalidTopic
            | Self::KafkaRejected
            | Self::SchemaViolation
            | Self::UnknownSchema => 422,
            Self::Overloaded | Self::RateLimited | Self::TopicCreationLimited => 429,
            Self::RequestTimeout => 408,
            Self::KafkaUnavailable | Self::ShuttingDown | Self::StoreUnavailable => 503,
            Self::Internal => 500,
        }
    }

    /// Short human title, the same for every occurrence.
    pub fn title(self) -> &'static str {
        match self {
            Self::MalformedJson => "The body is not valid JSON",
            Self::InvalidEvent => "The event is not a valid CloudEvent",
            Self::UnsupportedMediaType => "Unsupported content type",
            Self::PayloadTooLarge => "The body is too large",
            Self::EventTooLarge => "The event is too large",
            Self::TooManyEvents => "Too many events in one request",
            Self::EmptyBatch => "The batch holds no event",
            Self::InvalidTopic => "No legal topic for this event",
            Self::UnknownTopic => "The topic does not exist",
            Self::KafkaRejected => "Kafka refused the event; sending it again will not help",
            Self::KafkaUnavailable => "Kafka did not acknowledge the event; it was not accepted",
            Self::Overloaded => "The proxy is at capacity; retry later",
            Self::RateLimited => "The service is over its event rate; retry later",
            Self::TopicCreationLimited => {
                "The service created as many new topics as the policy allows for now; retry later"
            }
            Self::RequestTimeout => "The request body did not arrive in time",
            Self::StoreUnavailable => {
                "Neither Kafka nor the DLQ store took the event; it was not accepted"
            }
            Self::ShuttingDown => "The proxy is shutting down; retry on another instance",
            Self::InvalidRequest => "The request is not well-formed",
            Self::Unauthorized => "Authentication required",
            Self::Forbidden => "Not allowed",
            Self::TopicNotAllowed => "The topic policy does not allow this topic",
            Self::SourceNotAllowed => "The event's source belongs to another service than the key",
            Self::SchemaViolation => "The event's data does not match its type's schema",
            Self::UnknownSchema => "The event's dataschema names no registered schema version",
            Self::Conflict => "The request conflicts with the current state",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::Internal => "Internal error",
        }
    }

    /// The `type` URI.
    pub fn type_uri(self) -> String {
        format!("urn:courier:problem:{}", self.code())
    }

    /// True when the same request may succeed later unchanged.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            Self::KafkaUnavailable
                | Self::Overloaded
                | Self::RateLimited
                | Self::TopicCreationLimited
                | Self::RequestTimeout
                | Self::ShuttingDown
                | Self::StoreUnavailable
        )
    }
}

/// A problem document (RFC 9457), the body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// URI naming the problem kind, e.g. `urn:courier:problem:invalid-event`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Summary of the kind.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What happened to this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Problem {
    /// A problem of this kind with a detail.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            type_uri: kind.type_uri(),
            title: kind.title().to_owned(),
            status: kind.status(),
            detail: Some(detail.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriable_kinds_are_5xx_or_429() {
        for kind in [
            ProblemKind::KafkaUnavailable,
            ProblemKind::Overloaded,
            ProblemKind::ShuttingDown,
        ] {
            assert!(kind.is_retriable());
            assert!(kind.status() == 429 || kind.status() >= 500);
        }
        assert!(!ProblemKind::InvalidEvent.is_retriable());
        let p = Problem::new(ProblemKind::MalformedJson, "x");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["type"], "urn:courier:problem:malformed-json");
        assert_eq!(json["status"], 400);
    }
}
