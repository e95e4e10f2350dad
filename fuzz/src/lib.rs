//! Invariants the fuzz targets check, shared between them: what must hold of every event the
//! envelope parser accepts, and of its mapping onto a Kafka record and back.
//!
//! A fuzz target is only as good as what it asserts besides "no panic"; these are the
//! properties the proxy and the consumers rely on.

use courier_shared::binding::{CONTENT_TYPE_HEADER, HEADER_PREFIX};
use courier_shared::envelope::{MAX_ATTRIBUTES, MAX_EXTENSION_NAME_LEN};
use courier_shared::{Category, Data, Event, ExtensionValue, from_record, to_record};

/// Whether `bytes` is one JSON text (RFC 8259: UTF-8, and the grammar, numbers of any size).
pub fn is_json(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok()
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// What every event the envelope parser accepted satisfies.
pub fn check_event(e: &Event) {
    assert!(!e.id.is_empty(), "empty id");
    assert!(!e.source.is_empty(), "empty source");
    assert!(
        !e.source
            .chars()
            .any(|c| c.is_whitespace() || c.is_control()),
        "source {:?} is not a URI reference",
        e.source
    );
    assert!(!e.ty.is_empty(), "empty type");
    assert_eq!(
        e.category == Category::Error,
        e.errortype.is_some(),
        "errortype present exactly for error events: {e:?}"
    );
    if matches!(e.data, Some(Data::Json(_))) {
        let ct = e
            .datacontenttype
            .as_deref()
            .expect("JSON data names its type");
        assert!(
            courier_shared::binding::is_json_media_type(ct),
            "JSON data with a non-JSON type {ct:?}"
        );
    }
    if let Some(ct) = &e.datacontenttype {
        assert!(ct.contains('/') && !ct.chars().any(char::is_control));
    }
    assert!(e.extensions.len() <= MAX_ATTRIBUTES);
    for name in e.extensions.keys() {
        assert!(
            !name.is_empty()
                && name.len() <= MAX_EXTENSION_NAME_LEN
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "illegal extension name {name:?}"
        );
    }
}

/// The event as it reads back from Kafka: extension values are strings there, and the id is
/// the one written (not "assigned").
pub fn as_read_back(e: &Event) -> Event {
    let mut e = e.clone();
    e.id_assigned = false;
    for v in e.extensions.values_mut() {
        if !matches!(v, ExtensionValue::String(_)) {
            *v = ExtensionValue::String(v.to_string());
        }
    }
    e
}

/// Binary mode is lossless: an event written as a Kafka record reads back as itself, its
/// payload byte for byte, and every header is a binding header.
pub fn check_binary_mode(e: &Event) {
    let record = to_record(e);
    for (name, _) in &record.headers {
        assert!(
            name == CONTENT_TYPE_HEADER || name.starts_with(HEADER_PREFIX),
            "stray header {name:?}"
        );
    }
    assert_eq!(
        record.key.as_deref(),
        e.partitionkey.as_deref().map(str::as_bytes)
    );
    let back = from_record(&record).unwrap_or_else(|err| panic!("{err}: {record:?}"));
    assert_eq!(back, as_read_back(e), "record {record:?}");
    assert_eq!(
        back.data.as_ref().map(Data::as_bytes),
        e.data.as_ref().map(Data::as_bytes),
        "payload changed"
    );
    assert_eq!(to_record(&back), record, "mapping is not canonical");
}
