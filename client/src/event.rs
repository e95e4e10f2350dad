//! The event a service publishes: a CloudEvents 1.0 builder with Courier's extension
//! attributes (`category`, `errortype`, `partitionkey`), serialised to structured-mode JSON
//! when it is published.
//!
//! The builder never fails: a value that cannot be serialised or an attribute the proxy
//! would refuse is remembered and reported by [`crate::Client::publish`] as
//! [`crate::Error::InvalidEvent`], before anything is buffered.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::Error;

/// Attributes the builder sets itself; `extension` refuses them.
const RESERVED: [&str; 13] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
    "category",
    "errortype",
    "partitionkey",
];

/// The severity of a log event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that was handled.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    /// The level as written in the event (`info`, `warn`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value of an extension attribute: CloudEvents allows strings, integers and booleans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Extension {
    /// A string.
    String(String),
    /// A 32-bit integer (the CloudEvents `Integer` type).
    Integer(i32),
    /// A boolean.
    Boolean(bool),
}

impl From<&str> for Extension {
    fn from(v: &str) -> Self {
        Self::String(v.to_owned())
    }
}
impl From<String> for Extension {
    fn from(v: String) -> Self {
        Self::String(v)
    }
}
impl From<i32> for Extension {
    fn from(v: i32) -> Self {
        Self::Integer(v)
    }
}
impl From<bool> for Extension {
    fn from(v: bool) -> Self {
        Self::Boolean(v)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Event,
    Log,
    Error,
}

/// A CloudEvent under construction.
///
/// ```
/// use courier::Event;
///
/// let paid = Event::new("invoice.paid")
///     .data(&serde_json::json!({"invoice": 42, "amount": 1999}))
///     .subject("invoice/42")
///     .partition_key("customer-7");
/// let declined = Event::error("payment-declined", "card expired").subject("order/7");
/// let line = Event::log(courier::Level::Warn, "stock below threshold");
/// # let _ = (paid, declined, line);
/// ```
#[derive(Debug, Clone)]
pub struct Event {
    ty: String,
    kind: Kind,
    errortype: Option<String>,
    id: Option<String>,
    source: Option<String>,
    subject: Option<String>,
    time: Option<String>,
    partitionkey: Option<String>,
    dataschema: Option<String>,
    data: Option<Box<RawValue>>,
    extensions: BTreeMap<String, Extension>,
    problem: Option<String>,
}

impl Event {
    /// A business event of type `ty` (e.g. `order.created`), routed to `{service}.events`.
    pub fn new(ty: impl Into<String>) -> Self {
        Self {
            ty: ty.into(),
            kind: Kind::Event,
            errortype: None,
            id: None,
            source: None,
            subject: None,
            time: None,
            partitionkey: None,
            dataschema: None,
            data: None,
            extensions: BTreeMap::new(),
            problem: None,
        }
    }

    /// An error report, routed to `{service}.error.{errortype}`: type `error`, data
    /// `{"message": message}` (replace either with [`Event::ty`] and [`Event::data`]).
    pub fn error(errortype: impl Into<String>, message: impl fmt::Display) -> Self {
        let mut e = Self::new("error");
        e.kind = Kind::Error;
        e.errortype = Some(errortype.into());
        e.data(&serde_json::json!({ "message": message.to_string() }))
    }

    /// A log line, routed to `{service}.logs`: type `log.{level}`, data
    /// `{"level": level, "message": message}`.
    pub fn log(level: Level, message: impl fmt::Display) -> Self {
        let mut e = Self::new(format!("log.{level}"));
        e.kind = Kind::Log;
        e.data(&serde_json::json!({ "level": level.as_str(), "message": message.to_string() }))
    }

    /// Replaces the event type.
    pub fn ty(mut self, ty: impl Into<String>) -> Self {
        self.ty = ty.into();
        self
    }

    /// The payload: any `Serialize` value, sent as JSON (`datacontenttype: application/json`).
    pub fn data<T: Serialize + ?Sized>(mut self, data: &T) -> Self {
        match serde_json::value::to_raw_value(data) {
            Ok(raw) => self.data = Some(raw),
            Err(e) => self.fail(format!("data cannot be serialised as JSON: {e}")),
        }
        self
    }

    /// The event id; the client assigns a UUIDv7 when none is set. Unique per source: the
    /// proxy answers a resent (source, id) with its first outcome instead of a second copy.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The source, a URI reference whose first segment names the service (`/billing/api`);
    /// by default the client's own (`/{service}`).
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The subject: what the event is about, within the source (e.g. `order/7`).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The time the event happened; the time of `publish` when not set.
    pub fn time(mut self, time: chrono::DateTime<chrono::Utc>) -> Self {
        self.time = Some(time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        self
    }

    /// The Kafka record key: events with the same key keep their order.
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partitionkey = Some(key.into());
        self
    }

    /// The URI of the schema `data` follows.
    pub fn dataschema(mut self, uri: impl Into<String>) -> Self {
        self.dataschema = Some(uri.into());
        self
    }

    /// An extension attribute (1 to 64 lowercase letters or digits); becomes a `ce_{name}`
    /// Kafka header.
    pub fn extension(mut self, name: &str, value: impl Into<Extension>) -> Self {
        let legal = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !legal {
            self.fail(format!(
                "extension name `{name}` must be 1 to 64 lowercase letters or digits"
            ));
        } else if RESERVED.contains(&name) {
            self.fail(format!("`{name}` is set with its own builder method"));
        } else {
            self.extensions.insert(name.to_owned(), value.into());
        }
        self
    }

    /// The id set so far (the client assigns one on publish when this is `None`).
    pub fn event_id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    fn fail(&mut self, problem: String) {
        self.problem.get_or_insert(problem);
    }

    /// Completes the attributes the client owns and serialises the event. Returns the id and
    /// the JSON text.
    pub(crate) fn into_json(self, default_source: &str) -> Result<(String, Vec<u8>), Error> {
        if let Some(problem) = self.problem {
            return Err(Error::InvalidEvent(problem));
        }
        if self.ty.is_empty() {
            return Err(Error::InvalidEvent("the event type is empty".into()));
        }
        if let Some(et) = &self.errortype
            && courier_shared::topic::normalise_component(et).is_empty()
        {
            return Err(Error::InvalidEvent(format!(
                "errortype `{et}` has no letters or digits to name a topic with"
            )));
        }
        let id = self
            .id
            .unwrap_or_else(|| uuid::Uuid::now_v7().as_hyphenated().to_string());
        let time = self.time.unwrap_or_else(|| {
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        });
        let wire = Wire {
            specversion: "1.0",
            id: &id,
            source: self.source.as_deref().unwrap_or(default_source),
            ty: &self.ty,
            time: &time,
            subject: self.subject.as_deref(),
            category: (self.kind == Kind::Log).then_some("log"),
            errortype: self.errortype.as_deref(),
            partitionkey: self.partitionkey.as_deref(),
            dataschema: self.dataschema.as_deref(),
            data: self.data.as_deref(),
            extensions: &self.extensions,
        };
        let json = serde_json::to_vec(&wire)
            .map_err(|e| Error::InvalidEvent(format!("cannot serialise the event: {e}")))?;
        Ok((id, json))
    }
}

/// Structured-mode CloudEvents JSON.
#[derive(Serialize)]
struct Wire<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    ty: &'a str,
    time: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errortype: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partitionkey: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dataschema: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(flatten)]
    extensions: &'a BTreeMap<String, Extension>,
}

#[cfg(test)]
mod tests {
    use courier_shared::{Category, NamingPolicy};

    use super::*;

    /// What the proxy makes of the JSON the client sends.
    fn as_proxy_sees_it(event: Event) -> courier_shared::Event {
        let (_, json) = event.into_json("/billing").unwrap();
        courier_shared::Event::from_json(&json).unwrap()
    }

    #[test]
    fn client_sets_id_time_and_source() {
        let e = as_proxy_sees_it(Event::new("invoice.paid").data(&serde_json::json!({"a": 1})));
        assert_eq!(uuid::Uuid::parse_str(&e.id).unwrap().get_version_num(), 7);
        assert!(!e.id_assigned, "the client, not the proxy, chose the id");
        assert!(chrono::DateTime::parse_from_rfc3339(e.time.as_deref().unwrap()).is_ok());
        assert_eq!(e.source, "/billing");
        assert_eq!(e.data.unwrap().as_bytes(), br#"{"a":1}"#);
        let topic = NamingPolicy::default();
        let e = as_proxy_sees_it(Event::new("t").source("/shipping/api"));
        assert_eq!(topic.topic_for(&e).unwrap(), "shipping.events");
    }

    #[test]
    fn errors_and_logs_route_to_their_topics() {
        let policy = NamingPolicy::default();
        let e = as_proxy_sees_it(Event::error("payment-declined", "card expired"));
        assert_eq!(e.category, Category::Error);
        assert_eq!(
            policy.topic_for(&e).unwrap(),
            "billing.error.payment-declined"
        );
        assert_eq!(e.data.unwrap().as_bytes(), br#"{"message":"card expired"}"#);
        let l = as_proxy_sees_it(Event::log(Level::Warn, "low stock").extension("shard", 3));
        assert_eq!(l.category, Category::Log);
        assert_eq!(l.ty, "log.warn");
        assert_eq!(policy.topic_for(&l).unwrap(), "billing.logs");
        assert_eq!(
            l.extensions.get("shard"),
            Some(&courier_shared::ExtensionValue::Integer(3))
        );
    }

    #[test]
    fn attributes_the_proxy_would_refuse_are_refused_up_front() {
        for bad in [
            Event::new("t").extension("Bad", "x"),
            Event::new("t").extension("errortype", "x"),
            Event::new(""),
            Event::error("--", "no letters"),
        ] {
            assert!(matches!(bad.into_json("/s"), Err(Error::InvalidEvent(_))));
        }
    }

    #[test]
    fn explicit_attributes_are_kept() {
        let at = chrono::DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let e = as_proxy_sees_it(
            Event::new("t")
                .id("fixed")
                .time(at)
                .subject("order/7")
                .partition_key("k")
                .dataschema("https://schemas.example/t.json"),
        );
        assert_eq!(e.id, "fixed");
        assert_eq!(e.time.as_deref(), Some("2024-05-01T10:00:00.000000Z"));
        assert_eq!(e.subject.as_deref(), Some("order/7"));
        assert_eq!(e.partitionkey.as_deref(), Some("k"));
        assert!(e.data.is_none());
    }
}
