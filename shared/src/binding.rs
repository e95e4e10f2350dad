//! The CloudEvents Kafka protocol binding, binary mode: attributes become `ce_*` headers,
//! `datacontenttype` becomes `content-type`, `data` becomes the record value and
//! `partitionkey` the record key. Any CloudEvents SDK can read what Courier writes.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::envelope::{Category, Data, Event, EventError, ExtensionValue, SPEC_VERSION};

/// Prefix of every attribute header.
pub const HEADER_PREFIX: &str = "ce_";
/// Header carrying `datacontenttype`.
pub const CONTENT_TYPE_HEADER: &str = "content-type";
/// Header carrying the event's `id`.
pub const ID_HEADER: &str = "ce_id";
/// Header carrying the event's `source`.
pub const SOURCE_HEADER: &str = "ce_source";

/// A record's headers in write order: name and value.
pub type Headers = Vec<(Cow<'static, str>, Cow<'static, [u8]>)>;

/// The parts of a Kafka record that carry an event (the topic is chosen elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    /// Record key: the `partitionkey` attribute.
    pub key: Option<Vec<u8>>,
    /// Record value: the event's data; empty, never null, for an event without data (a null
    /// value is a tombstone on a compacted topic, and the CloudEvents SDKs cannot read it).
    pub value: Option<Vec<u8>>,
    /// Headers in write order. The names of the CloudEvents attributes are static, so a
    /// record costs no allocation per header name.
    pub headers: Headers,
}

impl KafkaRecord {
    /// The first header with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| &**v)
    }

    /// The value of the first header with this name, taken out of the record (the header
    /// stays, empty): for a record that is done with, without a copy.
    pub fn take_header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.headers
            .iter_mut()
            .find(|(k, _)| k == name)
            .map(|(_, v)| std::mem::take(v).into_owned())
    }
}

/// Maps an event onto a Kafka record, copying what it needs of the event.
pub fn to_record(event: &Event) -> KafkaRecord {
    into_record(event.clone())
}

/// Maps an event onto a Kafka record, moving its attributes and data into the record's
/// header values and value rather than copying them (the proxy's intake; `to_record` for
/// an event that is kept).
pub fn into_record(event: Event) -> KafkaRecord {
    let Event {
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
        id_assigned: _,
    } = event;
    let mut headers: Headers = Vec::with_capacity(8 + extensions.len());
    // Values that are the same for every event are static: no allocation for them.
    let mut put = |name: &'static str, value: Cow<'static, [u8]>| {
        headers.push((Cow::Borrowed(name), value));
    };
    put("ce_specversion", Cow::Borrowed(SPEC_VERSION.as_bytes()));
    put(ID_HEADER, id.into_bytes().into());
    put(SOURCE_HEADER, source.into_bytes().into());
    put("ce_type", ty.into_bytes().into());
    if let Some(v) = subject {
        put("ce_subject", v.into_bytes().into());
    }
    if let Some(v) = time {
        put("ce_time", v.into_bytes().into());
    }
    if let Some(v) = dataschema {
        put("ce_dataschema", v.into_bytes().into());
    }
    put("ce_category", Cow::Borrowed(category.as_str().as_bytes()));
    if let Some(v) = errortype {
        put("ce_errortype", v.into_bytes().into());
    }
    if let Some(v) = &partitionkey {
        put("ce_partitionkey", v.as_bytes().to_vec().into());
    }
    for (name, value) in extensions {
        let value = match value {
            ExtensionValue::String(s) => s.into_bytes(),
            other => other.to_string().into_bytes(),
        };
        headers.push((Cow::Owned(format!("{HEADER_PREFIX}{name}")), value.into()));
    }
    let value = match data {
        Some(data) => {
            if let Some(ct) = datacontenttype {
                headers.push((Cow::Borrowed(CONTENT_TYPE_HEADER), ct.into_bytes().into()));
            }
            data.into_bytes()
        }
        None => Vec::new(),
    };
    KafkaRecord {
        key: partitionkey.map(String::into_bytes),
        value: Some(value),
        headers,
    }
}

/// Reads an event back from a Kafka record written in binary mode. Extension values come
/// back as strings: the binding does not carry their types.
pub fn from_record(record: &KafkaRecord) -> Result<Event, EventError> {
    let mut attrs: BTreeMap<&str, String> = BTreeMap::new();
    let mut datacontenttype = None;
    for (name, value) in &record.headers {
        let text = std::str::from_utf8(value)
            .map_err(|_| EventError::Invalid {
                name: name.to_string(),
                reason: "header value is not UTF-8".into(),
            })?
            .to_owned();
        if name == CONTENT_TYPE_HEADER {
            datacontenttype = Some(text);
        } else if let Some(attr) = name.strip_prefix(HEADER_PREFIX)
            && attrs.insert(attr, text).is_some()
        {
            return Err(EventError::Duplicate(name.to_string()));
        }
    }
    let mut take = |name: &'static str| attrs.remove(name);
    match take("specversion").as_deref() {
        Some(SPEC_VERSION) => {}
        Some(_) => {
            return Err(EventError::Invalid {
                name: "ce_specversion".into(),
                reason: "unsupported".into(),
            });
        }
        None => return Err(EventError::Missing("specversion")),
    }
    let id = take("id").ok_or(EventError::Missing("id"))?;
    let source = take("source").ok_or(EventError::Missing("source"))?;
    let ty = take("type").ok_or(EventError::Missing("type"))?;
    let subject = take("subject");
    let time = take("time");
    let dataschema = take("dataschema");
    let category = match take("category") {
        Some(c) => Category::parse(&c).ok_or_else(|| EventError::Invalid {
            name: "ce_category".into(),
            reason: format!("unknown category `{c}`"),
        })?,
        None => Category::Event,
    };
    let errortype = take("errortype");
    let partitionkey = take("partitionkey");
    let extensions = attrs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ExtensionValue::String(v)))
        .collect();
    // An empty value is an event without data (as written above), and an event without data
    // has no `datacontenttype`: a content type over nothing describes nothing.
    let value = record.value.as_ref().filter(|v| !v.is_empty());
    if value.is_none() {
        datacontenttype = None;
    }
    let data = value.map(|bytes| {
        let json_declared = datacontenttype.as_deref().is_some_and(is_json_media_type);
        match json_declared
            .then(|| std::str::from_utf8(bytes).ok())
            .flatten()
            .and_then(|s| RawValue::from_string(s.to_owned()).ok())
        {
            Some(raw) => Data::Json(raw),
            None => Data::Binary(bytes.clone()),
        }
    });
    Ok(Event {
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
        id_assigned: false,
    })
}

/// A media type without its parameters (`application/json; charset=utf-8` →
/// `application/json`), as it came: callers compare it case-insensitively rather than
/// lowercasing it into a new string.
pub fn media_type_essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or("").trim()
}

/// `application/json`, `text/json` or any `+json` media type, parameters ignored.
pub fn is_json_media_type(media_type: &str) -> bool {
    let essence = media_type_essence(media_type);
    let suffix = essence
        .len()
        .checked_sub(5)
        .and_then(|at| essence.get(at..));
    essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("text/json")
        || suffix.is_some_and(|s| s.eq_ignore_ascii_case("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_header_taken_out_leaves_the_rest() {
        let e = Event::from_json(br#"{"specversion":"1.0","id":"42","source":"/b","type":"t"}"#)
            .unwrap();
        let mut r = to_record(&e);
        assert_eq!(r.take_header(ID_HEADER).as_deref(), Some(&b"42"[..]));
        assert_eq!(r.header(ID_HEADER), Some(&b""[..]));
        assert_eq!(r.header(SOURCE_HEADER), Some(&b"/b"[..]));
        assert_eq!(r.take_header("ce_nothing"), None);
    }

    #[test]
    fn json_media_types_whatever_their_case_and_parameters() {
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "text/json",
            "application/cloudevents+JSON",
            " application/vnd.api+json ;v=1",
        ] {
            assert!(is_json_media_type(json), "{json}");
        }
        for other in [
            "",
            "json",
            "+jso",
            "application/jsonl",
            "text/plain",
            "application/json5",
            "é",
        ] {
            assert!(!is_json_media_type(other), "{other}");
        }
        assert!(
            is_json_media_type("é+json"),
            "a multibyte type with the suffix"
        );
    }

    #[test]
    fn maps_attributes_key_and_value() {
        let e = Event::from_json(
            br#"{"specversion":"1.0","id":"42","source":"/billing","type":"invoice.paid",
                 "partitionkey":"cust-7","region":"eu","retries":3,"data":{"amount":5}}"#,
        )
        .unwrap();
        let r = to_record(&e);
        assert_eq!(r.key.as_deref(), Some(&b"cust-7"[..]));
        assert_eq!(r.value.as_deref(), Some(&br#"{"amount":5}"#[..]));
        assert_eq!(r.header("ce_id"), Some(&b"42"[..]));
        assert_eq!(r.header("ce_source"), Some(&b"/billing"[..]));
        assert_eq!(r.header("ce_category"), Some(&b"event"[..]));
        assert_eq!(r.header("ce_retries"), Some(&b"3"[..]));
        assert_eq!(r.header("content-type"), Some(&b"application/json"[..]));
        assert_eq!(r.header("ce_errortype"), None);
    }

    fn ident() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,12}"
    }

    fn text() -> impl Strategy<Value = String> {
        "[ -~]{1,40}"
    }

    prop_compose! {
        fn arb_event()(
            id in text(), source in "[a-z/:._-]{1,30}", ty in text(),
            subject in proptest::option::of(text()),
            partitionkey in proptest::option::of(text()),
            error in proptest::option::of(ident()),
            log in any::<bool>(),
            ext in proptest::collection::btree_map("x[a-z0-9]{0,8}", text(), 0..4),
            json in proptest::option::of(any::<i64>()),
            // Not empty: empty data is no data (see `an_event_without_data_is_an_empty_value_not_a_tombstone`).
            binary in proptest::collection::vec(any::<u8>(), 1..64),
        ) -> Event {
            let category = match (&error, log) {
                (Some(_), _) => Category::Error,
                (None, true) => Category::Log,
                (None, false) => Category::Event,
            };
            let (data, datacontenttype) = match json {
                Some(n) => (
                    Data::Json(RawValue::from_string(format!("{{\"n\":{n}}}")).unwrap()),
                    "application/json".to_owned(),
                ),
                None => (Data::Binary(binary), "application/octet-stream".to_owned()),
            };
            Event {
                id, source, ty, subject, time: None,
                datacontenttype: Some(datacontenttype), dataschema: None, data: Some(data),
                category, errortype: error, partitionkey,
                extensions: ext.into_iter().map(|(k, v)| (k, ExtensionValue::String(v))).collect(),
                id_assigned: false,
            }
        }
    }

    #[test]
    fn an_event_without_data_is_an_empty_value_not_a_tombstone() {
        let e = Event::from_json(br#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#)
            .unwrap();
        let r = to_record(&e);
        assert_eq!(r.value.as_deref(), Some(&b""[..]));
        assert_eq!(from_record(&r).unwrap().data, None);
        // Empty data is no data, whatever its declared type, and no data has no type: a
        // content type over an empty value is what some SDKs cannot read.
        let e = Event::from_json(
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/plain","data":""}"#,
        )
        .unwrap();
        assert_eq!((&e.data, &e.datacontenttype), (&None, &None));
        let r = to_record(&e);
        assert_eq!(r.header("content-type"), None);
        let read = from_record(&KafkaRecord {
            key: None,
            value: Some(Vec::new()),
            headers: vec![
                ("ce_specversion".into(), b"1.0".to_vec().into()),
                ("ce_id".into(), b"1".to_vec().into()),
                ("ce_source".into(), b"/s".to_vec().into()),
                ("ce_type".into(), b"t".to_vec().into()),
                ("content-type".into(), b"application/json".to_vec().into()),
            ],
        })
        .unwrap();
        assert_eq!((read.data, read.datacontenttype), (None, None));
    }

    proptest! {
        #[test]
        fn binary_mode_round_trips(event in arb_event()) {
            let back = from_record(&to_record(&event)).unwrap();
            prop_assert_eq!(back, event);
        }

        #[test]
        fn every_header_is_a_binding_header_and_the_key_is_the_partitionkey(event in arb_event()) {
            let record = to_record(&event);
            for (name, _) in &record.headers {
                prop_assert!(name == CONTENT_TYPE_HEADER || name.starts_with(HEADER_PREFIX));
            }
            prop_assert_eq!(record.key.clone(), event.partitionkey.map(String::into_bytes));
        }
    }
}
