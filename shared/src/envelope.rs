//! The CloudEvents 1.0 envelope as Courier accepts it: structured-mode JSON, one event, a
//! JSON array batch, or NDJSON, plus Courier's `category`, `errortype` and `partitionkey`
//! extension attributes.
//!
//! Parsing is split in two on purpose. The JSON *syntax* is read first (a failure there is the
//! client sending something that is not JSON: HTTP 400); the *attributes* are validated second
//! (a well-formed object that is not a valid event: HTTP 422, per event in a batch). `data` is
//! kept as the raw JSON text the client sent, so it reaches Kafka byte for byte without a
//! parse-and-reserialise round.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// The only CloudEvents version Courier speaks.
pub const SPEC_VERSION: &str = "1.0";
/// Longest extension attribute name accepted (the spec recommends 20; some SDKs use more).
pub const MAX_EXTENSION_NAME_LEN: usize = 64;
/// Most attributes one event may carry; each becomes a Kafka header.
pub const MAX_ATTRIBUTES: usize = 64;
/// Longest `id`, in bytes. Ids are kept in memory for deduplication and make Elasticsearch's
/// `_id` (512 bytes at most, the consumers prefix 17): a bound well inside both.
pub const MAX_ID_LEN: usize = 256;
/// Longest `type`, `errortype` and `datacontenttype`, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest `source`, `subject`, `dataschema`, `partitionkey` and string extension value, in
/// bytes.
pub const MAX_TEXT_LEN: usize = 2_048;
/// Deepest nesting of arrays and objects inside JSON `data`. Consumers read `data` with
/// serde_json, which stops at 128 levels, and some embed it one or two levels deeper (the
/// Elasticsearch document): 64 leaves them room.
pub const MAX_DATA_DEPTH: usize = 64;

/// What an event is for; decides its topic through the [`crate::NamingPolicy`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// A business event (the default).
    #[default]
    Event,
    /// A log line.
    Log,
    /// An error report; requires `errortype`.
    Error,
}

impl Category {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Log => "log",
            Self::Error => "error",
        }
    }

    /// Parses the attribute value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "event" => Some(Self::Event),
            "log" => Some(Self::Log),
            "error" => Some(Self::Error),
            _ => None,
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The payload of an event.
#[derive(Debug, Clone)]
pub enum Data {
    /// JSON `data`, exactly as the client wrote it.
    Json(Box<RawValue>),
    /// Binary `data_base64`, decoded.
    Binary(Vec<u8>),
}

impl Data {
    /// The bytes that become the Kafka record value.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Json(raw) => raw.get().as_bytes(),
            Self::Binary(bytes) => bytes,
        }
    }

    /// The bytes that become the Kafka record value, without copying them.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Self::Json(raw) => Box::<str>::from(raw).into_string().into_bytes(),
            Self::Binary(bytes) => bytes,
        }
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// The value of an extension attribute (CloudEvents allows no nesting).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum ExtensionValue {
    /// A string (also URI, URI-reference and timestamp attributes).
    String(String),
    /// An integer.
    Integer(i64),
    /// A boolean.
    Boolean(bool),
}

impl fmt::Display for ExtensionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(s) => f.write_str(s),
            Self::Integer(i) => write!(f, "{i}"),
            Self::Boolean(b) => write!(f, "{b}"),
        }
    }
}

/// A validated CloudEvent.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `id`: unique per `source`; assigned by the proxy (UUIDv7) when the client sent none.
    pub id: String,
    /// `source`: the producing service's URI reference; the service name is derived from it.
    pub source: String,
    /// `type`.
    pub ty: String,
    /// `subject`.
    pub subject: Option<String>,
    /// `time`, RFC 3339, kept as sent.
    pub time: Option<String>,
    /// `datacontenttype`; `application/json` when `data` is JSON and none was given.
    pub datacontenttype: Option<String>,
    /// `dataschema`.
    pub dataschema: Option<String>,
    /// `data` or `data_base64`.
    pub data: Option<Data>,
    /// Courier's `category` extension.
    pub category: Category,
    /// Courier's `errortype` extension; present exactly when `category` is `error`.
    pub errortype: Option<String>,
    /// The CloudEvents `partitionkey` extension; becomes the Kafka record key.
    pub partitionkey: Option<String>,
    /// All other extension attributes, by name.
    pub extensions: BTreeMap<String, ExtensionValue>,
    /// True when the proxy assigned `id`.
    pub id_assigned: bool,
}

/// Why a body or an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The bytes are not JSON (or not one complete JSON value).
    #[error("malformed JSON: {0}")]
    Syntax(String),
    /// Valid JSON of the wrong shape (e.g. a number where an event object belongs).
    #[error("{0}")]
    Shape(String),
    /// A required attribute is missing.
    #[error("missing required attribute `{0}`")]
    Missing(&'static str),
    /// An attribute appears twice in one event object.
    #[error("attribute `{0}` appears more than once")]
    Duplicate(String),
    /// An attribute has a value the spec does not allow.
    #[error("attribute `{name}` is invalid: {reason}")]
    Invalid {
        /// The attribute's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl EventError {
    pub(crate) fn invalid(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// True when the body was not valid JSON at all (HTTP 400) rather than a JSON value that is
    /// not a valid event (HTTP 422).
    pub fn is_syntax(&self) -> bool {
        matches!(self, Self::Syntax(_))
    }

    /// Classifies a failed read of `bytes`. serde stops at the first thing it cannot use — a
    /// wrong shape, a number too large for an attribute — before reading to the end, and it
    /// skips over values it does not keep without checking their UTF-8; so the body is a
    /// syntax problem exactly when it is not JSON text (RFC 8259: UTF-8 and the grammar),
    /// whatever `e` says.
    fn from_json(e: &serde_json::Error, bytes: &[u8]) -> Self {
        if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            return Self::Syntax(syntax.to_string());
        }
        if let Err(utf8) = std::str::from_utf8(bytes) {
            return Self::Syntax(format!("not UTF-8: {utf8}"));
        }
        Self::Shape(e.to_string())
    }
}

/// The attributes of one event object as read from JSON, before validation. Names borrow
/// from the body unless they hold JSON escapes: an event's keys cost no allocation.
#[derive(Debug, Default)]
pub(crate) struct RawFields<'de> {
    pub(crate) attrs: Vec<(Cow<'de, str>, Value)>,
    pub(crate) data: Option<Box<RawValue>>,
    pub(crate) duplicate: Option<String>,
    pub(crate) too_many: bool,
}

impl RawFields<'_> {
    /// True when `name` was read already (a linear look: at most [`MAX_ATTRIBUTES`] names).
    fn has(&self, name: &str) -> bool {
        (name == "data" && self.data.is_some()) || self.attrs.iter().any(|(n, _)| n == name)
    }

    fn count(&self) -> usize {
        self.attrs.len() + usize::from(self.data.is_some())
    }
}

/// An attribute name, borrowed from the body when it can be.
struct Name<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an attribute name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

impl<'de> serde::Deserialize<'de> for RawFields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = RawFields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CloudEvent JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFields<'de>, A::Error> {
                // Room for a usual event's attributes at once, rather than growing twice.
                let mut out = RawFields {
                    attrs: Vec::with_capacity(8),
                    ..RawFields::default()
                };
                while let Some(Name(key)) = map.next_key::<Name<'de>>()? {
                    if out.too_many || out.count() > MAX_ATTRIBUTES {
                        // Read past the rest without keeping it: the event is refused anyway.
                        out.too_many = true;
                        map.next_value::<serde::de::IgnoredAny>()?;
                        continue;
                    }
                    if out.duplicate.is_none() && out.has(&key) {
                        out.duplicate = Some(key.clone().into_owned());
                    }
                    if key == "data" {
                        // Kept raw: forwarded to Kafka byte for byte.
                        out.data = Some(map.next_value::<Box<RawValue>>()?);
                    } else {
                        let value = map.next_value::<Value>()?;
                        out.attrs.push((key, value));
                    }
                }
                Ok(out)
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

impl Event {
    /// Parses and validates one structured-mode event.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EventError> {
        let fields: RawFields<'_> =
            serde_json::from_slice(bytes).map_err(|e| EventError::from_json(&e, bytes))?;
        Self::validate(fields)
    }

    /// Parses a JSON array of events (`application/cloudevents-batch+json`). The outer
    /// `Err` is a body that is not a JSON array; each element is validated on its own, so one
    /// bad event does not sink the others.
    pub fn batch_from_json(bytes: &[u8]) -> Result<Vec<Result<Self, EventError>>, EventError> {
        // One pass when every element reads as an object: the events come out exactly as
        // the element-by-element read below would make them (the same reader, on the same
        // bytes), without first reading each element to find where it ends.
        if let Ok(items) = serde_json::from_slice::<Vec<RawFields<'_>>>(bytes) {
            return Ok(items.into_iter().map(Self::validate).collect());
        }
        // Some element is not an object, or not JSON: read the array element by element,
        // so each element's error is its own and the body's is the body's.
        let items: Vec<&RawValue> =
            serde_json::from_slice(bytes).map_err(|e| EventError::from_json(&e, bytes))?;
        Ok(items
            .into_iter()
            .map(|raw| Self::from_json(raw.get().as_bytes()))
            .collect())
    }

    /// Parses newline-delimited JSON, one event per non-blank line, each validated on its own
    /// (a line that is not JSON is that line's error, not the body's).
    pub fn batch_from_ndjson(bytes: &[u8]) -> Vec<Result<Self, EventError>> {
        bytes
            .split(|b| *b == b'\n')
            .filter(|line| line.iter().any(|b| !b.is_ascii_whitespace()))
            .map(Self::from_json)
            .collect()
    }

    pub(crate) fn validate(fields: RawFields<'_>) -> Result<Self, EventError> {
        if fields.too_many {
            return Err(EventError::Shape(format!(
                "an event carries at most {MAX_ATTRIBUTES} attributes"
            )));
        }
        if let Some(name) = fields.duplicate {
            return Err(EventError::Duplicate(name));
        }
        let mut specversion = None;
        let mut id = None;
        let mut source = None;
        let mut ty = None;
        let mut subject = None;
        let mut time = None;
        let mut datacontenttype = None;
        let mut dataschema = None;
        let mut data_base64 = None;
        let mut category = None;
        let mut errortype = None;
        let mut partitionkey = None;
        let mut extensions = BTreeMap::new();

        for (name, value) in fields.attrs {
            let name: &str = &name;
            // The JSON format treats a null attribute as absent.
            if value.is_null() {
                continue;
            }
            match name {
                "specversion" => specversion = Some(string_attr(name, value)?),
                "id" => id = Some(bounded(name, non_empty(name, value)?, MAX_ID_LEN)?),
                "source" => {
                    source = Some(bounded(name, uri_reference(name, value)?, MAX_TEXT_LEN)?)
                }
                "type" => ty = Some(bounded(name, non_empty(name, value)?, MAX_NAME_LEN)?),
                "subject" => subject = Some(bounded(name, non_empty(name, value)?, MAX_TEXT_LEN)?),
                "time" => {
                    let t = string_attr(name, value)?;
                    chrono::DateTime::parse_from_rfc3339(&t).map_err(|e| {
                        EventError::invalid(name, format!("not an RFC 3339 timestamp ({e})"))
                    })?;
                    time = Some(t);
                }
                "datacontenttype" => {
                    let ct = bounded(name, non_empty(name, value)?, MAX_NAME_LEN)?;
                    if !ct.contains('/') || ct.chars().any(|c| c.is_control()) {
                        return Err(EventError::invalid(
                            name,
                            "must be a media type like `application/json`",
                        ));
                    }
                    datacontenttype = Some(ct);
                }
                "dataschema" => {
                    let uri = bounded(name, uri_reference(name, value)?, MAX_TEXT_LEN)?;
                    if !uri.split_once(':').is_some_and(|(scheme, _)| {
                        scheme.len() > 1
                            && scheme.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
                            })
                    }) {
                        return Err(EventError::invalid(name, "must be an absolute URI"));
                    }
                    dataschema = Some(uri);
                }
                "data_base64" => {
                    let encoded = string_attr(name, value)?;
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(encoded.as_bytes())
                        .map_err(|e| EventError::invalid(name, format!("not base64 ({e})")))?;
                    data_base64 = Some(bytes);
                }
                "category" => {
                    let c = string_attr(name, value)?;
                    category = Some(Category::parse(&c).ok_or_else(|| {
                        EventError::invalid(name, "must be one of `event`, `log`, `error`")
                    })?);
                }
                "errortype" => {
                    errortype = Some(bounded(name, non_empty(name, value)?, MAX_NAME_LEN)?)
                }
                "partitionkey" => {
                    partitionkey = Some(bounded(name, non_empty(name, value)?, MAX_TEXT_LEN)?)
                }
                _ => {
                    check_extension_name(name)?;
                    let v = extension_value(name, value)?;
                    extensions.insert(name.to_owned(), v);
                }
            }
        }

        match specversion.as_deref() {
            None => return Err(EventError::Missing("specversion")),
            Some(SPEC_VERSION) => {}
            Some(other) => {
                return Err(EventError::invalid(
                    "specversion",
                    format!(
                        "`{other}` is not supported; Courier speaks CloudEvents {SPEC_VERSION}"
                    ),
                ));
            }
        }
        let source = source.ok_or(EventError::Missing("source"))?;
        let ty = ty.ok_or(EventError::Missing("type"))?;

        let data = match (fields.data, data_base64) {
            (Some(_), Some(_)) => {
                return Err(EventError::invalid(
                    "data_base64",
                    "an event carries `data` or `data_base64`, not both",
                ));
            }
            (Some(raw), None) => match &datacontenttype {
                // With a non-JSON content type, `data` holds the payload as a JSON string
                // (e.g. XML text); Kafka gets the text itself, not its JSON quoting.
                Some(ct) if !crate::binding::is_json_media_type(ct) => {
                    match serde_json::from_str::<String>(raw.get()) {
                        Ok(text) => Some(Data::Binary(text.into_bytes())),
                        Err(_) => {
                            return Err(EventError::invalid(
                                "data",
                                format!(
                                    "with datacontenttype `{ct}`, data must be a string (or use data_base64)"
                                ),
                            ));
                        }
                    }
                }
                _ => {
                    crate::json_data::check(&raw)?;
                    Some(Data::Json(raw))
                }
            },
            (None, Some(bytes)) => Some(Data::Binary(bytes)),
            (None, None) => None,
        };
        // Empty data is no data (a Kafka record's empty value is an event without data, so
        // the two could not be told apart), and an event without data has no content type.
        let data = data.filter(|d| !d.as_bytes().is_empty());
        if data.is_none() {
            datacontenttype = None;
        }
        if matches!(data, Some(Data::Json(_))) && datacontenttype.is_none() {
            // The JSON format implies application/json; making it explicit keeps the binary
            // binding (content-type header) lossless.
            datacontenttype = Some("application/json".to_owned());
        }

        // `errortype` alone implies an error event; any other explicit category refuses it.
        let category = match (category, &errortype) {
            (None, Some(_)) => Category::Error,
            (Some(c), _) => c,
            (None, None) => Category::Event,
        };
        match (category, &errortype) {
            (Category::Error, None) => return Err(EventError::Missing("errortype")),
            (Category::Event | Category::Log, Some(_)) => {
                return Err(EventError::invalid(
                    "errortype",
                    format!("only allowed with category `error`, not `{category}`"),
                ));
            }
            _ => {}
        }

        let (id, id_assigned) = match id {
            Some(id) => (id, false),
            None => (uuid::Uuid::now_v7().to_string(), true),
        };
        Ok(Self {
            id,
            source,
            ty,
            subject,
            time,
            datacontenttype,
            dataschema,
            data,
            category,
            errortype,
            partitionkey,
            extensions,
            id_assigned,
        })
    }
}

fn string_attr(name: &str, value: Value) -> Result<String, EventError> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(EventError::invalid(
            name,
            format!("must be a string, got {}", json_kind(&other)),
        )),
    }
}

fn non_empty(name: &str, value: Value) -> Result<String, EventError> {
    let s = string_attr(name, value)?;
    if s.is_empty() {
        return Err(EventError::invalid(name, "must not be empty"));
    }
    Ok(s)
}

/// `s`, if it is at most `max` bytes long.
fn bounded(name: &str, s: String, max: usize) -> Result<String, EventError> {
    if s.len() > max {
        return Err(EventError::invalid(
            name,
            format!("is {} bytes long; at most {max} are accepted", s.len()),
        ));
    }
    Ok(s)
}

fn uri_reference(name: &str, value: Value) -> Result<String, EventError> {
    let s = non_empty(name, value)?;
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EventError::invalid(
            name,
            "must be a URI reference (no whitespace or control characters)",
        ));
    }
    Ok(s)
}

fn check_extension_name(name: &str) -> Result<(), EventError> {
    let legal = !name.is_empty()
        && name.len() <= MAX_EXTENSION_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if legal {
        Ok(())
    } else {
        Err(EventError::invalid(
            name,
            format!(
                "unknown attribute; extension names are 1 to {MAX_EXTENSION_NAME_LEN} lowercase letters or digits"
            ),
        ))
    }
}

fn extension_value(name: &str, value: Value) -> Result<ExtensionValue, EventError> {
    match value {
        Value::String(s) => Ok(ExtensionValue::String(bounded(name, s, MAX_TEXT_LEN)?)),
        Value::Bool(b) => Ok(ExtensionValue::Boolean(b)),
        Value::Number(n) => n
            .as_i64()
            .filter(|i| i32::try_from(*i).is_ok())
            .map(ExtensionValue::Integer)
            .ok_or_else(|| {
                EventError::invalid(
                    name,
                    "numbers in extension attributes must be 32-bit integers",
                )
            }),
        other => Err(EventError::invalid(
            name,
            format!(
                "extension attributes are strings, integers or booleans, got {}",
                json_kind(&other)
            ),
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
